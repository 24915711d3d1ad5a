"""The AggAuth login dialog with a real password file and an in-memory session store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ocgate.aggauth import LoginForm
from ocgate.auth import build_auth_backends
from ocgate.config import parse_config
from ocgate.gateway import LoginDialog, LoginServices
from ocgate.http import Request, Response
from ocgate.session import MemorySessionStore, Session
from ocgate.tls import ServerCredentials

from .conftest import make_config_text

INIT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init" '
    b'aggregate-auth-version="2"><version who="vpn">v9.01-3</version>'
    b"<device-id>linux-64</device-id>"
    b"<group-access>https://198.18.0.1/</group-access></config-auth>"
)


def _reply(user: str, password: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-reply" '
        'aggregate-auth-version="2"><version who="vpn">v9.01-3</version>'
        "<device-id>linux-64</device-id>"
        f"<auth><username>{user}</username><password>{password}</password></auth></config-auth>"
    ).encode()


def _post(body: bytes, *, xml: bool = True) -> Request:
    headers: tuple[tuple[str, str], ...] = (
        ("host", "vpn"),
        ("user-agent", "Open AnyConnect VPN Agent v9.01-3"),
    )
    if xml:
        headers += (("x-aggregate-auth", "1"),)
    return Request(method="POST", target="/", headers=headers, body=body, http_version="1.1")


class Harness:
    def __init__(self, directory: Path, extra: str = "") -> None:
        self.config = parse_config(make_config_text(directory, extra), source="t.conf")
        self.store = MemorySessionStore()
        self.ended: list[tuple[Session, str]] = []
        services = LoginServices(
            config=self.config,
            backends=build_auth_backends(self.config),
            store=self.store,
            credentials=ServerCredentials(sha1_hex="AB" * 20, pin_sha256="pin-sha256:x"),
            clock=lambda: 100.0,
            count_connected=lambda user: 0,
            end_session=lambda s, reason: self.ended.append((s, reason)),
        )
        self.dialog = LoginDialog(services, remote_addr="198.18.0.2")

    def send(self, request: Request) -> Response:
        return asyncio.run(self.dialog.handle(request))


def _cookie(response: Response) -> str:
    for name, value in response.headers:
        if name == "Set-Cookie" and value.startswith("webvpn="):
            return value.split("=", 1)[1].split(";", 1)[0]
    raise AssertionError("no webvpn cookie")


def test_init_then_success_sets_cookie_and_token(config_dir: Path) -> None:
    h = Harness(config_dir)
    form = h.send(_post(INIT))
    assert form.status == 200
    assert b'<form method="post"' in form.body
    assert b'name="password"' in form.body
    done = h.send(_post(_reply("alice", "alicepass")))
    assert done.status == 200
    assert b'<auth id="success">' in done.body
    cookie = _cookie(done)
    assert f"<session-token>{cookie}</session-token>".encode() in done.body
    session = h.store.lookup(cookie, 100.0)
    assert session.username == "alice"
    assert session.group == "eng"


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "wrong"), ("alice", ""), ("carol", "carolpass"), ("nobody", "x")],
)
def test_failures_are_indistinguishable(config_dir: Path, user: str, password: str) -> None:
    reference = Harness(config_dir).send(_post(_reply("alice", "wrong")))
    response = Harness(config_dir).send(_post(_reply(user, password)))
    assert response.status == 200
    assert b"Login failed" in response.body
    assert (response.status, response.headers, response.body) == (
        reference.status,
        reference.headers,
        reference.body,
    )


def test_wrong_then_right_on_one_connection(config_dir: Path) -> None:
    h = Harness(config_dir)
    assert b"Login failed" in h.send(_post(_reply("alice", "wrong"))).body
    assert b'<auth id="success">' in h.send(_post(_reply("alice", "alicepass"))).body


def test_third_failure_gets_401_and_close(config_dir: Path) -> None:
    h = Harness(config_dir)
    h.send(_post(_reply("alice", "a")))
    h.send(_post(_reply("alice", "b")))
    last = h.send(_post(_reply("alice", "c")))
    assert last.status == 401
    assert last.close


def test_urlencoded_login_for_non_xml_clients(config_dir: Path) -> None:
    h = Harness(config_dir)
    get = h.send(
        Request(method="GET", target="/", headers=(("host", "vpn"),), body=b"", http_version="1.1")
    )
    assert b"<config-auth" not in get.body
    assert b'<auth id="main">' in get.body
    done = h.send(_post(b"username=alice&password=alicepass", xml=False))
    assert b'<auth id="success">' in done.body
    assert _cookie(done)


def test_logout_ends_the_session(config_dir: Path) -> None:
    h = Harness(config_dir)
    cookie = _cookie(h.send(_post(_reply("alice", "alicepass"))))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><config-auth client="vpn" type="logout">'
        f"<session-token>{cookie}</session-token></config-auth>"
    ).encode()
    assert h.send(_post(body)).status == 200
    assert [reason for _, reason in h.ended] == ["user logout"]


def test_hostile_xml_is_a_400(config_dir: Path) -> None:
    h = Harness(config_dir)
    evil = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><config-auth>&a;</config-auth>'
    response = h.send(_post(evil))
    assert response.status == 400
    assert response.close


def test_downloader_stub_and_unknown_path(config_dir: Path) -> None:
    h = Harness(config_dir)
    stub = h.send(
        Request(
            method="GET", target="/1/binaries/update.txt", headers=(), body=b"", http_version="1.1"
        )
    )
    assert stub.body == b"0,0,0000\n"
    missing = h.send(
        Request(method="GET", target="/etc/passwd", headers=(), body=b"", http_version="1.1")
    )
    assert missing.status == 404
    assert missing.close


def test_banner_is_shown_before_login(config_dir: Path) -> None:
    h = Harness(config_dir, 'pre-login-banner = "Authorised <users> only"\n')
    assert b"Authorised &lt;users&gt; only" in h.send(_post(INIT)).body
    assert isinstance(LoginForm(message="m"), LoginForm)
