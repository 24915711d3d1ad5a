"""The daemon-side request -> response rules, against an in-memory backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ocgate.control import (
    BanInfo,
    BansResponse,
    Command,
    ErrorResponse,
    OkResponse,
    Request,
    SessionInfo,
    SessionsResponse,
    StatusInfo,
    StatusResponse,
    UserInfo,
    UsersResponse,
    dispatch,
    match_session,
)


@dataclass
class FakeBackend:
    """A :class:`ocgate.control.ControlBackend` over lists; records the actions it is asked for."""

    users_: list[UserInfo]
    sessions_: list[SessionInfo]
    bans_: list[BanInfo]
    status_: StatusInfo
    accept: bool = True
    actions: list[tuple[str, object]] = field(default_factory=list)

    def status(self) -> StatusInfo:
        return self.status_

    def users(self) -> Sequence[UserInfo]:
        return self.users_

    def sessions(self) -> Sequence[SessionInfo]:
        return self.sessions_

    def bans(self) -> Sequence[BanInfo]:
        return self.bans_

    def disconnect(self, users: Sequence[UserInfo], *, terminate: bool) -> bool:
        ids = tuple(u.id for u in users)
        self.actions.append(("terminate" if terminate else "disconnect", ids))
        return self.accept

    def terminate_session(self, session_id: str) -> bool:
        self.actions.append(("terminate_session", session_id))
        return self.accept

    def unban(self, ip: str) -> bool:
        self.actions.append(("unban", ip))
        return self.accept

    def reload(self) -> bool:
        self.actions.append(("reload", None))
        return self.accept

    def stop(self) -> bool:
        self.actions.append(("stop", None))
        return self.accept

    def drain(self, seconds: int) -> bool:
        self.actions.append(("drain", seconds))
        return self.accept

    def terminate_user_elsewhere(self, username: str) -> bool:
        return False


def make_backend(
    user: UserInfo,
    minimal_user: UserInfo,
    sessions: tuple[SessionInfo, ...],
    bans: tuple[BanInfo, ...],
    status: StatusInfo,
) -> FakeBackend:
    return FakeBackend([user, minimal_user], list(sessions), list(bans), status)


def test_queries(
    user: UserInfo,
    minimal_user: UserInfo,
    sessions: tuple[SessionInfo, ...],
    bans: tuple[BanInfo, ...],
    status: StatusInfo,
) -> None:
    b = make_backend(user, minimal_user, sessions, bans, status)
    assert dispatch(Request(Command.SHOW_STATUS), b) == StatusResponse(status)
    assert dispatch(Request(Command.SHOW_USERS), b) == UsersResponse((user, minimal_user))
    assert dispatch(Request(Command.SHOW_IROUTES), b) == UsersResponse((user, minimal_user))
    assert dispatch(Request(Command.SHOW_EVENTS), b) == UsersResponse((user, minimal_user))
    assert dispatch(Request(Command.SHOW_USER, "bob"), b) == UsersResponse((minimal_user,))
    assert dispatch(Request(Command.SHOW_USER, "carol"), b) == UsersResponse(())
    assert dispatch(Request(Command.SHOW_ID, 7), b) == UsersResponse((user,))
    assert dispatch(Request(Command.SHOW_SESSIONS, "all"), b) == SessionsResponse(sessions)
    assert dispatch(Request(Command.SHOW_SESSIONS, "valid"), b) == SessionsResponse(sessions[:1])
    assert dispatch(Request(Command.SHOW_SESSION, "AbC"), b) == SessionsResponse(sessions[:1])
    assert dispatch(Request(Command.SHOW_IP_BANS), b) == BansResponse(bans)
    assert dispatch(Request(Command.SHOW_IP_BAN_POINTS), b) == BansResponse(bans)
    assert b.actions == []


def test_actions(
    user: UserInfo,
    minimal_user: UserInfo,
    sessions: tuple[SessionInfo, ...],
    bans: tuple[BanInfo, ...],
    status: StatusInfo,
) -> None:
    b = make_backend(user, minimal_user, sessions, bans, status)
    for req in (
        Request(Command.DISCONNECT_USER, "alice"),
        Request(Command.DISCONNECT_ID, 8),
        Request(Command.TERMINATE_USER, "bob"),
        Request(Command.TERMINATE_ID, 7),
        Request(Command.TERMINATE_SESSION, "QwErTy"),
        Request(Command.TERMINATE_SESSION, sessions[0].session_id),
        Request(Command.UNBAN_IP, "192.0.2.66"),
        Request(Command.RELOAD),
        Request(Command.STOP),
    ):
        assert dispatch(req, b) == OkResponse(), req
    # ``disconnect`` invalidates the cookie like ``terminate`` (ocserv's code, not its man page).
    assert b.actions == [
        ("terminate", (7,)),
        ("terminate", (8,)),
        ("terminate", (8,)),
        ("terminate", (7,)),
        ("terminate_session", "QwErTyUiOp"),
        ("terminate_session", sessions[0].session_id),
        ("unban", "192.0.2.66"),
        ("reload", None),
        ("stop", None),
    ]


def test_terminate_user_ends_every_session(
    user: UserInfo,
    minimal_user: UserInfo,
    sessions: tuple[SessionInfo, ...],
    bans: tuple[BanInfo, ...],
    status: StatusInfo,
) -> None:
    b = make_backend(user, minimal_user, sessions, bans, status)
    idle = SessionInfo(session_id="IdLeSeSsIoN1", username="alice", in_use=False)
    b.sessions_ = [*sessions, idle]
    assert dispatch(Request(Command.TERMINATE_USER, "alice"), b) == OkResponse()
    assert b.actions == [
        ("terminate_session", sessions[0].session_id),
        ("terminate_session", idle.session_id),
        ("terminate", (7,)),
    ]
    b.actions.clear()
    b.users_ = []  # Nobody connected: the sessions still end.
    assert dispatch(Request(Command.TERMINATE_USER, "alice"), b) == OkResponse()
    assert b.actions == [
        ("terminate_session", sessions[0].session_id),
        ("terminate_session", idle.session_id),
    ]
    assert isinstance(dispatch(Request(Command.TERMINATE_USER, "carol"), b), ErrorResponse)


def test_refusals(
    user: UserInfo,
    minimal_user: UserInfo,
    sessions: tuple[SessionInfo, ...],
    bans: tuple[BanInfo, ...],
    status: StatusInfo,
) -> None:
    b = make_backend(user, minimal_user, sessions, bans, status)
    assert isinstance(dispatch(Request(Command.DISCONNECT_USER, "carol"), b), ErrorResponse)
    assert isinstance(dispatch(Request(Command.TERMINATE_ID, 99), b), ErrorResponse)
    assert isinstance(dispatch(Request(Command.TERMINATE_SESSION, "zzz"), b), ErrorResponse)
    ambiguous = [*sessions, SessionInfo(session_id="AbCdXX")]
    b.sessions_ = ambiguous
    assert isinstance(dispatch(Request(Command.TERMINATE_SESSION, "AbCd"), b), ErrorResponse)
    assert b.actions == []
    b.accept = False
    assert isinstance(dispatch(Request(Command.RELOAD), b), ErrorResponse)
    assert isinstance(dispatch(Request(Command.DISCONNECT_ID, 7), b), ErrorResponse)


def test_match_session() -> None:
    s = SessionInfo(session_id="AbCdEfGhIj")
    assert match_session(s, "AbCdEfGhIj")
    assert match_session(s, "AbCdEf")
    assert match_session(s, "Ab")
    assert not match_session(s, "AbCdEfG")  # longer than the short id and not the full id
    assert not match_session(s, "")
    assert not match_session(s, "abcdef")
