"""The daemon side of the control protocol, minus the socket: request -> response (pure).

The daemon implements :class:`ControlBackend` over its live state and, per request line, calls
``encode_response(dispatch(parse_request_untrusted(line), backend))``. Selection rules (which
users ``show user`` lists, how a session id matches, what ``valid`` means) live here so they stay
the same whoever serves them. ``show events`` answers the current user table; the daemon then
keeps the connection and writes one :func:`~ocgate.control.encode_event` line per connect or
disconnect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Protocol

from ocgate.control._model import BanInfo, SessionInfo, StatusInfo, UserInfo
from ocgate.control._protocol import (
    DEFAULT_DRAIN_SECONDS,
    BansResponse,
    Command,
    ErrorResponse,
    OkResponse,
    Request,
    Response,
    SessionsResponse,
    StatusResponse,
    UsersResponse,
)

__all__ = ["ControlBackend", "dispatch", "match_session"]


class ControlBackend(Protocol):
    """What the daemon provides to answer control requests (snapshots and actions)."""

    def status(self) -> StatusInfo: ...
    def users(self) -> Sequence[UserInfo]: ...
    def sessions(self) -> Sequence[SessionInfo]: ...
    def bans(self) -> Sequence[BanInfo]: ...

    def disconnect(self, users: Sequence[UserInfo], *, terminate: bool) -> bool:
        """Drop these tunnels (rows of :meth:`users`, of this node or of another one sharing its
        session store); with ``terminate`` also invalidate their session cookies."""
        ...

    def terminate_session(self, session_id: str) -> bool:
        """Invalidate the cookie session with this full id (and drop its tunnel, if any)."""
        ...

    def unban(self, ip: str) -> bool: ...
    def reload(self) -> bool: ...
    def stop(self) -> bool: ...

    def drain(self, seconds: int) -> bool:
        """Refuse new logins and CONNECTs now, and stop in ``seconds`` without telling the
        clients (their sessions stay, so they reconnect elsewhere with their cookies)."""
        ...

    def terminate_user_elsewhere(self, username: str) -> bool:
        """With a session store shared by several gateways: end the user's sessions on the
        other nodes too, tunnels or not (``False``: this gateway is alone)."""
        ...


def match_session(session: SessionInfo, sid: str) -> bool:
    """Whether ``sid`` names ``session``: its full id, or a prefix of its 6-character short id
    (occtl compares ``strncmp(short_id, arg, strlen(arg))``)."""
    return sid == session.session_id or (sid != "" and session.session.startswith(sid))


def _users_named(backend: ControlBackend, name: object) -> list[UserInfo]:
    return [u for u in backend.users() if u.username == name]


def _users_with_id(backend: ControlBackend, uid: object) -> list[UserInfo]:
    """The tunnel with id ``uid``; none if several nodes (a shared session store) list it."""
    found = [u for u in backend.users() if u.id == uid]
    return found if len({u.node for u in found}) <= 1 else []


def _drop(backend: ControlBackend, users: list[UserInfo], terminate: bool, what: str) -> Response:
    if not users:
        return ErrorResponse(f"{what} is not connected")
    if backend.disconnect(users, terminate=terminate):
        return OkResponse()
    return ErrorResponse(f"could not drop {what}")


def _terminate_user(backend: ControlBackend, req: Request) -> Response:
    """Every session of the user ends, connected or not: tunnels are told, cookies die."""
    users = _users_named(backend, req.arg)
    sids = [s.session_id for s in backend.sessions() if s.username == req.arg]
    elsewhere = isinstance(req.arg, str) and backend.terminate_user_elsewhere(req.arg)
    if not users and not sids and not elsewhere:
        return ErrorResponse(f"user {req.arg!r} has no session")
    ok = all([backend.terminate_session(sid) for sid in sids])
    if users:
        ok = backend.disconnect(users, terminate=True) and ok
    return _done(ok, f"user {req.arg!r}")


def _terminate_session(backend: ControlBackend, sid: object) -> Response:
    matches = [s for s in backend.sessions() if isinstance(sid, str) and match_session(s, sid)]
    if len(matches) != 1:
        return ErrorResponse(f"session {sid!r} matches {len(matches)} sessions")
    return _done(backend.terminate_session(matches[0].session_id), f"session {sid!r}")


def _done(ok: bool, what: str) -> Response:
    return OkResponse() if ok else ErrorResponse(f"could not act on {what}")


def _sessions(backend: ControlBackend, req: Request) -> Response:
    if req.cmd is Command.SHOW_SESSION:
        sid = req.arg if isinstance(req.arg, str) else ""
        return SessionsResponse(tuple(s for s in backend.sessions() if match_session(s, sid)))
    valid_only = req.arg == "valid"
    return SessionsResponse(tuple(s for s in backend.sessions() if s.is_valid or not valid_only))


_Handler = Callable[[ControlBackend, Request], Response]

_HANDLERS: Final[dict[Command, _Handler]] = {
    Command.SHOW_STATUS: lambda b, r: StatusResponse(b.status()),
    Command.SHOW_USERS: lambda b, r: UsersResponse(tuple(b.users())),
    Command.SHOW_IROUTES: lambda b, r: UsersResponse(tuple(b.users())),
    Command.SHOW_EVENTS: lambda b, r: UsersResponse(tuple(b.users())),
    Command.SHOW_USER: lambda b, r: UsersResponse(tuple(_users_named(b, r.arg))),
    Command.SHOW_ID: lambda b, r: UsersResponse(tuple(_users_with_id(b, r.arg))),
    Command.SHOW_SESSIONS: _sessions,
    Command.SHOW_SESSION: _sessions,
    Command.SHOW_IP_BANS: lambda b, r: BansResponse(tuple(b.bans())),
    Command.SHOW_IP_BAN_POINTS: lambda b, r: BansResponse(tuple(b.bans())),
    Command.DISCONNECT_USER: lambda b, r: _drop(b, _users_named(b, r.arg), True, f"user {r.arg!r}"),
    Command.DISCONNECT_ID: lambda b, r: _drop(b, _users_with_id(b, r.arg), True, f"ID {r.arg}"),
    Command.TERMINATE_USER: _terminate_user,
    Command.TERMINATE_ID: lambda b, r: _drop(b, _users_with_id(b, r.arg), True, f"ID {r.arg}"),
    Command.TERMINATE_SESSION: lambda b, r: _terminate_session(b, r.arg),
    Command.UNBAN_IP: lambda b, r: _done(b.unban(str(r.arg)), f"IP {r.arg}"),
    Command.RELOAD: lambda b, r: _done(b.reload(), "reload"),
    Command.STOP: lambda b, r: _done(b.stop(), "stop"),
    Command.DRAIN: lambda b, r: _done(
        b.drain(r.arg if isinstance(r.arg, int) else DEFAULT_DRAIN_SECONDS), "drain"
    ),
}


def dispatch(req: Request, backend: ControlBackend) -> Response:
    """Answer one control request from ``backend``'s snapshots and actions."""
    return _HANDLERS[req.cmd](backend, req)
