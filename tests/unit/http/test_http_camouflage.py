"""The camouflage gate and the included headers (ocserv ``src/worker-vpn.c``
``check_camouflage_url``; ``src/worker-http.c`` ``response_401``/``response_404``), rendered
through the real front door so the bytes are what a client reads."""

from __future__ import annotations

import pytest

from ocgate.http import CamouflageGate, FrontDoor, Request, Response, with_headers


def _request(method: str, target: str, *headers: tuple[str, str]) -> Request:
    return Request(method=method, target=target, headers=headers, body=b"", http_version="1.1")


def _wire(method: str, target: str, response: Response) -> bytes:
    door = FrontDoor(now=0.0)
    door.receive_data(f"{method} {target} HTTP/1.1\r\nHost: vpn\r\n\r\n".encode(), 0.0)
    assert isinstance(door.next_event(), Request)
    door.send_response(response)
    return door.data_to_send()


def test_stranger_with_realm_gets_ocserv_s_401() -> None:
    gate = CamouflageGate("s3cret", "Restricted Content")
    answer = gate.check(_request("GET", "/"))
    assert answer is not None
    assert answer.close
    wire = _wire("GET", "/", answer)
    head, _, body = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b'\r\nWWW-Authenticate: Basic realm="Restricted Content"\r\n' in head
    assert b"\r\nConnection: close" in head
    assert body == b"<html><body><h1>401 Unauthorized</h1></body></html>\r\n"


def test_stranger_without_realm_gets_404() -> None:
    answer = CamouflageGate("s3cret", None).check(_request("POST", "/auth"))
    assert answer is not None
    assert (answer.status, answer.reason, answer.headers) == (404, "Not found", ())
    assert answer.body == b"<html><body><h1>404 Not Found</h1></body></html>\r\n"


@pytest.mark.parametrize("target", ["/", "/?", "/?S3CRET", "/?s3cret&x", "/s3cret", "/?xs3cret"])
def test_only_the_exact_query_is_the_secret(target: str) -> None:
    assert CamouflageGate("s3cret", None).check(_request("GET", target)) is not None


def test_the_secret_opens_the_connection_for_the_rest_of_the_login() -> None:
    gate = CamouflageGate("s3cret", "R")
    assert gate.check(_request("GET", "/?s3cret")) is None
    assert gate.passed_by_secret
    assert gate.check(_request("POST", "/")) is None  # openconnect's form POST drops the query.
    assert gate.refusal() is None  # The VPN's own answers from now on.
    # Another connection starts hidden again.
    assert CamouflageGate("s3cret", "R").check(_request("POST", "/")) is not None


def test_a_cookie_lets_only_connect_through_and_a_bad_one_gets_405() -> None:
    gate = CamouflageGate("s3cret", "R")
    cookie = ("cookie", "webvpn=abc")
    assert gate.check(_request("GET", "/", cookie)) is not None
    assert gate.check(_request("CONNECT", "/CSCOSSLC/tunnel")) is not None
    assert gate.check(_request("CONNECT", "/CSCOSSLC/tunnel", cookie)) is None
    refusal = gate.refusal()
    assert refusal is not None
    assert (refusal.status, refusal.close) == (405, True)


def test_with_headers_appends_in_order() -> None:
    base = Response(200, "OK", (("Content-Type", "text/xml"),), b"x")
    extra = (("X-Frame-Options", "deny"), ("Clear-Site-Data", '"cache","cookies"'))
    assert with_headers(base, ()) is base
    wire = _wire("GET", "/", with_headers(base, extra))
    assert (
        b'Content-Type: text/xml\r\nX-Frame-Options: deny\r\nClear-Site-Data: "cache","cookies"'
        in wire
    )
