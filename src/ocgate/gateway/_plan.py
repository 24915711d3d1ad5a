"""Planning a tunnel at CONNECT time: addresses, MTU, timers and the DTLS headers (pure).

Everything the ``200 CONNECTED`` reply announces is decided here from the session, the request
headers and the pools, before any TUN device exists; the daemon then creates the device and writes
the reply.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Sequence

from ocgate.config import Config
from ocgate.cstp import compute_mtu, dtls_packet_overhead, parse_mtu_headers_untrusted
from ocgate.dtls import DtlsAssociation, DtlsOffer, LegacyMode
from ocgate.errors import ResourceError
from ocgate.gateway._compression import negotiated_compression
from ocgate.gateway._connect import (
    TunnelPlan,
    client_wants_ipv6,
    dtls_headers,
    fuzzed_rekey_time,
    is_mobile,
    old_openconnect,
)
from ocgate.gateway._settings import SessionSettings
from ocgate.http import Request
from ocgate.radius import RadiusResult
from ocgate.session import Ipv4Pool, Ipv6Pool, Session

__all__ = [
    "lease_addresses",
    "lease_ipv4",
    "lease_ipv6",
    "plan_tunnel",
    "previous_addresses",
    "valid_hostname_untrusted",
]


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
    want6 = client_wants_ipv6(headers) and (pool6 is not None or session.ipv6 is not None)
    lease_addresses(session, pool4, pool6, sessions, want6=want6)
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
    rekey_time = fuzzed_rekey_time(config.rekey_time, secrets.randbits(16))
    dtls: tuple[tuple[str, str], ...] = ()
    if offer is not None:
        dtls = dtls_headers(
            config,
            dpd=dpd,
            mtu=mtu.tunnel_mtu,
            offer_headers=offer.headers,
            legacy=isinstance(offer.mode, LegacyMode),
            rekey_time=rekey_time,
        )
    cstp_compression, dtls_compression = negotiated_compression(config, headers, dtls=bool(dtls))
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
        rekey_time=rekey_time,
        ipv6_routes=not old_openconnect(headers.get("user-agent", "")),
        cstp_compression=cstp_compression,
        dtls_compression=dtls_compression,
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


def lease_addresses(
    session: Session,
    pool4: Ipv4Pool | None,
    pool6: Ipv6Pool | None,
    sessions: Sequence[Session],
    *,
    want6: bool,
) -> None:
    """Give the session its addresses, unless it holds them already (a reconnect keeps them).

    The client never chooses: ``X-CSTP-Address`` (what a reconnecting openconnect sends) is not
    consulted, because a session that holds a lease gets exactly that lease back, and a session
    without one must not pick a free address of its liking (another user's usual
    ``predictable-ips`` address, say). ocserv ignores the header as well (``src/ip-lease.c``).

    :param want6: the client asked for IPv6 (``X-CSTP-Full-IPv6-Capability``).
    :raises ResourceError: an explicit address is refused, or a pool is full.
    """
    lease_ipv4(session, pool4, sessions)
    if want6:
        lease_ipv6(session, pool6)


def _settings(session: Session) -> SessionSettings | None:
    settings = session.extra.get("settings")
    return settings if isinstance(settings, SessionSettings) else None


def _framed(session: Session, address: ipaddress.IPv4Address) -> bool:
    """Whether ``address`` is the Framed-IP-Address RADIUS gave this session."""
    radius = session.extra.get("radius")
    return isinstance(radius, RadiusResult) and radius.framed_ipv4 == address


def lease_ipv4(session: Session, pool: Ipv4Pool | None, sessions: Sequence[Session]) -> None:
    """Give the session its IPv4 address, unless it has one: the explicit one (``explicit-ipv4``
    or RADIUS Framed-IP-Address) if it has one, else a pool lease.

    An explicit address must be a client address of ``ipv4-network`` that no other session holds;
    it is then leased from the pool. A per-user or per-group ``explicit-ipv4`` outside the pool is
    refused: a line in a user's file must not hand out the address of a host on the gateway's
    networks. A Framed-IP-Address may lie outside the pool (RADIUS is the address authority, as in
    ocserv), but never on the pool's network, server or broadcast address, and never on an address
    another session holds.

    :raises ResourceError: the explicit address is refused or taken, or the pool is full.
    """
    if session.ipv4 is not None:
        return
    settings = _settings(session)
    explicit = settings.explicit_ipv4 if settings is not None else None
    if explicit is None:
        if pool is not None:
            session.ipv4 = pool.allocate(session.username)
        return
    if pool is not None and pool.owns(explicit):
        if explicit in pool:
            raise ResourceError(f"explicit address {explicit} is leased to another session")
        session.ipv4 = pool.allocate(session.username, prefer=explicit)
        return
    pool_text = f"ipv4-network {pool.network}" if pool is not None else "no ipv4-network"
    if not _framed(session, explicit):
        raise ResourceError(f"explicit-ipv4 {explicit} is outside the address pool ({pool_text})")
    if pool is not None and explicit in pool.network:
        raise ResourceError(f"Framed-IP-Address {explicit} is not a client address of {pool_text}")
    if any(s.ipv4 == explicit for s in sessions if s is not session):
        raise ResourceError(f"explicit address {explicit} is leased to another session")
    session.ipv4 = explicit


def lease_ipv6(session: Session, pool: Ipv6Pool | None) -> None:
    """Give the session its IPv6 lease, unless it has one: ``explicit-ipv6`` or a pool lease.

    ``explicit-ipv6`` must be the first address of a free ``ipv6-subnet-prefix`` lease of
    ``ipv6-network`` (with the default prefix 128: any free client address of the pool).

    :raises ResourceError: the explicit address is refused or taken, or the pool is full.
    """
    if session.ipv6 is not None:
        return
    settings = _settings(session)
    explicit = settings.explicit_ipv6 if settings is not None else None
    if explicit is None:
        if pool is not None:
            session.ipv6 = pool.allocate(session.username)
        return
    if pool is None or not pool.owns(explicit):
        pool_text = f"ipv6-network {pool.network}" if pool is not None else "no ipv6-network"
        raise ResourceError(f"explicit-ipv6 {explicit} is outside the address pool ({pool_text})")
    if explicit in pool:
        raise ResourceError(f"explicit address {explicit} is leased to another session")
    lease = pool.allocate(session.username, prefer=explicit)
    if lease.network_address != explicit:
        pool.release(lease)
        raise ResourceError(
            f"explicit-ipv6 {explicit} is not the first address of a "
            f"/{pool.subnet_prefix} lease of ipv6-network {pool.network}"
        )
    session.ipv6 = lease


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
