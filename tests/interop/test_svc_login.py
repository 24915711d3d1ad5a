"""Acceptance: the ``/svc`` login of Cisco IP phones (``cisco-svc-client-compat``, issue 12 §1).

No IP phone runs here, so the phone's two requests are sent by hand, byte for byte as ocserv's
``src/worker-svc.c`` expects them (``GET /svc``, then ``POST /svc`` with ``username=&password=``,
user agent ``Cisco SVC IPPhone Client``); the cookie the server hands out is then given to the real
openconnect (``--cookie``), whose tunnel proves it is a session cookie like any other.
ocserv 1.1.6 predates ``/svc`` (ocserv 1.2.0).
"""

from __future__ import annotations

import urllib.parse

import pytest

from ._openconnect import OpenConnectRunner
from ._rawclient import Conn, HttpResponse, open_conn
from ._server import Server, ServerKind, StartServer, server_kind

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        server_kind() is ServerKind.OCSERV, reason="ocserv 1.1.6 has no /svc (added in 1.2.0)"
    ),
]

PHONE = "Cisco SVC IPPhone Client v1.0"
SVC_OPTIONS: dict[str, str | list[str] | None] = {
    "cisco-svc-client-compat": "true",
    "udp-port": "443",
}


def _send(conn: Conn, method: str, body: bytes = b"") -> HttpResponse | None:
    lines = [f"{method} /svc HTTP/1.1", f"Host: {conn.host}", f"User-Agent: {PHONE}"]
    if method == "POST":
        lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    assert conn.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return conn.read_response(method=method)


def _open(server: Server) -> Conn:
    return open_conn(server.pair.client, server.host, server.port, pin=server.pin)


def _form(user: str, password: str) -> bytes:
    return urllib.parse.urlencode({"username": user, "password": password}).encode()


def test_svc_phone_login_then_tunnel(
    start_gateway: StartServer, openconnect: OpenConnectRunner
) -> None:
    server = start_gateway(SVC_OPTIONS)
    conn = _open(server)
    try:
        hello = _send(conn, "GET")
        assert hello is not None
        assert (hello.status, hello.body) == (200, b"")
        assert hello.set_cookies().get("webvpnlogin") == "1", hello
        assert hello.header("X-Transcend-Version") == "1"
        done = _send(conn, "POST", _form("alice", "alicepass"))
        assert done is not None
        assert (done.status, done.body) == (200, b""), done
        cookie = done.set_cookies().get("webvpn", "")
        assert cookie, done
    finally:
        conn.close()
    server.wait_log(r"event=login user='alice' .*method=password", timeout=10)
    assert "alicepass" not in server.log_text()
    client = openconnect.connect(server, cookie=f"webvpn={cookie}")
    env = client.wait_env()
    assert env.get("INTERNAL_IP4_ADDRESS"), client.describe()


def test_svc_wrong_password_is_401_and_closes(start_gateway: StartServer) -> None:
    server = start_gateway(SVC_OPTIONS)
    conn = _open(server)
    try:
        # A POST without the fields gets the "send your credentials" answer again.
        again = _send(conn, "POST", b"username=alice")
        assert again is not None
        assert again.set_cookies().get("webvpnlogin") == "1", again
        refused = _send(conn, "POST", _form("alice", "wrong"))
        assert refused is not None
        assert (refused.status, refused.reason) == (401, "Authentication failed"), refused
        assert conn.wait_closed(), "one try per connection, as ocserv"
    finally:
        conn.close()
    server.wait_log(r"login-failed user='alice'", timeout=10)


def test_svc_without_the_option_still_answers_with_a_warning(start_gateway: StartServer) -> None:
    server = start_gateway()
    conn = _open(server)
    try:
        hello = _send(conn, "GET")
        assert hello is not None
        assert hello.status == 200, hello
    finally:
        conn.close()
    server.wait_log(r"event=svc-request .*cisco-svc-client-compat = false", timeout=10)
