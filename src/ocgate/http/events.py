"""Events of the HTTP front door (:class:`ocgate.http.FrontDoor.next_event`)."""

from __future__ import annotations

from dataclasses import dataclass

from ocgate.http._cookie_header import parse_cookies_untrusted

__all__ = ["ConnectionClosed", "HttpEvent", "ProtocolViolation", "Request", "TimedOut"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A complete request, body included.

    :param method: e.g. ``"POST"``, ``"CONNECT"``.
    :param target: the request target as sent, e.g. ``"/"``, ``"/CSCOSSLC/tunnel"``,
        ``"CSCOSSLC/tunnel"``.
    :param headers: ``(name, value)`` pairs in wire order; names lower-cased, values decoded as
        latin-1.
    :param body: the request body (``b""`` when there is none).
    :param http_version: ``"1.1"`` or ``"1.0"``.
    """

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    http_version: str

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    def cookies(self) -> dict[str, str]:
        """Every cookie from every ``Cookie`` header; the first occurrence of a name wins.

        The front door has already rejected requests whose cookies are over the caps.

        :raises BadHttpRequest: a ``Cookie`` header over 4096 bytes or a value over 1024 chars
            (only possible for a ``Request`` built by hand).
        """
        return parse_cookies_untrusted(value for key, value in self.headers if key == "cookie")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The peer closed the connection (EOF). Close our side."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolViolation:
    """The peer broke HTTP or a limit.

    The error response (``status_hint``, with ``Connection: close``) is already queued: flush
    :meth:`FrontDoor.data_to_send` and close. ``message`` is for the log, once.
    """

    message: str
    status_hint: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut:
    """No CONNECT was answered before the deadline (``auth-timeout``). Close the connection."""


HttpEvent = Request | ConnectionClosed | ProtocolViolation | TimedOut
