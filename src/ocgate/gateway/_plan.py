"""Planning a tunnel at CONNECT time: addresses, MTU, timers and the DTLS headers (pure).

Everything the ``200 CONNECTED`` reply announces is decided here from the session, the request
headers and the pools, before any TUN device exists; the daemon then creates the device and writes
the reply.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from ocgate.config import Config
from ocgate.cstp import compute_mtu, dtls_packet_overhead, parse_mtu_headers_untrusted
from ocgate.dtls import DtlsAssociation, DtlsOffer, LegacyMode
from ocgate.errors import ResourceError
from ocgate.gateway._connect import (
    TunnelPlan,
    client_wants_ipv6,
    dtls_headers,
    is_mobile,
)
from ocgate.gateway._settings import SessionSettings
from ocgate.http import Request
from ocgate.session import Ipv4Pool, Ipv6Pool, Session

__all__ = ["lease_ipv4", "plan_tunnel", "previous_addresses", "valid_hostname_untrusted"]


def plan_tunnel(
    *,
    config: Config,
    session: Session,
    request: Request,
    now: float,
    offer: DtlsOffer | None,
    pool4: Ipv4Pool | None,
    pool6: Ipv6Pool | None,
    sessions: Sequence[Session],
) -> TunnelPlan:
    """Lease the session's addresses and decide everything the CONNECT reply announces.

    :param config: the session's effective configuration (per-user/group files, RADIUS).
    :param sessions: every live session (an explicit address outside the pool must be free).
    :raises ResourceError: no address can be given.
    """
    headers = {name: value for name, value in reversed(request.headers)}
    prefer4, prefer6 = previous_addresses(request)
    lease_ipv4(session, pool4, sessions, prefer4)
    want6 = client_wants_ipv6(headers) and (pool6 is not None or session.ipv6 is not None)
    if want6 and pool6 is not None and session.ipv6 is None:
        session.ipv6 = pool6.allocate(session.username, prefer=prefer6)
    base, proposed = parse_mtu_headers_untrusted(
        headers.get("x-cstp-base-mtu"), headers.get("x-cstp-mtu")
    )
    overhead = None
    if offer is not None:
        record = DtlsAssociation(mode=offer.mode, now=now).record_overhead
        overhead = dtls_packet_overhead(record_overhead=record)
    mtu = compute_mtu(
        link_mtu=config.mtu,
        client_base_mtu=base,
        client_mtu=proposed,
        ipv6_assigned=session.ipv6 is not None and want6,
        dtls_overhead=overhead,
    )
    ipv6 = session.ipv6 if want6 and mtu.ipv6_ok else None
    if session.ipv4 is None and ipv6 is None:
        raise ResourceError("no address family left to assign")
    mobile = is_mobile(headers)
    idle = (
        config.mobile_idle_timeout if mobile and config.mobile_idle_timeout else config.idle_timeout
    )
    remaining = None
    if session.session_deadline is not None:
        remaining = max(0, int(session.session_deadline - now))
    hostname = valid_hostname_untrusted(headers.get("x-cstp-hostname", ""))
    settings = session.extra.get("settings")
    if isinstance(settings, SessionSettings) and settings.hostname:
        hostname = settings.hostname
    session.hostname = hostname
    netmask = config.ipv4_network.netmask if config.ipv4_network is not None else None
    off_pool = config.ipv4_network is not None and session.ipv4 not in config.ipv4_network
    if session.ipv4 is not None and off_pool:
        netmask = ipaddress.IPv4Address("255.255.255.255")  # A framed address off-pool.
    dpd = (config.mobile_dpd or config.dpd) if mobile else config.dpd
    dtls: tuple[tuple[str, str], ...] = ()
    if offer is not None:
        dtls = dtls_headers(
            config,
            dpd=dpd,
            mtu=mtu.tunnel_mtu,
            offer_headers=offer.headers,
            legacy=isinstance(offer.mode, LegacyMode),
        )
    return TunnelPlan(
        ipv4=session.ipv4,
        ipv4_netmask=netmask,
        ipv6=ipv6,
        base_mtu=mtu.base_mtu,
        mtu=mtu.tunnel_mtu,
        dpd=dpd,
        idle_timeout=idle,
        session_remaining=remaining,
        hostname=hostname,
        dtls=dtls,
    )


_HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def valid_hostname_untrusted(value: str) -> str | None:
    """The client's short host name from ``X-CSTP-Hostname``, or ``None`` if it is not one.

    Only the first label is kept (ocserv's rule); a value that is not a host name label (letters,
    digits, ``-`` and ``_``, at most 63) is ignored, as ocserv does, so it never reaches a
    script's environment or ``occtl``.
    """
    label = value.strip().split(".", 1)[0]
    return label if _HOSTNAME_LABEL.fullmatch(label) else None


def lease_ipv4(
    session: Session,
    pool: Ipv4Pool | None,
    sessions: Sequence[Session],
    prefer: ipaddress.IPv4Address | None,
) -> None:
    """Give the session its IPv4 address: the explicit one (``explicit-ipv4``,
    Framed-IP-Address) if it has one, else a pool lease (``prefer`` if free).

    An explicit address inside the pool is leased from the pool; one outside it is assigned
    directly (ocserv uses it as the lease), after checking no other session holds it.

    :raises ResourceError: the explicit address is taken, or the pool is full.
    """
    if session.ipv4 is not None:
        return
    settings = session.extra.get("settings")
    explicit = settings.explicit_ipv4 if isinstance(settings, SessionSettings) else None
    if explicit is None:
        if pool is not None:
            session.ipv4 = pool.allocate(session.username, prefer=prefer)
        return
    if pool is not None and pool.owns(explicit):
        if explicit in pool:
            raise ResourceError(f"explicit address {explicit} is in use")
        session.ipv4 = pool.allocate(session.username, prefer=explicit)
        return
    if any(s.ipv4 == explicit for s in sessions if s is not session):
        raise ResourceError(f"explicit address {explicit} is in use")
    session.ipv4 = explicit


def previous_addresses(
    request: Request,
) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
    """The ``X-CSTP-Address`` values a reconnecting client sends (one per family)."""
    v4: ipaddress.IPv4Address | None = None
    v6: ipaddress.IPv6Address | None = None
    for name, value in request.headers:
        if name != "x-cstp-address":
            continue
        try:
            addr = ipaddress.ip_address(value.strip().split("/", 1)[0])
        except ValueError:
            continue
        if isinstance(addr, ipaddress.IPv4Address):
            v4 = addr
        else:
            v6 = addr
    return v4, v6
