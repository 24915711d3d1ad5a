"""What a PROXY protocol header says, whichever version carried it.

The names follow the specification, haproxy ``doc/proxy-protocol.txt`` (2020/03/05 revision),
§2.2: the command (low nibble of byte 13), the address family (high nibble of byte 14) and the
transport protocol (low nibble of byte 14). A version 1 line maps onto the same values: ``TCP4`` is
PROXY / INET / STREAM, ``TCP6`` PROXY / INET6 / STREAM, ``UNKNOWN`` PROXY / UNSPEC / UNSPEC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "MAX_HEADER",
    "V1_MAX_LINE",
    "V2_MAX_PAYLOAD",
    "V2_SIGNATURE",
    "Command",
    "Family",
    "ProxyHeader",
    "Transport",
]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
"""The 12 bytes that open a version 2 header (§2.2)."""

V1_MAX_LINE = 107
"""The longest version 1 line, CRLF included (§2.1: ``PROXY UNKNOWN`` with two full IPv6 addresses
and ports); a line without CRLF by then is invalid."""

V2_MAX_PAYLOAD = 520
"""The most bytes after a version 2 header's 16 fixed ones (addresses and TLVs): 16 + 520 = 536,
the smallest TCP segment every host must take, which the specification designs both formats to
fit in (§2); ocserv ``src/worker-proxyproto.c`` has the same 520-byte bound."""

MAX_HEADER = 16 + V2_MAX_PAYLOAD
"""The most bytes a header can take: more buffered without a complete header is a refusal."""


class Command(enum.IntEnum):
    """§2.2, the low four bits of byte 13."""

    LOCAL = 0x0
    """The balancer opened the connection itself (a health check): no client behind it."""
    PROXY = 0x1
    """The connection is relayed on behalf of the client the addresses name."""


class Family(enum.IntEnum):
    """§2.2, the high four bits of byte 14."""

    UNSPEC = 0x0
    INET = 0x1
    INET6 = 0x2
    UNIX = 0x3


class Transport(enum.IntEnum):
    """§2.2, the low four bits of byte 14."""

    UNSPEC = 0x0
    STREAM = 0x1
    DGRAM = 0x2


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyHeader:
    """One parsed header.

    :param version: 1 (text line) or 2 (binary).
    :param command: LOCAL (a health check of the balancer) or PROXY.
    :param family: the address family announced.
    :param transport: the transport announced.
    :param source: the client's address as canonical text, when the header carries a TCP over
        IPv4 or IPv6 address; ``None`` otherwise (LOCAL, ``UNKNOWN``, UNSPEC, UNIX, UDP), in which
        case the specification says to use the real connection's endpoints.
    :param destination: the address the client connected to (the balancer's), or ``None``.
    :param source_port: the client's TCP port, or ``None``.
    :param destination_port: the port the client connected to, or ``None``.
    :param length: how many bytes of the stream the header took; what follows is the client's own
        (its TLS ClientHello).
    """

    version: int
    command: Command
    family: Family
    transport: Transport
    source: str | None
    destination: str | None
    source_port: int | None
    destination_port: int | None
    length: int
