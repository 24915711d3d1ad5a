"""occtl's text output (pure): tables and detail blocks, byte-for-byte like ocserv's occtl.

Every function returns the complete text, newline-terminated, or ``""`` when occtl prints
nothing (an empty table has no header either). ``now`` is the current epoch time and ``tz`` the
zone dates are shown in (``None``: the local zone, like occtl). Layouts follow ocserv
``src/occtl/unix.c``; the column formats are quoted at each function.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import tzinfo
from typing import Final

from ocgate.control._blocks import TextEmitter, session_block, status_block, user_block
from ocgate.control._model import NO_USER, BanInfo, SessionInfo, StatusInfo, UserInfo
from ocgate.control._protocol import Event
from ocgate.control._units import format_date, interval_between

__all__ = [
    "NOT_FOUND_SESSION",
    "NOT_FOUND_USER",
    "fix_ciphersuite",
    "format_ban_points",
    "format_bans",
    "format_event",
    "format_iroutes",
    "format_session",
    "format_sessions",
    "format_status",
    "format_status_offline",
    "format_user",
    "format_users",
]

#: What occtl prints when ``show user`` / ``show id`` match nothing.
NOT_FOUND_USER: Final = "user or ID not found\n"
#: What occtl prints when ``show session`` matches nothing.
NOT_FOUND_SESSION: Final = "Session ID not found or expired\n"

_NOTE: Final = (
    "Note: the printed statistics are not real-time; session time\n"
    "as well as RX and TX data are updated on user disconnect\n"
)


def _join(lines: Iterable[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def fix_ciphersuite(description: str) -> str:
    """The ``dtls-cipher`` column: GnuTLS's description without ``(DTLSx.y)-(RSA|PSK)-``.

    Anything else (no DTLS, or a description too short to have a cipher part such as
    ``(DTLS1.2)-(PSK)``) prints ``(no-dtls)`` (ocserv ``unix.c`` ``fix_ciphersuite()``).
    """
    if (
        len(description) > 16
        and description.startswith("(DTLS")
        and description[8:16] in (")-(RSA)-", ")-(PSK)-")
    ):
        return description[16:]
    return "(no-dtls)"


def format_status(
    status: StatusInfo, *, now: float, tz: tzinfo | None = None, debug: bool = False
) -> str:
    """``show status``; ``debug`` adds the sec-mod and TLS DB counters (``occtl --debug``)."""
    e = TextEmitter()
    status_block(e, status, now=now, tz=tz, debug=debug)
    return _join(e.lines)


def format_status_offline() -> str:
    """``show status`` when the server does not answer (printed with exit status 1)."""
    return _NOTE + "\tStatus: offline\n"


def format_users(users: Sequence[UserInfo], *, now: float, tz: tzinfo | None = None) -> str:
    """``show users``: ``%8s %8s %8s %14s %14s %6s %7s %14s %9s`` (``common_user_list()``).

    A listing that spans several gateways (a shared session store) ends each line with the
    node serving the tunnel (an ocgate addition; one node's listing is occtl's, unchanged)."""
    if not users:
        return ""
    nodes = len({u.node for u in users}) > 1
    lines = [
        f"{'id':>8} {'user':>8} {'vhost':>8} {'ip':>14} {'vpn-ip':>14} {'device':>6} "
        f"{'since':>7} {'dtls-cipher':>14} {'status':>9}" + (f" {'node':>10}" if nodes else "")
    ]
    for u in users:
        lines.append(
            f"{u.id:8d} {u.username or NO_USER:>8} {u.vhost:>8} {u.remote_ip:>14} "
            f"{u.vpn_ip:>14} {u.device:>6} {interval_between(now, u.connected_at)} "
            f"{fix_ciphersuite(u.dtls_cipher):>14} {u.state:>9}"
            + (f" {u.node:>10}" if nodes else "")
        )
    return _join(lines)


def format_user(users: Sequence[UserInfo], *, now: float, tz: tzinfo | None = None) -> str:
    """``show user NAME`` / ``show id ID``: one detail block per tunnel, a blank line between."""
    if not users:
        return NOT_FOUND_USER
    blocks = []
    for u in users:
        e = TextEmitter()
        user_block(e, u, now=now, tz=tz)
        blocks.append(_join(e.lines))
    return "\n".join(blocks)


def format_sessions(
    sessions: Sequence[SessionInfo],
    *,
    now: float,
    tz: tzinfo | None = None,
    valid_only: bool = False,
) -> str:
    """``show sessions all|valid``: ``%6s %8s %8s %14s %24s %8s %8s`` (``session_list()``).

    Rows keep occtl's ``%.6s`` session and ``%.24s`` user-agent (cut, not padded). occtl prints
    the header only when the *first* session is listed; here it heads any non-empty listing.
    """
    rows = [s for s in sessions if s.is_valid or not valid_only]
    if not rows:
        return ""
    lines = [
        f"{'session':>6} {'user':>8} {'vhost':>8} {'ip':>14} {'user agent':>24} "
        f"{'created':>8} {'status':>8}"
    ]
    for s in rows:
        created = interval_between(now, s.created) if s.created > 0 else "   ?   "
        lines.append(
            f"{s.session} {s.username or NO_USER:>8} {s.vhost:>8} {s.remote_ip:>14} "
            f"{s.user_agent[:24]} {created:>8} {s.state:>8}"
        )
    return _join(lines)


def format_session(sessions: Sequence[SessionInfo], *, tz: tzinfo | None = None) -> str:
    """``show session SID``: one detail block per match (``session_info_cmd()``)."""
    if not sessions:
        return NOT_FOUND_SESSION
    blocks = []
    for s in sessions:
        e = TextEmitter()
        session_block(e, s, tz=tz)
        blocks.append(_join(e.lines))
    return "\n".join(blocks)


def _banned(bans: Sequence[BanInfo], now: float) -> list[BanInfo]:
    # Only IPs whose ban is still running (ocserv issue #675 listed expired ones).
    return [b for b in bans if b.expires is not None and b.expires > now]


def format_bans(bans: Sequence[BanInfo], *, now: float, tz: tzinfo | None = None) -> str:
    """``show ip bans``: header ``%15s %10s %30s``; rows ``IP score DATE (time left)``."""
    rows = _banned(bans, now)
    if not rows:
        return ""
    lines = [f"{'IP':>15} {'score':>10} {'expires':>30}"]
    for b in rows:
        expires = b.expires if b.expires is not None else now
        lines.append(
            f"{b.ip:>15} {b.score:10d} {format_date(expires, tz):>30} "
            f"({interval_between(expires, now)})"
        )
    return _join(lines)


def format_ban_points(bans: Sequence[BanInfo]) -> str:
    """``show ip ban points``: every scored IP, ``%15s %10s``."""
    if not bans:
        return ""
    lines = [f"{'IP':>15} {'score':>10}"]
    lines += [f"{b.ip:>15} {b.score:10d}" for b in bans]
    return _join(lines)


def format_iroutes(users: Sequence[UserInfo]) -> str:
    """``show iroutes``: ``%6s %8s %8s %6s %16s %28s``, one row per iroute.

    Like occtl, the header is printed whenever a user is connected, even if nobody has iroutes.
    """
    if not users:
        return ""
    lines = [f"{'id':>6} {'user':>8} {'vhost':>8} {'device':>6} {'vpn-ip':>16} {'iroute':>28}"]
    for u in users:
        lines += [
            f"{u.id:6d} {u.username or NO_USER:>8} {u.vhost:>8} {u.device:>6} {u.vpn_ip:>16} "
            f"{iroute:>28}"
            for iroute in u.iroutes
        ]
    return _join(lines)


def format_event(event: Event, *, now: float) -> str:
    """One ``show events`` line (ocserv ``unix.c`` ``handle_events_cmd()``)."""
    u = event.user
    verb = "connected" if event.kind == "connect" else "disconnect"
    line = f"{u.vhost}: {verb} user '{u.username}' ({u.id}) from {u.remote_ip} with IP {u.vpn_ip}"
    if event.kind == "connect":
        return line + "\n"
    reason = event.reason or "unknown"
    return line + f" (reason: {reason}, time: {interval_between(now, u.connected_at)})\n"
