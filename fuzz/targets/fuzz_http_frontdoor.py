"""The HTTP front door and the cookie parsers: peer bytes become events, never exceptions.

Covers ``FrontDoor.receive_data`` (h11 plus ocgate's limits), ``parse_cookies_untrusted`` (every
``Cookie`` header, through ``Request.cookies``) and the session-cookie parsers
``parse_cookie_untrusted`` / ``cookie_digest_untrusted`` (only ``InvalidCookie``), which the
gateway runs on the ``webvpn`` cookie of a CONNECT, and the ``webvpncontext`` token check
``parse_context_token_untrusted`` (a login continued on a new connection), and the STRAP headers
(``load_strap_pubkey_untrusted``, ``verify_strap``: only ``BadStrap``/``InvalidCookie``, and no
fuzzed signature ever verifies).

Input: operations, tag % 4: 0 = bytes from the client, 1 = EOF, 2 = the clock moves on by the
payload (seconds) and the timer runs, 3 = bytes from the client with the pending request answered
first. The first operation's tag picks small or default limits.

Oracle: only the four event types come out, a request is complete and within the limits, its
cookies parse, a ``webvpn`` cookie either is canonical base64 of 32 bytes or raises
``InvalidCookie``, nothing is delivered after the connection is closed.
"""

from __future__ import annotations

import base64
import contextlib

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate", "h11"]):
    from ocgate.errors import BadStrap, InvalidCookie
    from ocgate.gateway._contexts import CONTEXT_COOKIE, parse_context_token_untrusted
    from ocgate.gateway._strap import (
        STRAP_PUBKEY,
        STRAP_VERIFY,
        StrapProof,
        load_strap_pubkey_untrusted,
        verify_strap,
    )
    from ocgate.http import (
        ConnectionClosed,
        FrontDoor,
        HttpLimits,
        ProtocolViolation,
        Request,
        Response,
        TimedOut,
    )
    from ocgate.session._store import cookie_digest_untrusted, parse_cookie_untrusted

# A session's STRAP key (any P-256 key: the fuzzed signatures must not verify against it).
STRAP_KEY = base64.b64decode(
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAvLTo+6w7boVnbvEypt5uZWSXTwbREXnQ3xqzWmvPYqp9AwKbvC1"
    "Qr+LYay++8GYS5hHDrCbqQOWSkAHg4ucYw=="
)


def _check_strap(request: Request) -> None:
    pubkey, verify = request.header(STRAP_PUBKEY), request.header(STRAP_VERIFY)
    if pubkey is not None:
        with contextlib.suppress(BadStrap):
            assert len(load_strap_pubkey_untrusted(pubkey)) == 91  # a P-256 SPKI
    if verify is not None:
        try:
            kept = verify_strap("required", STRAP_KEY, StrapProof(bytes(12), verify, pubkey))
        except InvalidCookie:
            return
        raise AssertionError(f"a fuzzed STRAP signature verified: {kept!r}")


SMALL = HttpLimits(
    max_header_bytes=512, max_header_count=8, max_body_bytes=256, max_requests=3, auth_timeout=30.0
)
DEFAULT = HttpLimits()


def _check_request(request: Request, limits: HttpLimits) -> None:
    assert request.method in limits.methods
    assert request.http_version in ("1.0", "1.1")
    assert len(request.body) <= limits.max_body_bytes
    assert all(name == name.lower() for name, _ in request.headers)
    _check_strap(request)
    cookies = request.cookies()  # The front door has refused over-long cookies already.
    context = parse_context_token_untrusted(cookies.get(CONTEXT_COOKIE))
    assert context is None or (context == cookies[CONTEXT_COOKIE] and len(context) <= 64)
    webvpn = cookies.get("webvpn")
    if webvpn is None:
        return
    try:
        raw = parse_cookie_untrusted(webvpn)
    except InvalidCookie:
        return
    assert len(raw) == 32
    assert base64.b64encode(raw).decode() == webvpn
    assert len(cookie_digest_untrusted(webvpn)) == 32


def _answer(door: FrontDoor, request: Request) -> bool:
    """Answer like the gateway; return whether the stream is now the tunnel's."""
    if request.method == "CONNECT":
        door.send_response(Response(200, "CONNECTED", (("X-CSTP-Version", "1"),)))
        door.tunnel_established()
        return True
    door.send_response(Response(200, "OK", (("Content-Type", "text/xml"),), b"<x/>"))
    return False


def test_one_input(data: bytes) -> None:
    operations = list(_harness.ops(data))
    if not operations:
        return
    limits = SMALL if operations[0][0] & 0x80 else DEFAULT
    door = FrontDoor(limits=limits, now=0.0)
    now = 0.0
    pending: Request | None = None
    for tag, payload in operations:
        if door.should_close:
            break
        kind = tag % 4
        if kind == 3 and pending is not None:
            if _answer(door, pending):
                return  # The stream is CSTP from here on (fuzz_cstp_* take over).
            pending = None
            if door.should_close:
                break
        if kind in (0, 3):
            door.receive_data(payload, now)
        elif kind == 1:
            door.receive_data(b"", now)
        else:
            now += _harness.number(payload[:2])
            door.handle_timer(now)
        door.data_to_send()
        while (event := door.next_event()) is not None:
            assert isinstance(event, Request | ConnectionClosed | ProtocolViolation | TimedOut)
            if isinstance(event, Request):
                assert pending is None, "a second request before the first was answered"
                _check_request(event, limits)
                pending = event
            elif isinstance(event, ProtocolViolation):
                assert 400 <= event.status_hint <= 599
        if door.should_close:
            assert door.next_event() is None


def seeds() -> list[bytes]:
    """openconnect 9.01's CONNECT (tests/vectors/cstp), its logins (tests/vectors/http) and the
    AggAuth bodies of tests/vectors/aggauth."""
    connect = (_harness.VECTORS / "cstp" / "connect_request.txt").read_bytes()
    connect = connect.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not connect.endswith(b"\r\n\r\n"):
        connect = connect.rstrip(b"\r\n") + b"\r\n\r\n"
    cookie = base64.b64encode(bytes(range(32)))
    real_cookie = connect.replace(b"webvpn=capture", b"webvpn=" + cookie)
    out = [
        _harness.op(0, connect),
        _harness.op(0x80, real_cookie[:40]) + _harness.op(0, real_cookie[40:]),
    ]
    for body in sorted((_harness.VECTORS / "aggauth").glob("*.xml")):
        out.append(_harness.op(0, _harness.post(body.read_bytes())) + _harness.op(3, connect))
    for capture in sorted((_harness.VECTORS / "http").glob("*.http")):
        requests = _harness.http_requests(capture.read_bytes())
        out.append(_harness.op(0, requests[0]) + b"".join(_harness.op(3, r) for r in requests[1:]))
    legacy = (_harness.VECTORS / "aggauth" / "legacy-urlencoded.txt").read_bytes().strip()
    out.append(_harness.op(0, _harness.post(legacy, xml=False)) + _harness.op(1))
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
