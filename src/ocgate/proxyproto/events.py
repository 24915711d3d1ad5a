"""What :class:`~ocgate.proxyproto.ProxyHeaderReader` reports: one event per connection."""

from __future__ import annotations

from dataclasses import dataclass

from ocgate.proxyproto._header import ProxyHeader

__all__ = ["Event", "HeaderReceived", "HeaderRefused"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderReceived:
    """A complete, valid header; ``data`` is what followed it (the client's TLS bytes)."""

    header: ProxyHeader
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderRefused:
    """No valid header: malformed, over its bound, or not complete in time. Close the connection."""

    reason: str


Event = HeaderReceived | HeaderRefused
