"""FrontDoor: request/response cycles, keep-alive, CONNECT hand-over, the deadline."""

from __future__ import annotations

import pytest

from ocgate.errors import LocalProtocolError
from ocgate.http import (
    ConnectionClosed,
    FrontDoor,
    HttpEvent,
    HttpLimits,
    ProtocolViolation,
    Request,
    Response,
    TimedOut,
)

# anyconnect-protocol.md §2.1: what openconnect 9.01 sends for the init POST, headers in order.
INIT_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<config-auth client="vpn" type="init" aggregate-auth-version="2">'
    b'<version who="vpn">v9.01-3</version><device-id>linux-64</device-id>'
    b"<group-access>https://vpn.example.com</group-access></config-auth>"
)
INIT_POST = (
    b"POST / HTTP/1.1\r\n"
    b"Host: vpn.example.com\r\n"
    b"User-Agent: Open AnyConnect VPN Agent v9.01-3\r\n"
    b"Accept: */*\r\n"
    b"Accept-Encoding: identity\r\n"
    b"X-Transcend-Version: 1\r\n"
    b"X-Aggregate-Auth: 1\r\n"
    b"X-Support-HTTP-Auth: true\r\n"
    b"X-Pad: 0000000000000000000000000000000000000000\r\n"
    b"Content-Type: application/xml; charset=utf-8\r\n"
    b"Content-Length: " + str(len(INIT_XML)).encode() + b"\r\n"
    b"\r\n" + INIT_XML
)
CONNECT = (
    b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n"
    b"Host: vpn.example.com\r\n"
    b"User-Agent: Open AnyConnect VPN Agent v9.01-3\r\n"
    b"Cookie: webvpn=AbCdEf0123456789\r\n"
    b"X-CSTP-Version: 1\r\n"
    b"X-CSTP-Hostname: laptop\r\n"
    b"X-CSTP-Base-MTU: 1406\r\n"
    b"X-CSTP-MTU: 1290\r\n"
    b"X-CSTP-Address-Type: IPv6,IPv4\r\n"
    b"X-CSTP-Full-IPv6-Capability: true\r\n"
    b"X-DTLS-Master-Secret: " + b"AB" * 48 + b"\r\n"
    b"X-DTLS-CipherSuite: PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM\r\n"
    b"\r\n"
)
CONNECTED = Response(
    200,
    "CONNECTED",
    (("X-CSTP-Version", "1"), ("X-CSTP-MTU", "1290"), ("X-DTLS-Session-ID", "ab" * 32)),
)
CONNECTED_BYTES = (
    b"HTTP/1.1 200 CONNECTED\r\n"
    b"X-CSTP-Version: 1\r\n"
    b"X-CSTP-MTU: 1290\r\n"
    b"X-DTLS-Session-ID: " + b"ab" * 32 + b"\r\n"
    b"\r\n"
)
OK = Response(200, "OK", (("Content-Type", "text/xml; charset=utf-8"),), b"<x/>")
OK_BYTES = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: 4\r\n\r\n<x/>"
)


def events(door: FrontDoor) -> list[HttpEvent]:
    out = []
    while (event := door.next_event()) is not None:
        out.append(event)
    return out


def one_request(door: FrontDoor) -> Request:
    (event,) = events(door)
    assert isinstance(event, Request)
    return event


def get(path: str = "/", extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: h\r\n".encode() + extra + b"\r\n"


def test_openconnect_init_post() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(INIT_POST, 1.0)
    request = one_request(door)
    assert request.method == "POST"
    assert request.target == "/"
    assert request.http_version == "1.1"
    assert request.body == INIT_XML
    assert [name for name, _ in request.headers] == [
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "x-transcend-version",
        "x-aggregate-auth",
        "x-support-http-auth",
        "x-pad",
        "content-type",
        "content-length",
    ]
    assert request.header("User-Agent") == "Open AnyConnect VPN Agent v9.01-3"
    assert request.header("X-AGGREGATE-AUTH") == "1"
    assert request.header("cookie") is None
    assert request.cookies() == {}
    door.send_response(OK)
    assert door.data_to_send() == OK_BYTES
    assert door.data_to_send() == b""
    assert not door.should_close


def test_request_split_byte_by_byte() -> None:
    door = FrontDoor(now=0.0)
    for i in range(len(INIT_POST)):
        door.receive_data(INIT_POST[i : i + 1], 1.0)
        if i < len(INIT_POST) - 1:
            assert door.next_event() is None
    assert one_request(door).body == INIT_XML


def test_keep_alive_three_requests_then_connect() -> None:
    door = FrontDoor(now=0.0)
    for _ in range(3):
        door.receive_data(INIT_POST, 1.0)
        one_request(door)
        door.send_response(OK)
        assert door.data_to_send() == OK_BYTES
    assert door.get_timer() == 240.0
    door.receive_data(CONNECT, 2.0)
    request = one_request(door)
    assert request.method == "CONNECT"
    assert request.target == "/CSCOSSLC/tunnel"
    assert request.cookies() == {"webvpn": "AbCdEf0123456789"}
    assert request.header("X-DTLS-Master-Secret") == "AB" * 48
    door.send_response(CONNECTED)
    assert door.data_to_send() == CONNECTED_BYTES
    assert door.get_timer() is None
    assert door.tunnel_established() == b""
    assert not door.should_close


def test_connect_trailing_bytes_go_to_the_tunnel() -> None:
    cstp = b"STF\x01\x00\x04\x07\x00\xde\xad\xbe\xef"
    door = FrontDoor(now=0.0)
    door.receive_data(CONNECT + cstp[:5], 1.0)
    one_request(door)
    door.receive_data(cstp[5:9], 1.0)  # More CSTP before the reply: kept, not a pipelined request.
    assert door.next_event() is None
    door.send_response(CONNECTED)
    door.receive_data(cstp[9:], 1.0)  # And after the reply, before the hand-over.
    assert door.data_to_send() == CONNECTED_BYTES
    assert door.tunnel_established() == cstp
    with pytest.raises(LocalProtocolError):
        door.receive_data(b"more", 2.0)
    with pytest.raises(LocalProtocolError):
        door.tunnel_established()


def test_connect_trailing_bytes_in_a_later_slice() -> None:
    door = FrontDoor(now=0.0)
    cstp = bytes(range(256)) * 20
    door.receive_data(CONNECT + cstp, 1.0)
    one_request(door)
    door.send_response(CONNECTED)
    assert door.tunnel_established() == cstp


def test_connect_without_slash() -> None:
    """The Clavister client sends ``CONNECT CSCOSSLC/tunnel`` (anyconnect-protocol.md §2.3)."""
    door = FrontDoor(now=0.0)
    door.receive_data(b"CONNECT CSCOSSLC/tunnel HTTP/1.1\r\nHost: h\r\n\r\n", 1.0)
    assert one_request(door).target == "CSCOSSLC/tunnel"


def test_connect_rejected_keeps_connection() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(CONNECT, 1.0)
    one_request(door)
    door.send_response(Response(401, "Cookie is not acceptable", ()))
    assert door.data_to_send() == (
        b"HTTP/1.1 401 Cookie is not acceptable\r\nContent-Length: 0\r\n\r\n"
    )
    assert not door.should_close
    with pytest.raises(LocalProtocolError):
        door.tunnel_established()
    door.receive_data(get(), 1.0)
    assert one_request(door).method == "GET"


def test_connect_rejected_with_early_bytes_closes() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(CONNECT + b"STF", 1.0)
    one_request(door)
    door.send_response(Response(503, "Service Unavailable", (("X-Reason", "no address"),)))
    assert door.data_to_send() == (
        b"HTTP/1.1 503 Service Unavailable\r\nX-Reason: no address\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert door.should_close


def test_connect_rejected_after_early_bytes_in_a_later_call_closes() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(CONNECT, 1.0)
    one_request(door)
    door.receive_data(b"STF", 1.0)
    door.send_response(Response(401, "Cookie is not acceptable", ()))
    assert door.data_to_send().endswith(b"Connection: close\r\n\r\n")
    assert door.should_close


def test_connect_reply_must_not_close_or_have_a_body() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(CONNECT, 1.0)
    one_request(door)
    with pytest.raises(LocalProtocolError):
        door.send_response(Response(200, "CONNECTED", (), b"x"))
    with pytest.raises(LocalProtocolError):
        door.send_response(Response(200, "CONNECTED", (), close=True))


def test_response_with_close() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(get("/nothing"), 1.0)
    one_request(door)
    door.send_response(Response(404, "Not Found", (), close=True))
    assert door.data_to_send() == (
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert door.should_close
    door.receive_data(get(), 1.0)  # Ignored from now on.
    assert door.next_event() is None
    assert door.get_timer() is None
    door.send_response(OK)  # Ignored too: the connection is closing.
    assert door.data_to_send() == b""


def test_http_1_0_is_answered_and_closed() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(b"GET / HTTP/1.0\r\n\r\n", 1.0)
    assert one_request(door).http_version == "1.0"
    door.send_response(Response(200, "OK", (), b"hi"))
    assert door.data_to_send() == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    )
    assert door.should_close


def test_client_connection_close_is_honoured() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(get(extra=b"Connection: Keep-Alive, close\r\n"), 1.0)
    one_request(door)
    door.send_response(OK)
    assert door.data_to_send().endswith(b"Connection: close\r\n\r\n<x/>")
    assert door.should_close


def test_head_gets_length_but_no_body() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", 1.0)
    one_request(door)
    door.send_response(OK)
    assert door.data_to_send() == OK_BYTES[: -len(b"<x/>")]
    door.receive_data(get(), 1.0)
    one_request(door)


@pytest.mark.parametrize("status", [204, 304])
def test_no_content_statuses_have_no_length(status: int) -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(get(), 1.0)
    one_request(door)
    door.send_response(Response(status, "X", (("ETag", '"1"'),)))
    assert door.data_to_send() == f'HTTP/1.1 {status} X\r\nETag: "1"\r\n\r\n'.encode()


def test_header_casing_and_order_are_kept() -> None:
    headers = (
        ("X-CSTP-DNS", "10.0.0.1"),
        ("Set-Cookie", "webvpn=abc; Secure"),
        ("x-lower", "v"),
        ("X-CSTP-DNS", "10.0.0.2"),
        ("X-Transcend-Version", "1"),
    )
    door = FrontDoor(now=0.0)
    door.receive_data(get(), 1.0)
    one_request(door)
    door.send_response(Response(200, "OK", headers, b"\xff"))
    assert door.data_to_send() == (
        b"HTTP/1.1 200 OK\r\n"
        b"X-CSTP-DNS: 10.0.0.1\r\n"
        b"Set-Cookie: webvpn=abc; Secure\r\n"
        b"x-lower: v\r\n"
        b"X-CSTP-DNS: 10.0.0.2\r\n"
        b"X-Transcend-Version: 1\r\n"
        b"Content-Length: 1\r\n"
        b"\r\n\xff"
    )


def test_request_header_values_are_latin1_and_duplicates_kept() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(get(extra=b"X-A: \xe9t\xe9\r\nx-a: second\r\n"), 1.0)
    request = one_request(door)
    assert request.header("x-a") == "été"
    assert request.headers[-1] == ("x-a", "second")


def test_chunked_body() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        1.0,
    )
    assert one_request(door).body == b"abcde"


def test_expect_100_continue() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(
        b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", 1.0
    )
    assert door.next_event() is None
    assert door.data_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n"
    door.receive_data(b"abc", 1.0)
    assert one_request(door).body == b"abc"
    door.send_response(OK)
    assert door.data_to_send() == OK_BYTES


def test_send_response_without_request_is_a_caller_bug() -> None:
    door = FrontDoor(now=0.0)
    with pytest.raises(LocalProtocolError):
        door.send_response(OK)
    door.receive_data(get(), 1.0)
    one_request(door)
    door.send_response(OK)
    with pytest.raises(LocalProtocolError):
        door.send_response(OK)


def test_peer_eof() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(b"", 1.0)
    assert events(door) == [ConnectionClosed()]
    assert door.should_close
    assert door.data_to_send() == b""


def test_peer_eof_mid_request() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabc", 1.0)
    door.receive_data(b"", 1.0)
    assert events(door) == [ConnectionClosed()]


def test_peer_eof_before_tunnel_hand_over() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(CONNECT, 1.0)
    one_request(door)
    door.send_response(CONNECTED)
    door.receive_data(b"", 1.0)
    assert events(door) == [ConnectionClosed()]
    with pytest.raises(LocalProtocolError):
        door.tunnel_established()


def test_auth_deadline_by_timer() -> None:
    door = FrontDoor(now=100.0)
    assert door.get_timer() == 340.0
    door.handle_timer(339.9)
    assert door.next_event() is None
    door.handle_timer(340.0)
    assert events(door) == [TimedOut()]
    assert door.should_close
    assert door.get_timer() is None
    assert door.data_to_send() == b""


def test_auth_deadline_checked_on_receive() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(get(), 241.0)
    assert events(door) == [TimedOut()]


def test_deadline_applies_while_a_request_is_pending() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(get(), 1.0)
    one_request(door)
    assert door.get_timer() == 240.0
    door.handle_timer(240.0)
    assert events(door) == [TimedOut()]
    door.send_response(OK)  # The caller finished late: ignored.
    assert door.data_to_send() == b""


def test_set_deadline_and_disable() -> None:
    door = FrontDoor(now=0.0)
    door.set_deadline(10.0)
    assert door.get_timer() == 10.0
    door.set_deadline(None)
    assert door.get_timer() is None
    door.handle_timer(1e9)
    assert door.next_event() is None
    never = FrontDoor(limits=HttpLimits(auth_timeout=None), now=0.0)
    assert never.get_timer() is None


def test_no_timer_after_tunnel() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(CONNECT, 1.0)
    one_request(door)
    door.send_response(CONNECTED)
    door.handle_timer(1e9)
    assert door.next_event() is None
    door.receive_data(b"cstp", 1e9)  # Past the deadline, but the tunnel is up: kept.
    assert door.tunnel_established() == b"cstp"


def test_violation_event_carries_the_status() -> None:
    door = FrontDoor(now=0.0)
    door.receive_data(b"garbage\r\n\r\n", 1.0)
    (event,) = events(door)
    assert isinstance(event, ProtocolViolation)
    assert event.status_hint == 400
    assert door.should_close
