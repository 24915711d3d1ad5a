"""The version 1 (text) header: ``PROXY TCP4|TCP6|UNKNOWN ...\\r\\n`` (proxy-protocol.txt §2.1).

Theory of operation: the line is read only once its CRLF has arrived, and only within the first
:data:`~ocgate.proxyproto._header.V1_MAX_LINE` bytes (107, CRLF included); a lone LF, a CR inside
the line, a field separator other than exactly one space, an IPv4 number with a leading zero or
over 255, an address of the other family, a port with a leading zero or over 65535 all refuse the
connection (§2.1: "Any sequence which does not exactly match the protocol must be discarded").
``UNKNOWN`` ignores the rest of its line and carries no address: the connection's own endpoints
stand (§2.1). An IPv4-mapped IPv6 source (``::ffff:192.0.2.1``) is reported as the IPv4 address
it is, so bans and per-source caps see one client, not the whole IPv4 Internet in one /64.
"""

from __future__ import annotations

import ipaddress
import re

from ocgate.errors import BadProxyHeader
from ocgate.proxyproto._header import V1_MAX_LINE, Command, Family, ProxyHeader, Transport

__all__ = ["V1_PREFIX", "pull_v1_untrusted"]

V1_PREFIX = b"PROXY "
"""How a version 1 header starts: ``PROXY`` and exactly one space."""

_IPV4 = re.compile(rb"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
_IPV6 = re.compile(rb"[0-9A-Fa-f:.]{2,45}")  # Hex groups, "::", an optional dotted IPv4 tail.
_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")


def pull_v1_untrusted(data: bytes | bytearray) -> ProxyHeader | None:
    """Parse the version 1 line at the start of ``data``.

    :returns: the header, or ``None`` while its CRLF has not arrived yet.
    :raises BadProxyHeader: anything but an exact version 1 line.
    """
    head = bytes(data[:V1_MAX_LINE])
    if head[: len(V1_PREFIX)] != V1_PREFIX[: len(head)]:
        raise BadProxyHeader("no PROXY protocol header: the line does not start 'PROXY '")
    end = head.find(b"\n")
    if end < 0:
        if len(head) >= V1_MAX_LINE:
            raise BadProxyHeader(f"PROXY v1: no CRLF within the first {V1_MAX_LINE} bytes")
        return None
    if head[end - 1 : end] != b"\r":
        raise BadProxyHeader("PROXY v1: the line ends in LF without CR")
    line = head[: end - 1]
    if b"\r" in line:
        raise BadProxyHeader("PROXY v1: CR inside the line")
    fields = line.split(b" ")
    if fields[0] != b"PROXY" or len(fields) < 2:
        raise BadProxyHeader("PROXY v1: no protocol after 'PROXY '")
    if fields[1] == b"UNKNOWN":
        return ProxyHeader(
            version=1,
            command=Command.PROXY,
            family=Family.UNSPEC,
            transport=Transport.UNSPEC,
            source=None,
            destination=None,
            source_port=None,
            destination_port=None,
            length=end + 1,
        )
    if fields[1] not in (b"TCP4", b"TCP6"):
        raise BadProxyHeader("PROXY v1: the protocol is not TCP4, TCP6 or UNKNOWN")
    if len(fields) != 6:
        raise BadProxyHeader("PROXY v1: not 4 fields after the protocol, one space apart")
    v6 = fields[1] == b"TCP6"
    return ProxyHeader(
        version=1,
        command=Command.PROXY,
        family=Family.INET6 if v6 else Family.INET,
        transport=Transport.STREAM,
        source=_address(fields[2], v6),
        destination=_address(fields[3], v6),
        source_port=_port(fields[4]),
        destination_port=_port(fields[5]),
        length=end + 1,
    )


def _address(field: bytes, v6: bool) -> str:
    try:
        if not v6:
            if _IPV4.fullmatch(field) is None:
                raise ValueError(field)
            return str(ipaddress.IPv4Address(field.decode("ascii")))
        if _IPV6.fullmatch(field) is None:
            raise ValueError(field)
        address = ipaddress.IPv6Address(field.decode("ascii"))
    except ValueError:
        family = "IPv6" if v6 else "IPv4"
        raise BadProxyHeader(f"PROXY v1: not an {family} address in canonical form") from None
    mapped = address.ipv4_mapped
    return str(mapped if mapped is not None else address)


def _port(field: bytes) -> int:
    if _PORT.fullmatch(field) is None or int(field) > 65535:
        raise BadProxyHeader("PROXY v1: not a port number (0-65535, no leading zero)")
    return int(field)
