"""occtl's command grammar and the JSON-lines codec: round trips and hostile input."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.control import (
    COMMAND_TABLE,
    MAX_LINE_BYTES,
    BanInfo,
    BansResponse,
    Command,
    ErrorResponse,
    Event,
    OkResponse,
    Request,
    Response,
    SessionInfo,
    SessionsResponse,
    StatusInfo,
    StatusResponse,
    UsageError,
    UserInfo,
    UsersResponse,
    encode_event,
    encode_request,
    encode_response,
    parse_command,
    parse_event_untrusted,
    parse_request_untrusted,
    parse_response_untrusted,
)
from ocgate.errors import BadControlMessage, LocalProtocolError


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["show", "status"], Request(Command.SHOW_STATUS)),
        (["show", "users"], Request(Command.SHOW_USERS)),
        (["SHOW", "Users"], Request(Command.SHOW_USERS)),
        (["show users"], Request(Command.SHOW_USERS)),
        (["show", "user", "alice"], Request(Command.SHOW_USER, "alice")),
        (["show", "user", "John", "Smith"], Request(Command.SHOW_USER, "John Smith")),
        (["show", "id", "42"], Request(Command.SHOW_ID, 42)),
        (["show", "sessions", "all"], Request(Command.SHOW_SESSIONS, "all")),
        (["show", "sessions", "valid"], Request(Command.SHOW_SESSIONS, "valid")),
        (["show", "cookies", "all"], Request(Command.SHOW_SESSIONS, "all")),
        (["show", "cookies", "valid"], Request(Command.SHOW_SESSIONS, "valid")),
        (["show", "session", "AbCdEf"], Request(Command.SHOW_SESSION, "AbCdEf")),
        (["show", "ip", "bans"], Request(Command.SHOW_IP_BANS)),
        (["show", "ip", "ban", "points"], Request(Command.SHOW_IP_BAN_POINTS)),
        (["show", "iroutes"], Request(Command.SHOW_IROUTES)),
        (["show", "events"], Request(Command.SHOW_EVENTS)),
        (["disconnect", "user", "bob"], Request(Command.DISCONNECT_USER, "bob")),
        (["disconnect", "id", "7"], Request(Command.DISCONNECT_ID, 7)),
        (["terminate", "user", "bob"], Request(Command.TERMINATE_USER, "bob")),
        (["terminate", "id", "7"], Request(Command.TERMINATE_ID, 7)),
        (["terminate", "session", "AbCdEf"], Request(Command.TERMINATE_SESSION, "AbCdEf")),
        (["unban", "ip", "192.0.2.1"], Request(Command.UNBAN_IP, "192.0.2.1")),
        (["unban", "ip", "2001:DB8:0::1"], Request(Command.UNBAN_IP, "2001:db8::1")),
        (["reload"], Request(Command.RELOAD)),
        (["stop", "now"], Request(Command.STOP)),
    ],
)
def test_parse_command(words: list[str], expected: Request) -> None:
    assert parse_command(words) == expected


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["show"],
        ["show", "sessions"],
        ["show", "user"],
        ["show", "user", "?"],
        ["show", "id", "0"],
        ["show", "id", "x1"],
        ["show", "id", "٣"],
        ["show", "users", "extra"],
        ["sh", "users"],  # occtl matches whole words only
        ["stop"],  # occtl would stop on a bare "stop"; ocgate wants "stop now"
        ["unban", "ip", "999.1.1.1"],
        ["frobnicate"],
    ],
)
def test_parse_command_rejects(words: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_command(words)


def test_usage_error_candidates() -> None:
    with pytest.raises(UsageError) as info:
        parse_command(["show", "user"])
    assert [c.words for c in info.value.candidates] == ["show user"]
    with pytest.raises(UsageError) as info:
        parse_command(["show", "nothing"])
    assert "show status" in [c.words for c in info.value.candidates]
    assert isinstance(info.value, LocalProtocolError)


def test_every_command_is_reachable() -> None:
    assert {spec.command for spec in COMMAND_TABLE} == set(Command)


def _requests() -> list[Request]:
    out = []
    for spec in COMMAND_TABLE:
        arg = {"[NAME]": "al ice", "[ID]": "12", "[IP]": "192.0.2.1", "[SID]": "AbCd"}.get(spec.arg)
        out.append(parse_command([*spec.words.split(), *([arg] if arg else [])]))
    return out


@pytest.mark.parametrize("req", _requests())
def test_request_round_trip(req: Request) -> None:
    line = encode_request(req)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line)["v"] == 1
    assert parse_request_untrusted(line) == req


def _responses(user: UserInfo, minimal_user: UserInfo) -> list[Response]:
    status = StatusInfo(server_pid=1, sec_mod_pid=2, up_since=3.5, median_latency_us=7)
    session = SessionInfo(session_id="abcdefgh", last_modified=4.0, in_use=True)
    return [
        StatusResponse(status),
        UsersResponse((user, minimal_user)),
        UsersResponse(()),
        SessionsResponse((session,)),
        BansResponse((BanInfo(ip="192.0.2.1", score=3), BanInfo(ip="::1", score=1, expires=9.0))),
        OkResponse(),
        ErrorResponse("no such user"),
    ]


def test_response_round_trips(user: UserInfo, minimal_user: UserInfo) -> None:
    for resp in _responses(user, minimal_user):
        assert parse_response_untrusted(encode_response(resp)) == resp


def test_event_round_trip(user: UserInfo) -> None:
    for event in (Event("connect", user), Event("disconnect", user, "idle")):
        assert parse_event_untrusted(encode_event(event)) == event
    with pytest.raises(LocalProtocolError):
        encode_event(Event("explode", user))


def test_decoding_fills_defaults_and_ignores_unknown_keys() -> None:
    line = b'{"v":1,"type":"users","users":[{"id":3,"new_field":1,"mtu":null}]}\n'
    assert parse_response_untrusted(line) == UsersResponse((UserInfo(id=3),))
    line = b'{"v":1,"type":"status","status":{"server_pid":1,"sec_mod_pid":1,"up_since":5}}'
    resp = parse_response_untrusted(line)
    assert isinstance(resp, StatusResponse)
    assert resp.status.up_since == 5.0


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\xff\n",
        b"[1]\n",
        b'{"cmd":"show_status"}\n',
        b'{"v":2,"cmd":"show_status"}\n',
        b'{"v":true,"cmd":"show_status"}\n',
        b'{"v":1,"cmd":"show_everything"}\n',
        b'{"v":1,"cmd":["show_status"]}\n',
        b'{"v":1,"cmd":"show_status","arg":"x"}\n',
        b'{"v":1,"cmd":"show_id","arg":"7"}\n',
        b'{"v":1,"cmd":"show_id","arg":0}\n',
        b'{"v":1,"cmd":"show_id","arg":true}\n',
        b'{"v":1,"cmd":"show_user","arg":""}\n',
        b'{"v":1,"cmd":"show_sessions","arg":"some"}\n',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"v":1,"cmd":"' + b"x" * MAX_LINE_BYTES + b'"}',
    ],
)
def test_bad_requests(line: bytes) -> None:
    with pytest.raises(BadControlMessage):
        parse_request_untrusted(line)


@pytest.mark.parametrize(
    "line",
    [
        b'{"v":1}',
        b'{"v":1,"type":"nope"}',
        b'{"v":1,"type":"error"}',
        b'{"v":1,"type":"users","users":{}}',
        b'{"v":1,"type":"users","users":[1]}',
        b'{"v":1,"type":"users","users":[{}]}',
        b'{"v":1,"type":"users","users":[{"id":"1"}]}',
        b'{"v":1,"type":"users","users":[{"id":true}]}',
        b'{"v":1,"type":"users","users":[{"id":1,"dns":"8.8.8.8"}]}',
        b'{"v":1,"type":"users","users":[{"id":1,"dns":[1]}]}',
        b'{"v":1,"type":"users","users":[{"id":1,"restrict_to_routes":1}]}',
        b'{"v":1,"type":"users","users":[{"id":1,"connected_at":"now"}]}',
        b'{"v":1,"type":"users","users":[{"id":99999999999999999999}]}',
        b'{"v":1,"type":"status","status":{"server_pid":1,"sec_mod_pid":1,"up_since":NaN}}',
        b'{"v":1,"type":"status","status":{"server_pid":1,"sec_mod_pid":1,"up_since":1e999}}',
        b'{"v":1,"type":"bans","bans":[{"ip":"x","score":1,"expires":"soon"}]}',
    ],
)
def test_bad_responses(line: bytes) -> None:
    with pytest.raises(BadControlMessage):
        parse_response_untrusted(line)


@pytest.mark.parametrize(
    "line",
    [
        b'{"v":1,"event":"boom","user":{"id":1}}',
        b'{"v":1,"event":"connect"}',
        b'{"v":1,"event":"connect","user":{"id":1},"reason":5}',
    ],
)
def test_bad_events(line: bytes) -> None:
    with pytest.raises(BadControlMessage):
        parse_event_untrusted(line)


def test_oversized_response_is_refused_locally(user: UserInfo) -> None:
    huge = replace(user, dns=("x" * 1000,) * 1100)
    with pytest.raises(LocalProtocolError):
        encode_response(UsersResponse((huge,)))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_KEYS = (
    "v", "cmd", "arg", "type", "users", "status", "sessions", "bans", "event", "user", "message",
    "id", "up_since", "server_pid", "sec_mod_pid", "ip",
)  # fmt: skip
_keys = st.sampled_from(_KEYS)
_objects = st.dictionaries(_keys, _json | st.just(1), max_size=6).map(
    lambda d: json.dumps(d).encode()
)
_lines = st.binary(max_size=300) | _objects


@settings(max_examples=300)
@given(_lines)
def test_fuzz_parse_request_untrusted(line: bytes) -> None:
    with contextlib.suppress(BadControlMessage):
        parse_request_untrusted(line)


@settings(max_examples=300)
@given(_lines)
def test_fuzz_parse_response_untrusted(line: bytes) -> None:
    with contextlib.suppress(BadControlMessage):
        parse_response_untrusted(line)


@settings(max_examples=300)
@given(_lines)
def test_fuzz_parse_event_untrusted(line: bytes) -> None:
    with contextlib.suppress(BadControlMessage):
        parse_event_untrusted(line)


@given(st.lists(st.text(max_size=12), max_size=5))
def test_fuzz_parse_command(words: list[str]) -> None:
    try:
        req = parse_command(words)
    except UsageError:
        return
    assert parse_request_untrusted(encode_request(req)) == req
