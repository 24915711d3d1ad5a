"""The control-socket protocol: occtl's command grammar and a versioned JSON-lines codec.

Theory of operation
-------------------
A client connects to the daemon's Unix socket (``occtl-socket-file``, mode 0600), writes one
request line and reads one response line; ``show events`` instead keeps reading: first a
``users`` response (the current table), then one event line per connect or disconnect until
either side closes. Every line is one JSON object terminated by ``\\n``, at most
:data:`MAX_LINE_BYTES` long, and carries ``"v": 1``::

    {"v": 1, "cmd": "show_user", "arg": "alice"}
    {"v": 1, "type": "users", "users": [{"id": 7, "username": "alice", ...}]}
    {"v": 1, "type": "ok"}
    {"v": 1, "type": "error", "message": "user 'bob' is not connected"}
    {"v": 1, "event": "disconnect", "user": {...}, "reason": "user disconnected"}

Snapshots are encoded field by field from the dataclasses in :mod:`._model` (tuples become
arrays); decoding checks every field's JSON type against the dataclass annotation, fills omitted
fields with their defaults and ignores unknown keys, so a newer daemon can add fields.
``parse_*_untrusted`` raise only :class:`~ocgate.errors.BadControlMessage`.

:func:`parse_command` turns occtl's command words into a :class:`Request` (ocserv
``src/occtl/occtl.c`` ``commands[]`` and ``check_cmd()``: whole words, case-insensitive, no
abbreviations; the rest of the line is the argument).
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from enum import StrEnum
from typing import Any, Final, TypeAlias, TypeVar

from ocgate.control._model import BanInfo, SessionInfo, StatusInfo, UserInfo
from ocgate.errors import BadControlMessage, LocalProtocolError

__all__ = [
    "COMMAND_TABLE",
    "DEFAULT_DRAIN_SECONDS",
    "MAX_DRAIN_SECONDS",
    "MAX_LINE_BYTES",
    "PROTOCOL_VERSION",
    "BansResponse",
    "Command",
    "CommandSpec",
    "ErrorResponse",
    "Event",
    "OkResponse",
    "Request",
    "Response",
    "SessionsResponse",
    "StatusResponse",
    "UsageError",
    "UsersResponse",
    "encode_event",
    "encode_request",
    "encode_response",
    "parse_command",
    "parse_event_untrusted",
    "parse_request_untrusted",
    "parse_response_untrusted",
]

PROTOCOL_VERSION: Final = 1
#: Longest accepted line, newline included (a thousand detailed users fit comfortably).
MAX_LINE_BYTES: Final = 1 << 20
_MAX_INT: Final = 1 << 63
#: ``stop drain`` without SECONDS: the grace before the tunnels close (ocgate extension).
DEFAULT_DRAIN_SECONDS: Final = 30
#: The longest drain grace accepted (a day).
MAX_DRAIN_SECONDS: Final = 86400


class Command(StrEnum):
    """Request verbs (occtl's commands, snake_case)."""

    SHOW_STATUS = "show_status"
    SHOW_USERS = "show_users"
    SHOW_USER = "show_user"
    SHOW_ID = "show_id"
    SHOW_SESSIONS = "show_sessions"
    SHOW_SESSION = "show_session"
    SHOW_IP_BANS = "show_ip_bans"
    SHOW_IP_BAN_POINTS = "show_ip_ban_points"
    SHOW_IROUTES = "show_iroutes"
    SHOW_EVENTS = "show_events"
    DISCONNECT_USER = "disconnect_user"
    DISCONNECT_ID = "disconnect_id"
    TERMINATE_USER = "terminate_user"
    TERMINATE_ID = "terminate_id"
    TERMINATE_SESSION = "terminate_session"
    UNBAN_IP = "unban_ip"
    RELOAD = "reload"
    STOP = "stop"
    DRAIN = "drain"


class _Arg(StrEnum):
    NONE = ""
    NAME = "[NAME]"
    ID = "[ID]"
    IP = "[IP]"
    SID = "[SID]"
    FIXED = "fixed"
    SECONDS = "[SECONDS]"
    """Optional: whole seconds up to :data:`MAX_DRAIN_SECONDS`; ``None`` means the default."""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One line of occtl's command table: the words typed, the argument and the help text."""

    words: str
    arg: str
    command: Command
    doc: str
    fixed_arg: str = ""


#: occtl's commands in its help order (ocserv ``src/occtl/occtl.c`` ``commands[]``), plus the
#: 1.4.2 ``terminate`` verbs and the ``show cookies`` aliases.
COMMAND_TABLE: Final[tuple[CommandSpec, ...]] = (
    CommandSpec(
        "disconnect user", _Arg.NAME, Command.DISCONNECT_USER, "Disconnect the specified user"
    ),
    CommandSpec("disconnect id", _Arg.ID, Command.DISCONNECT_ID, "Disconnect the specified ID"),
    CommandSpec(
        "terminate user",
        _Arg.NAME,
        Command.TERMINATE_USER,
        "Invalidate every session of the user, connected or not",
    ),
    CommandSpec(
        "terminate id",
        _Arg.ID,
        Command.TERMINATE_ID,
        "Disconnect the specified ID and invalidate its session cookie",
    ),
    CommandSpec(
        "terminate session",
        _Arg.SID,
        Command.TERMINATE_SESSION,
        "Invalidate the specified session (short or full ID)",
    ),
    CommandSpec("unban ip", _Arg.IP, Command.UNBAN_IP, "Unban the specified IP"),
    CommandSpec("reload", _Arg.NONE, Command.RELOAD, "Reloads the server configuration"),
    CommandSpec("show status", _Arg.NONE, Command.SHOW_STATUS, "Prints the status of the server"),
    CommandSpec("show users", _Arg.NONE, Command.SHOW_USERS, "Prints the connected users"),
    CommandSpec("show ip bans", _Arg.NONE, Command.SHOW_IP_BANS, "Prints the banned IP addresses"),
    CommandSpec(
        "show ip ban points",
        _Arg.NONE,
        Command.SHOW_IP_BAN_POINTS,
        "Prints all the known IP addresses which have points",
    ),
    CommandSpec(
        "show iroutes",
        _Arg.NONE,
        Command.SHOW_IROUTES,
        "Prints the routes provided by users of the server",
    ),
    CommandSpec(
        "show sessions all",
        _Arg.FIXED,
        Command.SHOW_SESSIONS,
        "Prints all the session IDs",
        "all",
    ),
    CommandSpec(
        "show sessions valid",
        _Arg.FIXED,
        Command.SHOW_SESSIONS,
        "Prints all the valid for reconnection sessions",
        "valid",
    ),
    CommandSpec(
        "show cookies all", _Arg.FIXED, Command.SHOW_SESSIONS, "Alias of show sessions all", "all"
    ),
    CommandSpec(
        "show cookies valid",
        _Arg.FIXED,
        Command.SHOW_SESSIONS,
        "Alias of show sessions valid",
        "valid",
    ),
    CommandSpec(
        "show session",
        _Arg.SID,
        Command.SHOW_SESSION,
        "Prints information on the specified session",
    ),
    CommandSpec(
        "show user", _Arg.NAME, Command.SHOW_USER, "Prints information on the specified user"
    ),
    CommandSpec("show id", _Arg.ID, Command.SHOW_ID, "Prints information on the specified ID"),
    CommandSpec(
        "show events",
        _Arg.NONE,
        Command.SHOW_EVENTS,
        "Provides information about connecting users",
    ),
    CommandSpec("stop now", _Arg.NONE, Command.STOP, "Terminates the server"),
    CommandSpec(
        "stop drain",
        _Arg.SECONDS,
        Command.DRAIN,
        "Refuses new logins (health: draining), then after SECONDS (default "
        f"{DEFAULT_DRAIN_SECONDS}) closes every tunnel without ending its session and stops",
    ),
    CommandSpec("drain", _Arg.SECONDS, Command.DRAIN, "Alias of stop drain"),
)

_COMMANDS: Final = frozenset(c.value for c in Command)
_ARG_OF: Final[dict[Command, _Arg]] = {spec.command: _Arg(spec.arg) for spec in COMMAND_TABLE}


class UsageError(LocalProtocolError):
    """Command words that match no command (or a command with a missing or bad argument).

    ``candidates`` are the table entries whose words start like the input, for a help hint.
    """

    def __init__(self, message: str, *, candidates: tuple[CommandSpec, ...] = ()) -> None:
        super().__init__(message)
        self.candidates = candidates


@dataclass(frozen=True, slots=True)
class Request:
    """One control request. ``arg`` is a user name, an IP, a session id, ``"all"``/``"valid"``
    (``show_sessions``), an ``int`` connection id or the ``int`` seconds of ``drain`` (``None``:
    the default grace), as the command needs."""

    cmd: Command
    arg: str | int | None = None


@dataclass(frozen=True, slots=True)
class StatusResponse:
    status: StatusInfo


@dataclass(frozen=True, slots=True)
class UsersResponse:
    users: tuple[UserInfo, ...]


@dataclass(frozen=True, slots=True)
class SessionsResponse:
    sessions: tuple[SessionInfo, ...]


@dataclass(frozen=True, slots=True)
class BansResponse:
    bans: tuple[BanInfo, ...]


@dataclass(frozen=True, slots=True)
class OkResponse:
    """The action was carried out (occtl's ``BoolMsg`` with ``status`` true)."""


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """The request failed or the action could not be carried out; ``message`` says why."""

    message: str


Response: TypeAlias = (
    StatusResponse | UsersResponse | SessionsResponse | BansResponse | OkResponse | ErrorResponse
)


@dataclass(frozen=True, slots=True)
class Event:
    """A ``show events`` update: ``kind`` is ``"connect"`` or ``"disconnect"``."""

    kind: str
    user: UserInfo
    reason: str = ""


_EVENT_KINDS: Final = frozenset({"connect", "disconnect"})

# --------------------------------------------------------------------------------------------
# Command grammar


def _check_arg(spec: CommandSpec, rest: list[str], line: str) -> Request:
    kind = _Arg(spec.arg)
    if kind is _Arg.SECONDS:
        if not rest:
            return Request(spec.command)
        arg = " ".join(rest)
        if not arg.isascii() or not arg.isdigit() or int(arg) > MAX_DRAIN_SECONDS:
            raise UsageError(f"invalid SECONDS: {arg} (0-{MAX_DRAIN_SECONDS})", candidates=(spec,))
        return Request(spec.command, int(arg))
    if kind in (_Arg.NONE, _Arg.FIXED):
        if rest:
            raise UsageError(f"unexpected argument after {spec.words!r}: {' '.join(rest)}")
        return Request(spec.command, spec.fixed_arg or None)
    if not rest or rest == ["?"]:
        raise UsageError(f"missing argument: {spec.words} {spec.arg}", candidates=(spec,))
    arg = " ".join(rest)
    if kind is _Arg.ID:
        if not arg.isascii() or not arg.isdigit() or int(arg) == 0 or int(arg) >= _MAX_INT:
            raise UsageError(f"invalid ID: {arg}", candidates=(spec,))
        return Request(spec.command, int(arg))
    if kind is _Arg.IP:
        try:
            return Request(spec.command, str(ipaddress.ip_address(arg)))
        except ValueError:
            raise UsageError(f"Cannot parse IP: {arg}") from None
    return Request(spec.command, arg)


def parse_command(words: list[str]) -> Request:
    """Parse occtl command words (``["show", "user", "alice"]``) into a :class:`Request`.

    Command words match whole and case-insensitively; the longest matching command wins, and the
    remaining words form the argument.

    :raises UsageError: no command matches, or its argument is missing or invalid.
    """
    tokens = [w for word in words for w in word.split()]
    lowered = [t.lower() for t in tokens]
    best: CommandSpec | None = None
    for spec in COMMAND_TABLE:
        cmd_words = spec.words.split()
        if lowered[: len(cmd_words)] == cmd_words and (
            best is None or len(cmd_words) > len(best.words.split())
        ):
            best = spec
    line = " ".join(tokens)
    if best is None:
        candidates = tuple(s for s in COMMAND_TABLE if lowered and s.words.startswith(lowered[0]))
        raise UsageError(f"unknown command: {line}", candidates=candidates)
    return _check_arg(best, tokens[len(best.words.split()) :], line)


# --------------------------------------------------------------------------------------------
# Snapshot <-> JSON


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -_MAX_INT <= v < _MAX_INT


def _is_float(v: object) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)  # type: ignore[arg-type]


def _conv_str_tuple(v: object) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise BadControlMessage("expected an array of strings")
    return tuple(v)


def _conv_counts(v: object) -> tuple[tuple[str, int], ...]:
    """``[["spoofed-source", 3], …]`` (``UserInfo.dropped``)."""
    if not isinstance(v, list) or not all(
        isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and _is_int(x[1]) for x in v
    ):
        raise BadControlMessage("expected an array of [name, integer] pairs")
    return tuple((x[0], x[1]) for x in v)


def _checker(pred: Callable[[object], bool], what: str) -> Callable[[object], object]:
    def conv(v: object) -> object:
        if not pred(v):
            raise BadControlMessage(f"expected {what}")
        return float(v) if what == "a number" else v  # type: ignore[arg-type]

    return conv


def _optional(conv: Callable[[object], object]) -> Callable[[object], object]:
    return lambda v: None if v is None else conv(v)


_CONVERTERS: Final[dict[str, Callable[[object], object]]] = {
    "int": _checker(_is_int, "an integer"),
    "float": _checker(_is_float, "a number"),
    "str": _checker(lambda v: isinstance(v, str), "a string"),
    "bool": _checker(lambda v: isinstance(v, bool), "a boolean"),
    "int | None": _optional(_checker(_is_int, "an integer")),
    "float | None": _optional(_checker(_is_float, "a number")),
    "tuple[str, ...]": _conv_str_tuple,
    "tuple[tuple[str, int], ...]": _conv_counts,
}

_Snap = TypeVar("_Snap", UserInfo, StatusInfo, SessionInfo, BanInfo)


def _snapshot_to_json(obj: UserInfo | StatusInfo | SessionInfo | BanInfo) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _snapshot_from_json(cls: type[_Snap], obj: object) -> _Snap:
    if not isinstance(obj, dict):
        raise BadControlMessage(f"{cls.__name__}: expected an object")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in obj:
            if f.default is MISSING and f.default_factory is MISSING:
                raise BadControlMessage(f"{cls.__name__}: missing {f.name!r}")
            continue
        try:
            kwargs[f.name] = _CONVERTERS[str(f.type)](obj[f.name])
        except BadControlMessage as exc:
            raise BadControlMessage(f"{cls.__name__}.{f.name}: {exc}") from None
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# Lines


def _dump(obj: Mapping[str, object]) -> bytes:
    line = json.dumps({"v": PROTOCOL_VERSION, **obj}, separators=(",", ":")).encode() + b"\n"
    if len(line) > MAX_LINE_BYTES:
        raise LocalProtocolError(f"control message of {len(line)} bytes exceeds the line limit")
    return line


def _load_untrusted(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE_BYTES:
        raise BadControlMessage(f"control line of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadControlMessage(f"control line is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadControlMessage("control line is not a JSON object")
    version = obj.get("v")
    if not _is_int(version) or version != PROTOCOL_VERSION:
        raise BadControlMessage(f"unsupported control protocol version {version!r}")
    return obj


def encode_request(req: Request) -> bytes:
    """Encode a request as one newline-terminated JSON line."""
    obj: dict[str, object] = {"cmd": req.cmd.value}
    if req.arg is not None:
        obj["arg"] = req.arg
    return _dump(obj)


def parse_request_untrusted(line: bytes) -> Request:
    """Decode one request line from a control client.

    :raises BadControlMessage: malformed JSON, wrong version, unknown command or bad argument.
    """
    obj = _load_untrusted(line)
    raw_cmd = obj.get("cmd")
    if not isinstance(raw_cmd, str) or raw_cmd not in _COMMANDS:
        raise BadControlMessage(f"unknown control command {raw_cmd!r}")
    cmd = Command(raw_cmd)
    arg = obj.get("arg")
    kind = _ARG_OF[cmd]
    if kind is _Arg.NONE:
        ok = arg is None
    elif kind is _Arg.SECONDS:
        ok = arg is None or (_is_int(arg) and 0 <= arg <= MAX_DRAIN_SECONDS)
    elif kind is _Arg.ID:
        ok = isinstance(arg, int) and _is_int(arg) and arg > 0
    elif kind is _Arg.FIXED:
        ok = arg in ("all", "valid")
    else:
        ok = isinstance(arg, str) and arg != ""
    if not ok:
        raise BadControlMessage(f"{cmd.value}: bad argument {arg!r}")
    return Request(cmd, arg)


_RESPONSE_ENCODERS: Final[dict[type, Callable[[Any], dict[str, object]]]] = {
    StatusResponse: lambda r: {"type": "status", "status": _snapshot_to_json(r.status)},
    UsersResponse: lambda r: {"type": "users", "users": [_snapshot_to_json(u) for u in r.users]},
    SessionsResponse: lambda r: {
        "type": "sessions",
        "sessions": [_snapshot_to_json(s) for s in r.sessions],
    },
    BansResponse: lambda r: {"type": "bans", "bans": [_snapshot_to_json(b) for b in r.bans]},
    OkResponse: lambda r: {"type": "ok"},
    ErrorResponse: lambda r: {"type": "error", "message": r.message},
}


def encode_response(resp: Response) -> bytes:
    """Encode a response as one newline-terminated JSON line."""
    return _dump(_RESPONSE_ENCODERS[type(resp)](resp))


def _list_of(obj: dict[str, Any], key: str, cls: type[_Snap]) -> tuple[_Snap, ...]:
    items = obj.get(key)
    if not isinstance(items, list):
        raise BadControlMessage(f"{key!r} must be an array")
    return tuple(_snapshot_from_json(cls, item) for item in items)


def _decode_error(obj: dict[str, Any]) -> ErrorResponse:
    message = obj.get("message")
    if not isinstance(message, str):
        raise BadControlMessage("error response without a message")
    return ErrorResponse(message)


_RESPONSE_DECODERS: Final[dict[str, Callable[[dict[str, Any]], Response]]] = {
    "status": lambda o: StatusResponse(_snapshot_from_json(StatusInfo, o.get("status"))),
    "users": lambda o: UsersResponse(_list_of(o, "users", UserInfo)),
    "sessions": lambda o: SessionsResponse(_list_of(o, "sessions", SessionInfo)),
    "bans": lambda o: BansResponse(_list_of(o, "bans", BanInfo)),
    "ok": lambda o: OkResponse(),
    "error": _decode_error,
}


def parse_response_untrusted(line: bytes) -> Response:
    """Decode one response line from the daemon.

    :raises BadControlMessage: malformed JSON, wrong version, unknown type or bad fields.
    """
    obj = _load_untrusted(line)
    kind = obj.get("type")
    decoder = _RESPONSE_DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise BadControlMessage(f"unknown control response type {kind!r}")
    return decoder(obj)


def encode_event(event: Event) -> bytes:
    """Encode a ``show events`` update as one newline-terminated JSON line."""
    if event.kind not in _EVENT_KINDS:
        raise LocalProtocolError(f"unknown event kind {event.kind!r}")
    return _dump(
        {"event": event.kind, "user": _snapshot_to_json(event.user), "reason": event.reason}
    )


def parse_event_untrusted(line: bytes) -> Event:
    """Decode one ``show events`` update line.

    :raises BadControlMessage: malformed JSON, wrong version, unknown kind or bad user fields.
    """
    obj = _load_untrusted(line)
    kind = obj.get("event")
    if not isinstance(kind, str) or kind not in _EVENT_KINDS:
        raise BadControlMessage(f"unknown event kind {kind!r}")
    reason = obj.get("reason", "")
    if not isinstance(reason, str):
        raise BadControlMessage("event reason must be a string")
    return Event(kind, _snapshot_from_json(UserInfo, obj.get("user")), reason)
