"""The occtl-compatible control plane: snapshots, the control-socket protocol, occtl's output
formats, a socket client and the ``ocgate ctl`` command.

The daemon owns the socket: it parses each line with :func:`parse_request_untrusted`, answers
with ``encode_response(dispatch(request, backend))`` and, for ``show events``, keeps writing
:func:`encode_event` lines. Everything here except :class:`ControlClient` and :func:`main` is pure.
"""

from __future__ import annotations

from ocgate.control._model import BanInfo, SessionInfo, StatusInfo, UserInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocgate.control._cli import main
    from ocgate.control._client import DEFAULT_SOCKET, DEFAULT_TIMEOUT, ControlClient
    from ocgate.control._dispatch import ControlBackend, dispatch, match_session
    from ocgate.control._format_json import (
        format_ban_points_json,
        format_bans_json,
        format_event_json,
        format_iroutes_json,
        format_session_json,
        format_sessions_json,
        format_status_json,
        format_status_offline_json,
        format_user_json,
        format_users_json,
    )
    from ocgate.control._format_text import (
        fix_ciphersuite,
        format_ban_points,
        format_bans,
        format_event,
        format_iroutes,
        format_session,
        format_sessions,
        format_status,
        format_status_offline,
        format_user,
        format_users,
    )
    from ocgate.control._protocol import (
        COMMAND_TABLE,
        MAX_LINE_BYTES,
        PROTOCOL_VERSION,
        BansResponse,
        Command,
        CommandSpec,
        ErrorResponse,
        Event,
        OkResponse,
        Request,
        Response,
        SessionsResponse,
        StatusResponse,
        UsageError,
        UsersResponse,
        encode_event,
        encode_request,
        encode_response,
        parse_command,
        parse_event_untrusted,
        parse_request_untrusted,
        parse_response_untrusted,
    )
    from ocgate.control._units import format_bytes, format_date, format_interval

__all__ = [
    "COMMAND_TABLE",
    "DEFAULT_SOCKET",
    "DEFAULT_TIMEOUT",
    "MAX_LINE_BYTES",
    "PROTOCOL_VERSION",
    "BanInfo",
    "BansResponse",
    "Command",
    "CommandSpec",
    "ControlBackend",
    "ControlClient",
    "ErrorResponse",
    "Event",
    "OkResponse",
    "Request",
    "Response",
    "SessionInfo",
    "SessionsResponse",
    "StatusInfo",
    "StatusResponse",
    "UsageError",
    "UserInfo",
    "UsersResponse",
    "dispatch",
    "encode_event",
    "encode_request",
    "encode_response",
    "fix_ciphersuite",
    "format_ban_points",
    "format_ban_points_json",
    "format_bans",
    "format_bans_json",
    "format_bytes",
    "format_date",
    "format_event",
    "format_event_json",
    "format_interval",
    "format_iroutes",
    "format_iroutes_json",
    "format_session",
    "format_session_json",
    "format_sessions",
    "format_sessions_json",
    "format_status",
    "format_status_json",
    "format_status_offline",
    "format_status_offline_json",
    "format_user",
    "format_user_json",
    "format_users",
    "format_users_json",
    "main",
    "match_session",
    "parse_command",
    "parse_event_untrusted",
    "parse_request_untrusted",
    "parse_response_untrusted",
]

_LAZY = {
    "main": "_cli",
    "DEFAULT_SOCKET": "_client",
    "DEFAULT_TIMEOUT": "_client",
    "ControlClient": "_client",
    "ControlBackend": "_dispatch",
    "dispatch": "_dispatch",
    "match_session": "_dispatch",
    "format_ban_points_json": "_format_json",
    "format_bans_json": "_format_json",
    "format_event_json": "_format_json",
    "format_iroutes_json": "_format_json",
    "format_session_json": "_format_json",
    "format_sessions_json": "_format_json",
    "format_status_json": "_format_json",
    "format_status_offline_json": "_format_json",
    "format_user_json": "_format_json",
    "format_users_json": "_format_json",
    "fix_ciphersuite": "_format_text",
    "format_ban_points": "_format_text",
    "format_bans": "_format_text",
    "format_event": "_format_text",
    "format_iroutes": "_format_text",
    "format_session": "_format_text",
    "format_sessions": "_format_text",
    "format_status": "_format_text",
    "format_status_offline": "_format_text",
    "format_user": "_format_text",
    "format_users": "_format_text",
    "COMMAND_TABLE": "_protocol",
    "MAX_LINE_BYTES": "_protocol",
    "PROTOCOL_VERSION": "_protocol",
    "BansResponse": "_protocol",
    "Command": "_protocol",
    "CommandSpec": "_protocol",
    "ErrorResponse": "_protocol",
    "Event": "_protocol",
    "OkResponse": "_protocol",
    "Request": "_protocol",
    "Response": "_protocol",
    "SessionsResponse": "_protocol",
    "StatusResponse": "_protocol",
    "UsageError": "_protocol",
    "UsersResponse": "_protocol",
    "encode_event": "_protocol",
    "encode_request": "_protocol",
    "encode_response": "_protocol",
    "parse_command": "_protocol",
    "parse_event_untrusted": "_protocol",
    "parse_request_untrusted": "_protocol",
    "parse_response_untrusted": "_protocol",
    "format_bytes": "_units",
    "format_date": "_units",
    "format_interval": "_units",
}
"""Loaded on first use (PEP 562): the daemon's children need only the snapshot types, not the
protocol, the output formats or the ``ocgate ctl`` command."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
