"""Snapshots the daemon fills and the control CLI prints (occtl's data, ocserv ``src/ctl.proto``).

Every class is a frozen, slotted, keyword-only dataclass: the daemon builds one per request from its
live state and never mutates it afterwards. Times are epoch seconds (``float``); byte counters are
plain integers. Empty strings mean "not known / not applicable", exactly like the empty protobuf
strings occtl skips when printing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "NO_GROUP",
    "NO_USER",
    "SHORT_SESSION_ID_LEN",
    "BanInfo",
    "SessionInfo",
    "StatusInfo",
    "UserInfo",
]

#: occtl prints this for an empty user or group name (ocserv ``src/occtl/occtl.h``).
NO_USER: Final = "(none)"
NO_GROUP: Final = "(none)"
#: occtl's short session id is the first 6 characters of the safe id (``unix.c`` ``shorten()``).
SHORT_SESSION_ID_LEN: Final = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInfo:
    """One connected (or connecting) user tunnel, as ``show users`` / ``show user`` print it.

    :param routes: routes in ocserv's text form (``10.0.0.0/255.0.0.0``, ``fd00::/48``); empty means
        the default route.
    :param restrict_to_ports: firewall port entries in occtl's form (``tcp(443)``, ``!udp()``).
    :param limit_rx: configured RX rate limit in bytes per second, ``None`` when unlimited.
    :param dropped: packets from the client the gateway's filter dropped, as ``(reason, count)``
        (``spoofed-source``, ``link-local``, ``malformed``, ``restricted-route``,
        ``restricted-port``); an ocgate addition to occtl's block, empty when not known.
    """

    id: int
    node: str = ""
    """The gateway (``node-name``) that serves the tunnel; an ocgate addition, for listings
    that span several nodes behind a balancer."""
    username: str = ""
    groupname: str = ""
    state: str = "connected"
    vhost: str = "default"
    device: str = ""
    mtu: int | None = None
    remote_ip: str = ""
    location: str = "unknown"
    local_device_ip: str = ""
    ipv4: str = ""
    ptp_ipv4: str = ""
    ipv6: str = ""
    ptp_ipv6: str = ""
    user_agent: str = ""
    rx: int = 0
    tx: int = 0
    limit_rx: int | None = None
    limit_tx: int | None = None
    dpd: int = 0
    keepalive: int = 0
    hostname: str = ""
    platform: str = ""
    """What the client says of its machine (``<device-id>``, ``X-AnyConnect-Identifier-*``):
    ``platform`` (``win``, ``linux-64``, ``apple-ios``…), ``platform_version``, ``device_type``,
    ``computer_name`` and ``unique_id``; ocgate additions to occtl's block, empty when not sent."""
    platform_version: str = ""
    device_type: str = ""
    computer_name: str = ""
    unique_id: str = ""
    connected_at: float = 0.0
    session_started_at: float = 0.0
    session_id: str = ""
    tls_ciphersuite: str = ""
    dtls_cipher: str = ""
    cstp_compression: str = ""
    dtls_compression: str = ""
    dns: tuple[str, ...] = ()
    nbns: tuple[str, ...] = ()
    split_dns: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    no_routes: tuple[str, ...] = ()
    iroutes: tuple[str, ...] = ()
    restrict_to_routes: bool = False
    restrict_to_ports: tuple[str, ...] = ()
    dropped: tuple[tuple[str, int], ...] = ()

    @property
    def session(self) -> str:
        """The short session id occtl prints (first 6 characters of :attr:`session_id`)."""
        return self.session_id[:SHORT_SESSION_ID_LEN]

    @property
    def vpn_ip(self) -> str:
        """The tunnel address occtl lists: the IPv4 lease, else the IPv6 one (``get_ip()``)."""
        return self.ipv4 or self.ipv6


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusInfo:
    """Server statistics for ``show status`` (ocserv ``StatusRep``).

    ``avg_auth_time`` … ``max_session_time`` are durations in seconds; ``rx``/``tx`` are bytes
    seen in the current stats period. Latencies are in microseconds, ``None`` when not measured.
    """

    server_pid: int
    sec_mod_pid: int
    up_since: float
    sec_mod_instances: int = 1
    active_sessions: int = 0
    total_sessions: int = 0
    total_auth_failures: int = 0
    ips_in_ban_list: int = 0
    sec_mod_client_entries: int = 0
    tls_db_entries: int = 0
    median_latency_us: int | None = None
    stdev_latency_us: int | None = None
    last_stats_reset: float = 0.0
    sessions_handled: int = 0
    timed_out: int = 0
    timed_out_idle: int = 0
    closed_due_to_error: int = 0
    auth_failures: int = 0
    avg_auth_time: int = 0
    max_auth_time: int = 0
    avg_session_time: int = 0
    max_session_time: int = 0
    min_mtu: int = 0
    max_mtu: int = 0
    rx: int = 0
    tx: int = 0
    node: str = ""
    """ocgate additions: the gateway's ``node-name``; its ``state`` for a balancer (``ready``,
    ``draining``, ``stopping``; empty from a server that does not say) and, while draining, the
    epoch time it stops at (``drain_deadline``, 0 otherwise)."""
    state: str = ""
    drain_deadline: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    """One cookie session for ``show sessions`` / ``show session`` (ocserv ``CookieIntMsg``).

    ``state`` is occtl's cookie wording: ``authenticated``, ``authenticating``, ``pre-auth`` or
    ``auth failed``; only ``authenticated`` sessions are "valid".
    """

    session_id: str
    created: float = 0.0
    expires: float = 0.0
    state: str = "authenticated"
    username: str = ""
    groupname: str = ""
    vhost: str = "default"
    user_agent: str = ""
    remote_ip: str = ""
    location: str = "unknown"
    in_use: bool = False
    activated: bool = False
    certificate_auth: bool = False
    last_modified: float | None = None

    @property
    def session(self) -> str:
        """The short session id occtl prints (first 6 characters)."""
        return self.session_id[:SHORT_SESSION_ID_LEN]

    @property
    def is_valid(self) -> bool:
        """Whether ``show sessions valid`` lists it (ocserv: status ``PS_AUTH_COMPLETED``)."""
        return self.state == "authenticated"


@dataclass(frozen=True, slots=True, kw_only=True)
class BanInfo:
    """One scored IP for ``show ip bans`` / ``show ip ban points`` (ocserv ``BanInfoRep``).

    :param expires: when the ban ends; ``None`` while the IP only has points and is not banned.
    :param since: when the IP was first scored (``0.0`` when unknown).
    """

    ip: str
    score: int
    expires: float | None = None
    since: float = 0.0
