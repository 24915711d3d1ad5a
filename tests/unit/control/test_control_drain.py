"""``stop drain [SECONDS]`` and the node fields of ``show status`` / ``show users`` (issue 14:
several gateways behind a balancer)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC

import pytest
from test_control_cli import NOW, FakeServer, run
from test_control_dispatch import FakeBackend

from ocgate.control import (
    BanInfo,
    Command,
    ErrorResponse,
    OkResponse,
    Request,
    SessionInfo,
    StatusInfo,
    StatusResponse,
    UsageError,
    UserInfo,
    UsersResponse,
    dispatch,
    encode_request,
    encode_response,
    format_date,
    format_interval,
    format_status,
    format_status_json,
    format_user,
    format_users_json,
    parse_command,
    parse_request_untrusted,
    parse_response_untrusted,
)
from ocgate.errors import BadControlMessage

TZ = UTC


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["stop", "drain"], Request(Command.DRAIN)),
        (["stop", "drain", "3"], Request(Command.DRAIN, 3)),
        (["STOP", "Drain", "0"], Request(Command.DRAIN, 0)),
        (["drain"], Request(Command.DRAIN)),
        (["drain", "86400"], Request(Command.DRAIN, 86400)),
        (["stop drain 45"], Request(Command.DRAIN, 45)),
        (["stop", "now"], Request(Command.STOP)),  # unchanged beside it
    ],
)
def test_parse_drain(words: list[str], expected: Request) -> None:
    assert parse_command(words) == expected


@pytest.mark.parametrize(
    "words",
    [
        ["stop", "drain", "x"],
        ["stop", "drain", "-1"],
        ["stop", "drain", "1.5"],
        ["stop", "drain", "86401"],
        ["stop", "drain", "1", "2"],
        ["drain", "\u0663"],  # a non-ASCII digit
        ["stop"],
    ],
)
def test_parse_drain_rejects(words: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        parse_command(words)
    if words != ["stop"]:
        assert [c.command for c in info.value.candidates] == [Command.DRAIN]


@pytest.mark.parametrize("req", [Request(Command.DRAIN), Request(Command.DRAIN, 7)])
def test_drain_request_round_trip(req: Request) -> None:
    assert parse_request_untrusted(encode_request(req)) == req


@pytest.mark.parametrize(
    "line",
    [
        b'{"v":1,"cmd":"drain","arg":"5"}\n',
        b'{"v":1,"cmd":"drain","arg":true}\n',
        b'{"v":1,"cmd":"drain","arg":-1}\n',
        b'{"v":1,"cmd":"drain","arg":86401}\n',
        b'{"v":1,"cmd":"drain","arg":2.5}\n',
    ],
)
def test_bad_drain_requests(line: bytes) -> None:
    with pytest.raises(BadControlMessage):
        parse_request_untrusted(line)


def test_dispatch_drain(
    user: UserInfo,
    minimal_user: UserInfo,
    sessions: tuple[SessionInfo, ...],
    bans: tuple[BanInfo, ...],
    status: StatusInfo,
) -> None:
    backend = FakeBackend([user, minimal_user], list(sessions), list(bans), status)
    assert dispatch(Request(Command.DRAIN), backend) == OkResponse()
    assert dispatch(Request(Command.DRAIN, 3), backend) == OkResponse()
    assert backend.actions == [("drain", 30), ("drain", 3)]  # 30 s: the default grace
    backend.accept = False
    assert isinstance(dispatch(Request(Command.DRAIN, 3), backend), ErrorResponse)


@pytest.fixture
def server(status: StatusInfo) -> Iterator[FakeServer]:
    with tempfile.TemporaryDirectory(prefix="occtl") as short:  # AF_UNIX paths are short.
        srv = FakeServer(f"{short}/occtl.socket", FakeBackend([], [], [], status))
        yield srv
        srv.close()


def test_ctl_stop_drain(server: FakeServer) -> None:
    code, out, err = run("-s", server.path, "stop", "drain", "3")
    assert (code, err) == (0, "")
    assert out.startswith("Server draining")
    assert server.backend.actions == [("drain", 3)]
    assert run("-s", server.path, "drain")[0] == 0
    assert server.backend.actions[-1] == ("drain", 30)


def _draining(status: StatusInfo) -> StatusInfo:
    return replace(status, node="gw-a", state="draining", drain_deadline=NOW + 90)


def test_status_text_shows_node_state_and_deadline(status: StatusInfo) -> None:
    text = format_status(_draining(status), now=NOW, tz=TZ)
    when = f"{format_date(NOW + 90, TZ)} ({format_interval(90)})"
    assert (
        "\tStatus: online\n"
        "\tNode: gw-a\n"
        "\tState: draining\n"
        f"\tDrain deadline: {when}\n"
        "\tServer PID: 4242\n"
    ) in text
    ready = format_status(replace(status, node="gw-a", state="ready"), now=NOW, tz=TZ)
    assert "\tState: ready\n" in ready
    assert "Drain deadline" not in ready


def test_status_json_shows_node_state_and_deadline(status: StatusInfo) -> None:
    obj = json.loads(format_status_json(_draining(status), now=NOW, tz=TZ))
    assert list(obj)[:6] == [
        "Status", "Node", "State", "Drain deadline", "_Drain deadline", "raw_drain_deadline"
    ]  # fmt: skip
    assert (obj["Node"], obj["State"]) == ("gw-a", "draining")
    assert obj["raw_drain_deadline"] == int(NOW + 90)
    assert obj["_Drain deadline"] == format_interval(90)


def test_status_fields_cross_the_socket(status: StatusInfo) -> None:
    resp = StatusResponse(_draining(status))
    assert parse_response_untrusted(encode_response(resp)) == resp


def test_users_carry_their_node(user: UserInfo) -> None:
    on_a = replace(user, node="gw-a")
    [obj] = json.loads(format_users_json([on_a], now=NOW, tz=TZ))
    assert list(obj)[:2] == ["ID", "Node"]
    assert obj["Node"] == "gw-a"
    assert "\tNode: gw-a\n" in format_user([on_a], now=NOW, tz=TZ)
    # A server that does not say (an older one): no key, no line.
    [plain] = json.loads(format_users_json([user], now=NOW, tz=TZ))
    assert "Node" not in plain
    resp = UsersResponse((on_a,))
    assert parse_response_untrusted(encode_response(resp)) == resp
