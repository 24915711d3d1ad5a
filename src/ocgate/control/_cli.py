"""``ocgate ctl``: occtl's command line over ocgate's control socket.

Follows ocserv ``src/occtl/occtl.c`` (options before the command, the command as the remaining
words) and prints exactly occtl's text or ``--json`` output. Differences: there is no interactive
prompt and no pager (``-n`` is accepted and changes nothing), and every failure exits with 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Final, TextIO, TypeVar

from ocgate._version import __version__
from ocgate.control import _format_json as fj
from ocgate.control import _format_text as ft
from ocgate.control._client import DEFAULT_SOCKET, DEFAULT_TIMEOUT, ControlClient
from ocgate.control._protocol import (
    COMMAND_TABLE,
    BansResponse,
    Command,
    ErrorResponse,
    Event,
    OkResponse,
    Request,
    Response,
    SessionsResponse,
    StatusResponse,
    UsageError,
    UsersResponse,
    parse_command,
)
from ocgate.errors import BadControlMessage

__all__ = ["main"]

PROG: Final = "ocgate ctl"
#: occtl's ``ERR_SERVER_UNREACHABLE``.
ERR_SERVER_UNREACHABLE: Final = (
    "could not send message; possibly insufficient permissions or server is offline.\n"
)


def _command_lines() -> str:
    lines = []
    for spec in COMMAND_TABLE:
        words = f"{spec.words} {spec.arg}" if spec.arg.startswith("[") else spec.words
        lines.append(f"  {words:<28}{spec.doc}")
    return "\n".join(lines)


_HELP: Final = f"""\
usage: {PROG} [OPTIONS] COMMAND...

Control a running ocgate (or query it the way occtl queries ocserv) over its control socket.
Output matches occtl's, text or JSON. There is no interactive prompt: give the command as
arguments. Options go before the command.

options:
  -s, --socket-file FILE  the server's control socket (default {DEFAULT_SOCKET};
                          the occtl-socket-file of the configuration)
  -j, --json              print JSON instead of text
  -n, --no-pager          accepted for occtl compatibility (output is never paged)
      --debug             show debugging counters and server error details
  -h, --help              show this help
  -v, --version           show the version

commands:
{_command_lines()}

exit status: 0 on success, 1 on any error (server unreachable, nothing found, action refused).
"""


@dataclass(slots=True)
class _Options:
    socket: str = DEFAULT_SOCKET
    json: bool = False
    debug: bool = False


@dataclass(slots=True)
class _Ctx:
    out: TextIO
    err: TextIO
    client: ControlClient
    opts: _Options
    now: Callable[[], float]
    tz: tzinfo | None


def _parse_options(args: list[str], out: TextIO, err: TextIO) -> tuple[_Options, list[str]] | int:
    opts = _Options()
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        arg = args[i]
        if arg in ("-j", "--json"):
            opts.json = True
        elif arg in ("-n", "--no-pager"):
            pass
        elif arg == "--debug":
            opts.debug = True
        elif arg in ("-h", "--help"):
            out.write(_HELP)
            return 0
        elif arg in ("-v", "--version"):
            out.write(f"{PROG} (ocgate) {__version__}\n")
            return 0
        elif arg in ("-s", "--socket-file") and i + 1 < len(args):
            i += 1
            opts.socket = args[i]
        elif arg.startswith("--socket-file="):
            opts.socket = arg.split("=", 1)[1]
        else:
            err.write(f"{PROG}: unknown or incomplete option {arg!r}\n\n{_HELP}")
            return 1
        i += 1
    return opts, args[i:]


_R = TypeVar("_R", StatusResponse, UsersResponse, SessionsResponse, BansResponse)


def _fetch(ctx: _Ctx, req: Request, kind: type[_R]) -> _R | None:
    """Ask the server; on any failure print occtl's error to stderr and return ``None``."""
    try:
        resp = ctx.client.request(req)
    except OSError as exc:
        ctx.err.write(f"error connecting to ocgate socket '{ctx.client.path}': {exc}\n")
        return None
    except BadControlMessage as exc:
        ctx.err.write(ERR_SERVER_UNREACHABLE)
        if ctx.opts.debug:
            ctx.err.write(f"{exc}\n")
        return None
    if isinstance(resp, kind):
        return resp
    detail = (
        resp.message if isinstance(resp, ErrorResponse) else f"unexpected {type(resp).__name__}"
    )
    ctx.err.write(f"{PROG}: {detail}\n")
    return None


def _show_status(ctx: _Ctx, req: Request) -> int:
    if (resp := _fetch(ctx, req, StatusResponse)) is None:
        ctx.out.write(
            fj.format_status_offline_json() if ctx.opts.json else ft.format_status_offline()
        )
        return 1
    fmt = fj.format_status_json if ctx.opts.json else ft.format_status
    ctx.out.write(fmt(resp.status, now=ctx.now(), tz=ctx.tz, debug=ctx.opts.debug))
    return 0


def _show_users(ctx: _Ctx, req: Request) -> int:
    if (resp := _fetch(ctx, req, UsersResponse)) is None:
        return 1
    fmt = fj.format_users_json if ctx.opts.json else ft.format_users
    ctx.out.write(fmt(resp.users, now=ctx.now(), tz=ctx.tz))
    return 0


def _show_user(ctx: _Ctx, req: Request) -> int:
    if (resp := _fetch(ctx, req, UsersResponse)) is None:
        return 1
    fmt = fj.format_user_json if ctx.opts.json else ft.format_user
    ctx.out.write(fmt(resp.users, now=ctx.now(), tz=ctx.tz))
    return 0 if resp.users else 1


def _show_sessions(ctx: _Ctx, req: Request) -> int:
    if (resp := _fetch(ctx, req, SessionsResponse)) is None:
        return 1
    valid_only = req.arg == "valid"
    if ctx.opts.json:
        ctx.out.write(fj.format_sessions_json(resp.sessions, tz=ctx.tz, valid_only=valid_only))
    else:
        text = ft.format_sessions(resp.sessions, now=ctx.now(), tz=ctx.tz, valid_only=valid_only)
        ctx.out.write(text)
    return 0


def _show_session(ctx: _Ctx, req: Request) -> int:
    if (resp := _fetch(ctx, req, SessionsResponse)) is None:
        return 1
    fmt = fj.format_session_json if ctx.opts.json else ft.format_session
    ctx.out.write(fmt(resp.sessions, tz=ctx.tz))
    return 0 if resp.sessions else 1


def _show_bans(ctx: _Ctx, req: Request) -> int:
    if (resp := _fetch(ctx, req, BansResponse)) is None:
        return 1
    fmt = fj.format_bans_json if ctx.opts.json else ft.format_bans
    ctx.out.write(fmt(resp.bans, now=ctx.now(), tz=ctx.tz))
    return 0


def _show_ban_points(ctx: _Ctx, req: Request) -> int:
    if (resp := _fetch(ctx, req, BansResponse)) is None:
        return 1
    fmt = fj.format_ban_points_json if ctx.opts.json else ft.format_ban_points
    ctx.out.write(fmt(resp.bans))
    return 0


def _show_iroutes(ctx: _Ctx, req: Request) -> int:
    if (resp := _fetch(ctx, req, UsersResponse)) is None:
        return 1
    fmt = fj.format_iroutes_json if ctx.opts.json else ft.format_iroutes
    ctx.out.write(fmt(resp.users))
    return 0


def _print_stream_item(ctx: _Ctx, item: Response | Event, first: bool) -> None:
    if isinstance(item, Event):
        fmt = fj.format_event_json if ctx.opts.json else ft.format_event
        ctx.out.write(fmt(item, now=ctx.now()))
    elif not first or not isinstance(item, UsersResponse):
        raise BadControlMessage(f"unexpected {type(item).__name__} in the event stream")
    elif ctx.opts.json:
        ctx.out.write(fj.format_users_json(item.users, now=ctx.now(), tz=ctx.tz))
    else:
        ctx.out.write(ft.format_users(item.users, now=ctx.now(), tz=ctx.tz))
        ctx.out.write("\nPress CTRL+C to quit\n\n")
    ctx.out.flush()


def _show_events(ctx: _Ctx, req: Request) -> int:
    first = True
    try:
        for item in ctx.client.stream(req):
            _print_stream_item(ctx, item, first)
            first = False
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        ctx.err.write(f"error connecting to ocgate socket '{ctx.client.path}': {exc}\n")
        return 1
    except BadControlMessage as exc:
        ctx.err.write(f"events: {exc}\n")
        return 1
    ctx.err.write("events: server closed the connection\n")
    return 0


#: occtl's replies to actions: (done, refused), ``{}`` standing for the argument.
_ACTION_TEXT: Final[dict[Command, tuple[str, str]]] = {
    Command.DISCONNECT_USER: ("user '{}' was disconnected", "could not disconnect user '{}'"),
    Command.DISCONNECT_ID: ("connection ID '{}' was disconnected", "could not disconnect ID '{}'"),
    Command.TERMINATE_USER: ("user '{}' was terminated", "could not terminate user '{}'"),
    Command.TERMINATE_ID: ("connection ID '{}' was terminated", "could not terminate ID '{}'"),
    Command.TERMINATE_SESSION: ("session '{}' was terminated", "could not terminate session '{}'"),
    Command.UNBAN_IP: ("IP '{}' was unbanned", "could not unban IP '{}'"),
    Command.RELOAD: ("Server scheduled to reload", "Error scheduling reload"),
    Command.STOP: ("Server scheduled to stop", "Error scheduling server stop"),
    Command.DRAIN: (
        "Server draining: new logins refused; tunnels close and it stops when the grace ends",
        "Error scheduling server drain",
    ),
}


def _action(ctx: _Ctx, req: Request) -> int:
    done, refused = _ACTION_TEXT[req.cmd]
    arg = "" if req.arg is None else str(req.arg)
    try:
        resp = ctx.client.request(req)
    except OSError as exc:
        ctx.err.write(f"error connecting to ocgate socket '{ctx.client.path}': {exc}\n")
        return 1
    except BadControlMessage:
        ctx.err.write(ERR_SERVER_UNREACHABLE)
        return 1
    if isinstance(resp, OkResponse):
        ctx.out.write(done.format(arg) + "\n")
        return 0
    ctx.out.write(refused.format(arg) + "\n")
    if ctx.opts.debug and isinstance(resp, ErrorResponse):
        ctx.err.write(f"{resp.message}\n")
    return 1


_RUNNERS: Final[dict[Command, Callable[[_Ctx, Request], int]]] = {
    Command.SHOW_STATUS: _show_status,
    Command.SHOW_USERS: _show_users,
    Command.SHOW_USER: _show_user,
    Command.SHOW_ID: _show_user,
    Command.SHOW_SESSIONS: _show_sessions,
    Command.SHOW_SESSION: _show_session,
    Command.SHOW_IP_BANS: _show_bans,
    Command.SHOW_IP_BAN_POINTS: _show_ban_points,
    Command.SHOW_IROUTES: _show_iroutes,
    Command.SHOW_EVENTS: _show_events,
    **{cmd: _action for cmd in _ACTION_TEXT},
}


def _usage_error(exc: UsageError, err: TextIO) -> int:
    err.write(f"{exc}\n")
    for spec in exc.candidates:
        arg = f" {spec.arg}" if spec.arg.startswith("[") else ""
        err.write(f" {spec.words}{arg}\t{spec.doc}\n")
    err.write(f"use '{PROG} --help' to get a list of the available commands\n")
    return 1


def _wall_clock() -> float:
    return datetime.now(UTC).timestamp()


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    now: Callable[[], float] | None = None,
    tz: tzinfo | None = None,
) -> int:
    """Run ``ocgate ctl``; returns the exit status.

    :param now: clock for intervals (tests inject one); defaults to the wall clock.
    :param tz: zone for dates; ``None`` is the local zone, as occtl.
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    parsed = _parse_options(list(sys.argv[1:] if argv is None else argv), out, err)
    if isinstance(parsed, int):
        return parsed
    opts, words = parsed
    if not words:
        err.write(f"{PROG}: no command given (there is no interactive mode)\n\n{_HELP}")
        return 1
    try:
        req = parse_command(words)
    except UsageError as exc:
        return _usage_error(exc, err)
    ctx = _Ctx(out, err, ControlClient(opts.socket, DEFAULT_TIMEOUT), opts, now or _wall_clock, tz)
    return _RUNNERS[req.cmd](ctx, req)
