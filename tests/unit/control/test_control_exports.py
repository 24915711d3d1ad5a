"""The public surface of ``ocgate.control`` (STYLE rule 10)."""

from __future__ import annotations

import ocgate.control


def test_public_api() -> None:
    expected = {
        "BanInfo", "SessionInfo", "StatusInfo", "UserInfo",
        "Command", "CommandSpec", "COMMAND_TABLE", "Request", "Response", "StatusResponse",
        "UsersResponse", "SessionsResponse", "BansResponse", "OkResponse", "ErrorResponse", "Event",
        "UsageError", "MAX_LINE_BYTES", "PROTOCOL_VERSION",
        "parse_command", "encode_request", "encode_response", "encode_event",
        "parse_request_untrusted", "parse_response_untrusted", "parse_event_untrusted",
        "ControlBackend", "dispatch", "match_session",
        "format_users", "format_user", "format_status", "format_status_offline",
        "format_sessions", "format_session", "format_bans", "format_ban_points",
        "format_iroutes", "format_event", "fix_ciphersuite",
        "format_users_json", "format_user_json", "format_status_json",
        "format_status_offline_json", "format_sessions_json", "format_session_json",
        "format_bans_json", "format_ban_points_json", "format_iroutes_json", "format_event_json",
        "format_bytes", "format_date", "format_interval",
        "ControlClient", "DEFAULT_SOCKET", "DEFAULT_TIMEOUT", "main",
    }  # fmt: skip
    assert set(ocgate.control.__all__) == expected
    for name in expected:
        assert hasattr(ocgate.control, name)
