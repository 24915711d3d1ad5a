"""The occtl-compatible control plane: snapshots, the control-socket protocol, occtl's output
formats, a socket client and the ``ocgate ctl`` command.

The daemon owns the socket: it parses each line with :func:`parse_request_untrusted`, answers
with ``encode_response(dispatch(request, backend))`` and, for ``show events``, keeps writing
:func:`encode_event` lines. Everything here except :class:`ControlClient` and :func:`main` is pure.
"""

from __future__ import annotations

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
from ocgate.control._model import BanInfo, SessionInfo, StatusInfo, UserInfo
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
