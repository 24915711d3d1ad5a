"""Which version a header is, by its first byte (proxy-protocol.txt §2.2, "Identifying the
protocol version"): ``\\r`` opens the version 2 signature, ``P`` the version 1 line; anything
else is no header at all, and the connection must be dropped."""

from __future__ import annotations

from ocgate.errors import BadProxyHeader
from ocgate.proxyproto._header import V2_SIGNATURE, ProxyHeader
from ocgate.proxyproto._v1 import V1_PREFIX, pull_v1_untrusted
from ocgate.proxyproto._v2 import pull_v2_untrusted

__all__ = ["pull_proxy_header_untrusted"]


def pull_proxy_header_untrusted(data: bytes | bytearray) -> ProxyHeader | None:
    """Parse the PROXY protocol header (version 1 or 2) at the start of ``data``.

    :param data: the connection's first bytes, as many as have arrived.
    :returns: the header (``header.length`` bytes of ``data``; the rest is the client's), or
        ``None`` if more bytes are needed to decide.
    :raises BadProxyHeader: ``data`` cannot start a valid header, or the header is invalid.
    """
    if not data:
        return None
    if data[0] == V2_SIGNATURE[0]:
        return pull_v2_untrusted(data)
    if data[0] == V1_PREFIX[0]:
        return pull_v1_untrusted(data)
    raise BadProxyHeader("no PROXY protocol header: neither the v1 nor the v2 signature")
