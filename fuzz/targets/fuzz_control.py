"""The control-socket protocol (occtl): request, response and event lines (only
``BadControlMessage``), and what ``ocgate ctl`` prints from a parsed response.

Input: a selector byte (modulo 3: a request, response or event line; bit 2: also format the
result as occtl text and JSON), then the line.

Oracle: whatever parses re-encodes to a line that parses back to the same value; occtl's text
and JSON formats of a parsed response or event raise nothing, and the JSON is strict JSON.
"""

from __future__ import annotations

import json
from datetime import UTC

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.control import (
        BansResponse,
        ErrorResponse,
        Event,
        OkResponse,
        SessionsResponse,
        StatusResponse,
        UsersResponse,
        encode_event,
        encode_request,
        encode_response,
        format_ban_points,
        format_ban_points_json,
        format_bans,
        format_bans_json,
        format_event,
        format_event_json,
        format_iroutes,
        format_iroutes_json,
        format_session,
        format_session_json,
        format_sessions,
        format_sessions_json,
        format_status,
        format_status_json,
        format_user,
        format_user_json,
        format_users,
        format_users_json,
        parse_event_untrusted,
        parse_request_untrusted,
        parse_response_untrusted,
    )
    from ocgate.errors import BadControlMessage

NOW = 1_700_000_000.0


def _strict(text: str) -> None:
    def refuse(name: str) -> object:
        raise AssertionError(f"occtl JSON output holds {name}")

    json.loads(text, parse_constant=refuse)


def _format(response: object) -> None:
    if isinstance(response, StatusResponse):
        format_status(response.status, now=NOW, tz=UTC, debug=True)
        _strict(format_status_json(response.status, now=NOW, tz=UTC, debug=True))
    elif isinstance(response, UsersResponse):
        users = response.users
        for text in (format_users(users, now=NOW, tz=UTC), format_user(users, now=NOW, tz=UTC)):
            assert isinstance(text, str)
        format_iroutes(users)
        _strict(format_users_json(users, now=NOW, tz=UTC))
        _strict(format_user_json(users, now=NOW, tz=UTC))
        _strict(format_iroutes_json(users))
    elif isinstance(response, SessionsResponse):
        format_sessions(response.sessions, now=NOW, tz=UTC)
        format_session(response.sessions, tz=UTC)
        _strict(format_sessions_json(response.sessions, tz=UTC))
        _strict(format_session_json(response.sessions, tz=UTC))
    elif isinstance(response, BansResponse):
        format_bans(response.bans, now=NOW, tz=UTC)
        format_ban_points(response.bans)
        _strict(format_bans_json(response.bans, now=NOW, tz=UTC))
        _strict(format_ban_points_json(response.bans))
    elif isinstance(response, Event):
        format_event(response, now=NOW)
        _strict(format_event_json(response, now=NOW, tz=UTC))
    else:
        assert isinstance(response, OkResponse | ErrorResponse)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    kind, line = data[0] % 3, data[1:]
    try:
        if kind == 0:
            request = parse_request_untrusted(line)
            assert parse_request_untrusted(encode_request(request)) == request
            return
        if kind == 1:
            parsed: object = parse_response_untrusted(line)
            assert parse_response_untrusted(encode_response(parsed)) == parsed  # type: ignore[arg-type]
        else:
            parsed = parse_event_untrusted(line)
            assert parse_event_untrusted(encode_event(parsed)) == parsed  # type: ignore[arg-type]
    except BadControlMessage:
        return
    if data[0] & 4:
        _format(parsed)


def seeds() -> list[bytes]:
    """Lines ``ocgate ctl`` and the daemon exchange, made from the control tests' snapshots."""
    from tests.unit.control.conftest import (
        make_bans,
        make_minimal_user,
        make_sessions,
        make_status,
        make_user,
    )

    from ocgate.control import Command, Request

    out = []
    for command in Command:
        arg = {"disconnect_id": 7, "show_id": 7, "terminate_id": 7, "show_ip_bans": None}.get(
            command.value,
            "alice" if "user" in command.value or "session" in command.value else None,
        )
        try:
            line = encode_request(Request(command, arg))
            parse_request_untrusted(line)
        except BadControlMessage:
            line = encode_request(Request(command, None))
        out.append(b"\x00" + line)
    users = UsersResponse((make_user(), make_minimal_user()))
    out.append(b"\x04" + encode_response(users))
    out.append(b"\x04" + encode_response(StatusResponse(make_status())))
    out.append(b"\x04" + encode_response(SessionsResponse(make_sessions())))
    out.append(b"\x04" + encode_response(BansResponse(make_bans())))
    out.append(b"\x04" + encode_response(ErrorResponse("no such user")))
    out.append(b"\x05" + encode_event(Event("connect", make_user(), "")))
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
