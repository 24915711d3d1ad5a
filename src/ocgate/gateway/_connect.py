"""The reply to ``CONNECT /CSCOSSLC/tunnel``: tunnel parameters as ``X-CSTP-*`` headers.

Order and spelling follow ocserv ``src/worker-vpn.c`` ``connect_handler`` (anyconnect-protocol.md
§5.3). openconnect compares these names case-sensitively (``strcmp``), so they are written exactly
as here.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from ocgate.config import Config, IPNetwork

__all__ = ["TunnelPlan", "client_wants_ipv6", "connect_headers", "dtls_headers", "is_mobile"]

# Rekeying: ocgate refuses TLS renegotiation, so it asks for a new tunnel (a cookie reconnect) every
# two days, ocserv's default period. "none" must never be sent: Cisco Secure Client 5.1 rejects it
# (#745).
REKEY_TIME = 172800
REKEY_METHOD = "new-tunnel"


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


def _route_value(net: IPNetwork) -> str:
    if isinstance(net, ipaddress.IPv4Network):
        return f"{net.network_address}/{net.netmask}"
    return str(net)


def connect_headers(config: Config, plan: TunnelPlan) -> list[tuple[str, str]]:
    """The ``X-CSTP-*`` headers of a ``200 CONNECTED`` reply, in ocserv's order."""
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
        elif plan.ipv6 is not None:
            # IPv6 servers only in -IP6: Secure Client on iOS rejects one in X-CSTP-DNS (§13).
            h.append(("X-CSTP-DNS-IP6", str(server)))
    h.extend(("X-CSTP-Split-DNS", domain) for domain in config.split_dns)
    h.extend(_split_headers(config, ipv6=plan.ipv6 is not None))
    tunnel_all_dns = config.tunnel_all_dns or config.route_default
    h.append(("X-CSTP-Tunnel-All-DNS", "true" if tunnel_all_dns else "false"))
    h.append(("X-CSTP-Client-Bypass-Protocol", "false"))
    h.append(("X-CSTP-Keepalive", str(config.keepalive)))
    idle = "none" if not plan.idle_timeout else str(plan.idle_timeout)
    h.append(("X-CSTP-Idle-Timeout", idle))
    h.append(("X-CSTP-Smartcard-Removal-Disconnect", "true"))
    h.append(("X-CSTP-Rekey-Time", str(REKEY_TIME)))
    h.append(("X-CSTP-Rekey-Method", REKEY_METHOD))
    remaining = "none" if plan.session_remaining is None else str(plan.session_remaining)
    h.append(("X-CSTP-Session-Timeout", remaining))
    if plan.session_remaining is not None:
        h.append(("X-CSTP-Session-Timeout-Remaining", remaining))
    h.append(("X-CSTP-Disconnected-Timeout", str(config.cookie_timeout)))
    h.append(("X-CSTP-Keep", "true"))
    h.append(("X-CSTP-TCP-Keepalive", "true"))
    h.append(("X-CSTP-License", "accept"))
    h.extend(plan.dtls)
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
) -> tuple[tuple[str, str], ...]:
    """The DTLS part of the reply: timers, the UDP port, the chosen mode and (legacy) the MTU.

    ocserv sends the DTLS rekey time 10 s after the CSTP one; the method is advisory for
    openconnect (``new-tunnel`` makes it do nothing for DTLS).
    """
    assert config.udp_port is not None
    headers = [
        ("X-DTLS-DPD", str(dpd)),
        ("X-DTLS-Keepalive", str(config.keepalive)),
        ("X-DTLS-Port", str(config.udp_port)),
        ("X-DTLS-Rekey-Time", str(REKEY_TIME + 10)),
        ("X-DTLS-Rekey-Method", REKEY_METHOD),
        *offer_headers,
    ]
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
