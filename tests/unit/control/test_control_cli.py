"""``ocgate ctl`` end to end against a tiny fake control server on a Unix socket."""

from __future__ import annotations

import io
import json
import socket
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from test_control_dispatch import FakeBackend

from ocgate.control import (
    BanInfo,
    Command,
    ControlClient,
    Event,
    SessionInfo,
    StatusInfo,
    UserInfo,
    UsersResponse,
    dispatch,
    encode_event,
    encode_response,
    main,
    parse_request_untrusted,
)
from ocgate.errors import BadControlMessage

NOW = 1_700_000_000.0


class FakeServer:
    """Serves control requests from a thread until closed; ``raw`` overrides the next answer."""

    def __init__(self, path: str, backend: FakeBackend) -> None:
        self.path = path
        self.backend = backend
        self.raw: bytes | None = None
        self.events: list[Event] = []
        self.requests: list[Command] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        req = parse_request_untrusted(data)
        self.requests.append(req.cmd)
        if self.raw is not None:
            conn.sendall(self.raw)
            return
        conn.sendall(encode_response(dispatch(req, self.backend)))
        if req.cmd is Command.SHOW_EVENTS:
            for event in self.events:
                conn.sendall(encode_event(event))

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="occtl") as short:
        yield Path(short)


@pytest.fixture
def server(
    sock_dir: Path,
    user: UserInfo,
    minimal_user: UserInfo,
    sessions: tuple[SessionInfo, ...],
    bans: tuple[BanInfo, ...],
    status: StatusInfo,
) -> Iterator[FakeServer]:
    backend = FakeBackend([user, minimal_user], list(sessions), list(bans), status)
    srv = FakeServer(str(sock_dir / "occtl.socket"), backend)
    yield srv
    srv.close()


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, now=lambda: NOW, tz=UTC)
    return code, out.getvalue(), err.getvalue()


def test_show_users_text_and_json(server: FakeServer) -> None:
    code, out, err = run("-s", server.path, "show", "users")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == [
        "id",
        "user",
        "vhost",
        "ip",
        "vpn-ip",
        "device",
        "since",
        "dtls-cipher",
        "status",
    ]
    assert len(out.splitlines()) == 3
    code, out, _ = run("--socket-file", server.path, "-j", "show", "users")
    assert code == 0
    assert [u["Username"] for u in json.loads(out)] == ["alice", "bob"]


def test_show_user_and_id(server: FakeServer) -> None:
    code, out, _ = run("-s", server.path, "show", "user", "alice")
    assert code == 0
    assert "\tUsername: alice   Groupname: staff\n" in out
    code, out, _ = run("-s", server.path, "show", "id", "8")
    assert code == 0
    assert "\tUsername: bob   Groupname: (none)\n" in out
    code, out, _ = run("-s", server.path, "show", "user", "carol")
    assert (code, out) == (1, "user or ID not found\n")
    code, out, _ = run("-s", server.path, "--json", "show", "id", "99")
    assert code == 1
    assert json.loads(out) == []


def test_show_status(server: FakeServer) -> None:
    code, out, _ = run("-s", server.path, "show", "status")
    assert code == 0
    assert "\tServer PID: 4242\n" in out
    assert "TLS DB entries" not in out
    code, out, _ = run("-s", server.path, "--debug", "show", "status")
    assert "\tTLS DB entries: 4\n" in out
    code, out, _ = run(f"--socket-file={server.path}", "-n", "-j", "show", "status")
    assert code == 0
    assert json.loads(out)["Active sessions"] == 50


def test_show_status_offline(sock_dir: Path) -> None:
    missing = str(sock_dir / "nothing.socket")
    code, out, err = run("-s", missing, "show", "status")
    assert code == 1
    assert out.endswith("\tStatus: offline\n")
    assert f"error connecting to ocgate socket '{missing}'" in err
    code, out, _ = run("-s", missing, "-j", "show", "status")
    assert code == 1
    assert json.loads(out) == {"Status": "offline"}


def test_other_commands_when_offline(sock_dir: Path) -> None:
    missing = str(sock_dir / "nothing.socket")
    for words in (["show", "users"], ["reload"], ["show", "events"]):
        code, out, err = run("-s", missing, *words)
        assert (code, out) == (1, "")
        assert "error connecting" in err


def test_sessions_bans_iroutes(server: FakeServer) -> None:
    code, out, _ = run("-s", server.path, "show", "sessions", "all")
    assert code == 0
    assert len(out.splitlines()) == 3
    code, out, _ = run("-s", server.path, "show", "cookies", "valid")
    assert code == 0
    assert len(out.splitlines()) == 2
    code, out, _ = run("-s", server.path, "-j", "show", "sessions", "valid")
    assert [s["Session"] for s in json.loads(out)] == ["AbCdEf"]
    code, out, _ = run("-s", server.path, "show", "session", "QwE")
    assert code == 0
    assert out.startswith("\tSession: QwErTy\n")
    code, out, _ = run("-s", server.path, "show", "session", "nope")
    assert (code, out) == (1, "Session ID not found or expired\n")
    code, out, _ = run("-s", server.path, "show", "ip", "bans")
    assert code == 0
    assert len(out.splitlines()) == 2
    code, out, _ = run("-s", server.path, "-j", "show", "ip", "ban", "points")
    assert len(json.loads(out)) == 3
    code, out, _ = run("-s", server.path, "show", "iroutes")
    assert code == 0
    assert "192.168.5.0/255.255.255.0" in out
    code, out, _ = run("-s", server.path, "-j", "show", "iroutes")
    assert json.loads(out)[0]["iRoutes"] == ["192.168.5.0/255.255.255.0"]


@pytest.mark.parametrize(
    ("words", "done", "refused"),
    [
        (
            "disconnect user alice",
            "user 'alice' was disconnected",
            "could not disconnect user 'alice'",
        ),
        ("disconnect id 7", "connection ID '7' was disconnected", "could not disconnect ID '7'"),
        ("terminate user bob", "user 'bob' was terminated", "could not terminate user 'bob'"),
        ("terminate id 8", "connection ID '8' was terminated", "could not terminate ID '8'"),
        (
            "terminate session AbCdEf",
            "session 'AbCdEf' was terminated",
            "could not terminate session 'AbCdEf'",
        ),
        ("unban ip 192.0.2.66", "IP '192.0.2.66' was unbanned", "could not unban IP '192.0.2.66'"),
        ("reload", "Server scheduled to reload", "Error scheduling reload"),
        ("stop now", "Server scheduled to stop", "Error scheduling server stop"),
    ],
)  # fmt: skip
def test_actions(server: FakeServer, words: str, done: str, refused: str) -> None:
    assert run("-s", server.path, *words.split()) == (0, done + "\n", "")
    server.backend.accept = False
    code, out, err = run("-s", server.path, "--debug", *words.split())
    assert (code, out) == (1, refused + "\n")
    assert err  # --debug shows the server's reason


def test_events_stream(server: FakeServer, user: UserInfo, minimal_user: UserInfo) -> None:
    server.events = [Event("connect", user), Event("disconnect", minimal_user, "idle timeout")]
    code, out, err = run("-s", server.path, "show", "events")
    assert code == 0
    assert "Press CTRL+C to quit\n\n" in out
    assert out.endswith(
        "default: connected user 'alice' (7) from 198.51.100.7 with IP 10.10.0.2\n"
        "default: disconnect user 'bob' (8) from 192.0.2.9 with IP  "
        "(reason: idle timeout, time:    30s)\n"
    )
    assert err == "events: server closed the connection\n"
    code, out, _ = run("-s", server.path, "-j", "show", "events")
    assert code == 0
    assert out.count("\n[\n") + out.startswith("[\n") == 3  # the table, then one array per event
    assert [obj.get("event") for obj in _json_documents(out)] == [None, "connect", "disconnect"]


def _json_documents(text: str) -> list[dict[str, object]]:
    decoder, pos, firsts = json.JSONDecoder(), 0, []
    while pos < len(text):
        doc, end = decoder.raw_decode(text, pos)
        firsts.append(doc[0])
        pos = end + 1
    return firsts


def test_garbage_from_server(server: FakeServer) -> None:
    server.raw = b"this is not json\n"
    code, out, err = run("-s", server.path, "show", "users")
    assert (code, out) == (1, "")
    assert "could not send message" in err
    code, out, _ = run("-s", server.path, "show", "status")
    assert code == 1
    assert out.endswith("\tStatus: offline\n")
    server.raw = b'{"v":1,"type":"ok"}\n'  # the wrong kind of answer
    code, _, err = run("-s", server.path, "show", "users")
    assert code == 1
    assert "unexpected OkResponse" in err
    server.raw = b'{"v":1,"type":"error","message":"busy"}\n'
    assert run("-s", server.path, "show", "users")[2] == "ocgate ctl: busy\n"
    server.raw = b""  # closed without answering
    assert run("-s", server.path, "reload")[0] == 1
    server.raw = b'{"v":1,"type":"ok"}\n'
    code, _, err = run("-s", server.path, "show", "events")
    assert code == 1
    assert "unexpected OkResponse" in err


def test_client_directly(server: FakeServer) -> None:
    client = ControlClient(server.path, timeout=5)
    resp = client.request(parse_request_untrusted(b'{"v":1,"cmd":"show_users"}'))
    assert isinstance(resp, UsersResponse)
    assert len(resp.users) == 2
    server.raw = b'{"v":1,"type":"ok"'  # cut short
    with pytest.raises(BadControlMessage):
        client.request(parse_request_untrusted(b'{"v":1,"cmd":"reload"}'))


def test_usage_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("--help")
    assert code == 0
    for words in ("show users", "show user [NAME]", "terminate session [SID]", "stop now"):
        assert words in out
    assert "no interactive prompt" in out.lower() or "There is no interactive prompt" in out
    assert run("-v")[0] == 0
    code, _, err = run()
    assert code == 1
    assert "no command given" in err
    code, _, err = run("show", "frobs")
    assert code == 1
    assert "unknown command: show frobs" in err
    code, _, err = run("show", "user")
    assert code == 1
    assert " show user [NAME]" in err
    code, _, err = run("--bogus", "show", "users")
    assert code == 1
    assert "unknown or incomplete option" in err
    code, _, err = run("-s")
    assert code == 1
    assert main(["--help"]) == 0  # real stdout
    assert "usage: ocgate ctl" in capsys.readouterr().out
