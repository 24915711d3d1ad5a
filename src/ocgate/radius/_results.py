"""What RADIUS authentication and accounting hand back to the gateway."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["AccountingSession", "RadiusChallenge", "RadiusResult", "SessionStats"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True, kw_only=True)
class RadiusResult:
    """An Access-Accept, reduced to what ocserv uses (ocserv-compatibility §6).

    :param username: the name that was authenticated (with ``default_realm`` if one was added).
    :param groups: groups from Class ``OU=g1;g2`` (only with ``groupconfig=true``).
    :param framed_ipv4: Framed-IP-Address.
    :param framed_netmask: Framed-IP-Netmask.
    :param framed_ipv6: Framed-IPv6-Address.
    :param framed_ipv6_prefix: Delegated-IPv6-Prefix (the client's IPv6 network).
    :param routes: IPv4 networks from Framed-Route (gateway and metric dropped).
    :param ipv6_routes: networks from Framed-IPv6-Route and Framed-IPv6-Prefix.
    :param dns: MS-Primary/Secondary-DNS-Server, then DNS-Server-IPv6-Address, in that order.
    :param session_timeout: Session-Timeout in seconds.
    :param idle_timeout: Idle-Timeout in seconds.
    :param interim_interval: Acct-Interim-Interval in seconds (``None`` with
        ``override-interim-updates=true``).
    :param upstream_kbps: RP-Upstream-Speed-Limit (client to network), kbit/s.
    :param downstream_kbps: RP-Downstream-Speed-Limit (network to client), kbit/s.
    :param reply_message: Reply-Message values joined by newlines, if any.
    :param classes: every Class value as sent, to echo in accounting (RFC 2865 section 5.25).
    """

    username: str
    groups: tuple[str, ...] = ()
    framed_ipv4: ipaddress.IPv4Address | None = None
    framed_netmask: ipaddress.IPv4Address | None = None
    framed_ipv6: ipaddress.IPv6Address | None = None
    framed_ipv6_prefix: ipaddress.IPv6Network | None = None
    routes: tuple[ipaddress.IPv4Network, ...] = ()
    ipv6_routes: tuple[ipaddress.IPv6Network, ...] = ()
    dns: tuple[IPAddress, ...] = ()
    session_timeout: int | None = None
    idle_timeout: int | None = None
    interim_interval: int | None = None
    upstream_kbps: int | None = None
    downstream_kbps: int | None = None
    reply_message: str | None = None
    classes: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RadiusChallenge:
    """An Access-Challenge: show ``message`` in a form with ``secondary_password`` and pass this
    object back to :meth:`RadiusAuthenticator.authenticate` with the answer.

    :param message: the Reply-Message text(s), joined by newlines.
    :param state: the State to echo (opaque server data; kept server side, never sent to the
        VPN client).
    :param round: how many challenges this login has had so far (1 for the first).
    :param server: index of the server that sent it; the answer must go to the same server.
    """

    message: str
    state: bytes = field(repr=False)
    round: int = 1
    server: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountingSession:
    """The session attributes every Accounting-Request carries.

    :param username: User-Name (as in :attr:`RadiusResult.username`).
    :param session_id: Acct-Session-Id: the session's stable id (ocserv: the "safe id"), the
        same across reconnects of one session.
    :param client_ip: Calling-Station-Id: the VPN client's public address.
    :param user_agent: Connect-Info.
    :param framed_ipv4: Framed-IP-Address leased to the client.
    :param framed_ipv6: Framed-IPv6-Address leased to the client.
    :param server_ip: NAS-IP-Address / NAS-IPv6-Address (the local address of the connection).
    :param classes: Class values from the Access-Accept, echoed (RFC 2865 section 5.25).
    """

    username: str
    session_id: str
    client_ip: str
    user_agent: str | None = None
    framed_ipv4: ipaddress.IPv4Address | None = None
    framed_ipv6: ipaddress.IPv6Address | None = None
    server_ip: str | None = None
    classes: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStats:
    """Counters of one session (RFC 2866 sections 5.3-5.8 names the direction from the NAS).

    :param bytes_in: octets received from the VPN client (Acct-Input-Octets + Gigawords).
    :param bytes_out: octets sent to the VPN client (Acct-Output-Octets + Gigawords).
    :param packets_in: packets received from the VPN client.
    :param packets_out: packets sent to the VPN client.
    :param session_time: seconds since the session started, across reconnects.
    """

    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    session_time: int = 0
