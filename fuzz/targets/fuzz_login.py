"""The login state machine: HTTP bytes through the front door into ``LoginDialog`` (sans-IO).

One input is one TLS connection's plaintext. The front door parses it; every request but CONNECT
goes to the login dialog (AggAuth XML and legacy forms, groups, OTP, a RADIUS challenge, client
certificates), whose response goes back through the front door, as the worker and sec-mod do.
The first byte picks the configuration; then operations, tag % 4: 0 = bytes from the client,
1 = a CONNECT carrying the ``webvpn`` cookie the server handed out last (the client echoing
Set-Cookie; the payload is appended as extra header lines), 2 = the clock moves on by the
payload (seconds), 3 = EOF.

Oracle: the dialog raises nothing and its responses are acceptable to the front door (valid
status, headers and framing); a session exists only for a user who passed every factor the
configuration asks for (password, OTP, certificate); the third failure closes the connection;
a CONNECT is accepted only with the cookie of a live session.
"""

from __future__ import annotations

import asyncio
import random

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from _gateway import CERT_ALICE, FakeBackends, gateway_config

    from ocgate.errors import InvalidCookie
    from ocgate.gateway import GroupMenu, LoginDialog, LoginServices
    from ocgate.http import FrontDoor, HttpLimits, ProtocolViolation, Request, Response
    from ocgate.session import MemorySessionStore, Session
    from ocgate.tls import ServerCredentials

CONFIGS = [
    gateway_config(
        "select-group = eng[Engineering]\nselect-group = ops\n"
        "default-select-group = DEFAULT\nmax-same-clients = 1\n"
    ),
    gateway_config(),
    gateway_config("select-group = eng\nauto-select-group = true\n"),
]
# (config, alternatives, OTP codes, certificate presented)
SETUPS = [
    (0, (frozenset({"plain"}),), {}, False),
    (1, (frozenset({"plain"}),), {"alice": "123456"}, False),
    (1, (frozenset({"certificate", "plain"}),), {}, True),
    (2, (frozenset({"plain"}), frozenset({"certificate"})), {}, True),
    (1, (frozenset({"certificate"}),), {}, False),
]
CREDENTIALS = ServerCredentials(sha1_hex="AB" * 20, pin_sha256="pin-sha256:x")
LOOP = asyncio.new_event_loop()
_STATUSES = frozenset({200, 400, 401, 404, 405, 503})


class _Connection:
    """One connection's front door and dialog, and the gateway state they share."""

    def __init__(self, setup: int) -> None:
        config_index, alternatives, otp, with_cert = SETUPS[setup % len(SETUPS)]
        self.config = CONFIGS[config_index]
        self.backends = FakeBackends(alternatives=alternatives, otp=dict(otp), cert=CERT_ALICE)
        self.store = MemorySessionStore(random_bytes=random.Random(1).randbytes)
        self.now = 100.0
        self.ended: list[Session] = []
        self.failures = 0
        self.cookie = ""
        services = LoginServices(
            config=self.config,
            backends=self.backends,
            store=self.store,
            credentials=CREDENTIALS,
            clock=lambda: self.now,
            count_connected=lambda user: sum(
                1 for s in self.store.sessions() if s.username == user
            ),
            end_session=self._end,
            groups=GroupMenu(self.config, ("eng", "ops", "sales")) if config_index == 0 else None,
            is_banned=lambda address: self.failures >= 10,
            on_auth_failure=self._failed,
        )
        chain = (b"\x30\x03\x02\x01\x01",) if with_cert else ()
        self.dialog = LoginDialog(
            services, remote_addr="198.18.0.2", local_addr="198.18.0.1", peer_chain=lambda: chain
        )
        self.door = FrontDoor(limits=HttpLimits(auth_timeout=60.0), now=self.now)

    def _end(self, session: Session, reason: str) -> None:
        self.ended.append(session)
        self.store.invalidate(session)

    def _failed(self, address: str) -> None:
        self.failures += 1

    def answer(self, request: Request) -> bool:
        """Answer one request; return whether the connection became a tunnel."""
        if request.method == "CONNECT":
            cookie = request.cookies().get("webvpn", "")
            try:
                session = self.store.lookup(cookie, self.now)
            except InvalidCookie:
                self.door.send_response(Response(401, "Unauthorized", (), b"", close=True))
                return False
            self.check_session(session)
            self.door.send_response(Response(200, "CONNECTED", (("X-CSTP-Version", "1"),)))
            self.door.tunnel_established()
            return True
        response = LOOP.run_until_complete(self.dialog.handle(request))
        assert response.status in _STATUSES, response
        for name, value in response.headers:
            if name == "Set-Cookie" and value.startswith("webvpn=") and len(value) > 7:
                self.cookie = value[7:].split(";", 1)[0]
        self.door.send_response(response)
        return False

    def check_session(self, session: Session) -> None:
        """A session may exist only for a user who passed every factor of one alternative."""
        backends = self.backends
        user = session.username
        ok = False
        for alternative in backends.alternatives:
            passed = all(
                (method != "plain" or user in backends.password_ok)
                and (method != "certificate" or user in backends.cert_ok)
                for method in alternative
            )
            if "plain" in alternative and backends.has_otp:
                passed = passed and user in backends.otp_ok
            ok = ok or passed
        assert ok, f"a session for {user!r} without the required factors"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    conn = _Connection(data[0])
    door = conn.door
    for tag, payload in _harness.ops(data[1:]):
        if door.should_close:
            break
        kind = tag % 4
        if kind == 0:
            door.receive_data(payload, conn.now)
        elif kind == 1:
            head = f"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: vpn\r\nCookie: webvpn={conn.cookie}"
            door.receive_data(head.encode() + b"\r\n" + payload + b"\r\n\r\n", conn.now)
        elif kind == 2:
            conn.now += _harness.number(payload[:2])
            door.handle_timer(conn.now)
        else:
            door.receive_data(b"", conn.now)
        door.data_to_send()
        while (event := door.next_event()) is not None:
            if isinstance(event, Request):
                if conn.answer(event):
                    return
            elif isinstance(event, ProtocolViolation):
                assert event.status_hint >= 400
    for session in conn.store.sessions():
        conn.check_session(session)


def _captured(case: str) -> list[bytes]:
    """One openconnect 9.01 login captured by tests/vectors/http/capture_login.py, cut into its
    requests (each is one operation: the client waits for the answer before the next)."""
    stream = (_harness.VECTORS / "http" / f"openconnect-9.01-{case}-0.http").read_bytes()
    return [_harness.op(0, r) for r in _harness.http_requests(stream)]


def seeds() -> list[bytes]:
    """Real openconnect 9.01 logins (tests/vectors/http: XML with a group, a retry after a wrong
    password, the legacy form, password then TOTP), each followed by the CONNECT with the cookie
    the server set; and the AggAuth vectors of tests/vectors/aggauth for the RADIUS challenge and
    a Cisco logout."""
    op = _harness.op
    connect = op(1, b"X-CSTP-Version: 1\r\nX-CSTP-Hostname: vm")
    otp = [r.replace(b">899510<", b">123456<") for r in _captured("otp")]  # FakeBackends' code.
    out = [
        b"\x00" + b"".join(_captured("xml-group")) + connect,
        b"\x00" + b"".join(_captured("xml-retry")) + connect,
        b"\x02" + b"".join(_captured("xml-retry")) + connect,
        b"\x00" + b"".join(_captured("legacy")) + op(2, b"\x00\x10") + connect,
        b"\x01" + b"".join(otp) + connect,
        b"\x03" + b"".join(_captured("xml-group")[:1]) + connect,
        b"\x04" + b"".join(_captured("legacy")[:1]),
    ]
    vectors = _harness.VECTORS / "aggauth"
    reply = (vectors / "openconnect-9.01-auth-reply.xml").read_bytes()
    bob = reply.replace(b"alice</username><password>secret", b"bob</username><password>bobpass")
    bob = bob.replace(b"<group-select>grpA</group-select>", b"")
    challenge = (vectors / "openconnect-9.01-auth-reply-challenge.xml").read_bytes()
    answer = challenge.replace(b"274539", b"42")
    logout = (vectors / "cisco-logout.xml").read_bytes()
    out.append(b"\x00" + op(0, _harness.post(bob)) + op(0, _harness.post(answer)) + connect)
    out.append(b"\x00" + b"".join(_captured("xml-group")) + op(0, _harness.post(logout)))
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
