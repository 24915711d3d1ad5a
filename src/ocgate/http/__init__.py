"""The sans-IO HTTP/1.1 front door (anyconnect-protocol.md §2): login requests up to the CONNECT."""

from __future__ import annotations

from ocgate.http._camouflage import CamouflageGate, with_headers
from ocgate.http._frontdoor import FrontDoor
from ocgate.http._limits import HttpLimits
from ocgate.http._response import Response
from ocgate.http.events import ConnectionClosed, HttpEvent, ProtocolViolation, Request, TimedOut

__all__ = [
    "CamouflageGate",
    "ConnectionClosed",
    "FrontDoor",
    "HttpEvent",
    "HttpLimits",
    "ProtocolViolation",
    "Request",
    "Response",
    "TimedOut",
    "with_headers",
]
