"""The reply to ``CONNECT /CSCOSSLC/tunnel``: tunnel parameters as ``X-CSTP-*`` headers.

Order and spelling follow ocserv ``src/worker-vpn.c`` ``connect_handler`` (anyconnect-protocol.md
§5.3). openconnect compares these names case-sensitively (``strcmp``), so they are written exactly
as here.
"""

from __future__ import annotations

import ipaddress
import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from ocgate.compress import CompressionMethod
from ocgate.config import Config, IPNetwork
from ocgate.gateway._compression import compression_headers

__all__ = [
    "TunnelPlan",
    "client_wants_ipv6",
    "connect_headers",
    "dtls_headers",
    "fuzzed_rekey_time",
    "is_mobile",
    "old_openconnect",
]

REKEY_FUZZ = 30
"""ocserv (``connect_handler``, ``FUZZ``) moves a ``rekey-time`` above 30 s by up to ±29 s per
connection, so clients that connected together do not all rekey (or reconnect) together."""


def fuzzed_rekey_time(rekey_time: int, random_value: int) -> int:
    """``rekey-time`` as announced to one client: ``random_value`` is a random 16-bit number."""
    if rekey_time <= REKEY_FUZZ:
        return rekey_time
    signed = random_value - 0x10000 if random_value & 0x8000 else random_value
    return rekey_time + int(math.fmod(signed, REKEY_FUZZ))  # C's % truncates toward zero.


def _rekey_headers(
    config: Config, rekey_time: int, *, secure_renegotiation: bool
) -> list[tuple[str, str]]:
    """``X-CSTP-Rekey-Time`` / ``-Method`` as ocserv 1.1.6 sends them.

    ``ssl`` only to a client that offered secure renegotiation (RFC 5746), else ``new-tunnel``
    (ocserv checks ``gnutls_safe_renegotiation_status``). Without a rekey time ocserv sends
    ``X-CSTP-Rekey-Method: none``, which Cisco Secure Client 5.1 rejects (ocserv #745): ocgate
    sends neither header then, which openconnect reads as "no rekey" too.
    """
    if rekey_time <= 0:
        return []
    ssl = config.rekey_method == "ssl" and secure_renegotiation
    return [
        ("X-CSTP-Rekey-Time", str(rekey_time)),
        ("X-CSTP-Rekey-Method", "ssl" if ssl else "new-tunnel"),
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class TunnelPlan:
    """What one tunnel is given, decided before the reply is written."""

    ipv4: ipaddress.IPv4Address | None
    ipv4_netmask: ipaddress.IPv4Address | None
    ipv6: ipaddress.IPv6Network | None
    """The client's address with its prefix (``fd77::2/128``)."""
    base_mtu: int
    mtu: int
    dpd: int
    idle_timeout: int | None
    session_remaining: int | None
    hostname: str | None
    dtls: tuple[tuple[str, str], ...] = ()
    """The ``X-DTLS-*`` headers when the client gets DTLS (see :func:`dtls_headers`)."""
    rekey_time: int = 172800
    """``rekey-time`` for this client (:func:`fuzzed_rekey_time`); 0: no rekeying."""
    ipv6_routes: bool = True
    """IPv6 routes and DNS servers are announced (with an IPv6 address, and not to openconnect
    v3 or older: see :func:`old_openconnect`)."""
    cstp_compression: CompressionMethod | None = None
    """The compression negotiated for CSTP (``ocgate.gateway._compression``), if any."""
    dtls_compression: CompressionMethod | None = None
    """The compression negotiated for DTLS, if any (only with DTLS)."""


def is_mobile(headers: Mapping[str, str]) -> bool:
    """Mobile platforms get ``mobile-dpd`` and ``mobile-idle-timeout`` (ocserv does the same)."""
    platform = headers.get("x-anyconnect-identifier-platform", "").lower()
    return platform in {"apple-ios", "android"}


def client_wants_ipv6(headers: Mapping[str, str]) -> bool:
    """IPv6 is offered when the client asks for it (``X-CSTP-Address-Type`` omitted means both)."""
    address_type = headers.get("x-cstp-address-type")
    if address_type is not None and "ipv6" not in address_type.lower():
        return False
    return headers.get("x-cstp-full-ipv6-capability", "").lower() == "true"


_OPENCONNECT_AGENT = "open anyconnect vpn agent v"
_AGENT_VERSION = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]*)")


def old_openconnect(user_agent: str) -> bool:
    """Whether ``user_agent`` is openconnect v3 or older, which gets no IPv6 routes or DNS.

    ocserv's rule (``worker-http.c``, ``AGENT_OPENCONNECT_V3``): the agent starts with
    ``Open AnyConnect VPN Agent v`` (any case) and ``atoi`` of what follows, as an unsigned number,
    is at most 3 (so ``v3.02``, ``v2.5`` and a ``v`` without digits qualify). Such clients get
    their IPv6 address but no IPv6 routes or DNS servers (``worker-vpn.c`` ``connect_handler``);
    every other agent, an unknown one included, gets them.
    """
    if user_agent[: len(_OPENCONNECT_AGENT)].lower() != _OPENCONNECT_AGENT:
        return False
    match = _AGENT_VERSION.match(user_agent, len(_OPENCONNECT_AGENT))
    assert match is not None  # The pattern matches the empty string.
    sign, digits = match.groups()
    value = int(digits[:20]) if digits else 0
    return (-value if sign == "-" else value) % 2**32 <= 3


def _route_value(net: IPNetwork) -> str:
    if isinstance(net, ipaddress.IPv4Network):
        return f"{net.network_address}/{net.netmask}"
    return str(net)


def connect_headers(
    config: Config, plan: TunnelPlan, *, secure_renegotiation: bool = True
) -> list[tuple[str, str]]:
    """The ``X-CSTP-*`` headers of a ``200 CONNECTED`` reply, in ocserv's order.

    ``secure_renegotiation``: the client's TLS hello offered RFC 5746 (see :func:`_rekey_headers`).
    """
    h: list[tuple[str, str]] = [("X-CSTP-Version", "1"), ("X-CSTP-Server-Name", "ocgate")]
    if plan.hostname:
        h.append(("X-CSTP-Hostname", plan.hostname))
    if plan.dpd > 0:
        h.append(("X-CSTP-DPD", str(plan.dpd)))
    if config.default_domain:
        h.append(("X-CSTP-Default-Domain", config.default_domain))
    if plan.ipv4 is not None and plan.ipv4_netmask is not None:
        h.append(("X-CSTP-Address", str(plan.ipv4)))
        h.append(("X-CSTP-Netmask", str(plan.ipv4_netmask)))
    if plan.ipv6 is not None:
        h.append(("X-CSTP-Address-IP6", f"{plan.ipv6.network_address}/{plan.ipv6.prefixlen}"))
    for server in config.dns:
        if isinstance(server, ipaddress.IPv4Address):
            h.append(("X-CSTP-DNS", str(server)))
        elif plan.ipv6 is not None and plan.ipv6_routes:
            # IPv6 servers only in -IP6: Secure Client on iOS rejects one in X-CSTP-DNS (§13).
            h.append(("X-CSTP-DNS-IP6", str(server)))
    ipv6_routes = plan.ipv6 is not None and plan.ipv6_routes
    for server in config.nbns:  # ocserv: X-CSTP-NBNS for both families.
        if isinstance(server, ipaddress.IPv4Address) or ipv6_routes:
            h.append(("X-CSTP-NBNS", str(server)))
    h.extend(("X-CSTP-Split-DNS", domain) for domain in config.split_dns)
    h.extend(_split_headers(config, ipv6=plan.ipv6 is not None and plan.ipv6_routes))
    tunnel_all_dns = config.tunnel_all_dns or config.route_default
    h.append(("X-CSTP-Tunnel-All-DNS", "true" if tunnel_all_dns else "false"))
    bypass = "true" if config.client_bypass_protocol else "false"
    h.append(("X-CSTP-Client-Bypass-Protocol", bypass))
    h.append(("X-CSTP-Keepalive", str(config.keepalive)))
    idle = "none" if not plan.idle_timeout else str(plan.idle_timeout)
    h.append(("X-CSTP-Idle-Timeout", idle))
    h.append(("X-CSTP-Smartcard-Removal-Disconnect", "true"))
    h.extend(_rekey_headers(config, plan.rekey_time, secure_renegotiation=secure_renegotiation))
    remaining = "none" if plan.session_remaining is None else str(plan.session_remaining)
    h.append(("X-CSTP-Session-Timeout", remaining))
    if plan.session_remaining is not None:
        h.append(("X-CSTP-Session-Timeout-Remaining", remaining))
    h.append(("X-CSTP-Disconnected-Timeout", str(config.cookie_timeout)))
    h.append(("X-CSTP-Keep", "true"))
    h.append(("X-CSTP-TCP-Keepalive", "true"))
    h.append(("X-CSTP-License", "accept"))
    h.extend(plan.dtls)
    dtls_compression = plan.dtls_compression if plan.dtls else None
    h.extend(compression_headers(plan.cstp_compression, dtls_compression))
    h.append(("X-CSTP-Base-MTU", str(plan.base_mtu)))
    h.append(("X-CSTP-MTU", str(plan.mtu)))
    if config.banner:
        h.append(("X-CSTP-Banner", urllib.parse.quote(config.banner, safe="")))
    return h


def dtls_headers(
    config: Config,
    *,
    dpd: int,
    mtu: int,
    offer_headers: tuple[tuple[str, str], ...],
    legacy: bool,
    rekey_time: int | None = None,
) -> tuple[tuple[str, str], ...]:
    """The DTLS part of the reply: timers, the UDP port, the chosen mode and (legacy) the MTU.

    ocserv sends the DTLS rekey time 10 s after the CSTP one (``rekey_time``, the fuzzed value;
    ``config.rekey_time`` when not given) and ``X-DTLS-Rekey-Method: ssl`` only for ``ssl`` (its
    "private extension"): openconnect then rehandshakes DTLS at that time; without the method it
    does nothing for DTLS on its own but starts a new DTLS connection after each CSTP rekey.
    """
    assert config.udp_port is not None
    rekey = config.rekey_time if rekey_time is None else rekey_time
    headers = [
        ("X-DTLS-DPD", str(dpd)),
        ("X-DTLS-Keepalive", str(config.keepalive)),
        ("X-DTLS-Port", str(config.udp_port)),
    ]
    if rekey > 0:
        headers.append(("X-DTLS-Rekey-Time", str(rekey + 10)))
        if config.rekey_method == "ssl":
            headers.append(("X-DTLS-Rekey-Method", "ssl"))
    headers.extend(offer_headers)
    if legacy:
        headers.append(("X-DTLS-MTU", str(mtu)))
    return tuple(headers)


def _split_headers(config: Config, *, ipv6: bool) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    if not config.route_default:
        for net in config.route:
            if isinstance(net, ipaddress.IPv4Network):
                headers.append(("X-CSTP-Split-Include", _route_value(net)))
            elif ipv6:
                headers.append(("X-CSTP-Split-Include-IP6", _route_value(net)))
    for net in config.no_route:
        if isinstance(net, ipaddress.IPv4Network):
            headers.append(("X-CSTP-Split-Exclude", _route_value(net)))
        elif ipv6:
            headers.append(("X-CSTP-Split-Exclude-IP6", _route_value(net)))
    return headers
