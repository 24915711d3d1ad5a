"""FrontDoor: every limit and every kind of bad input ends in one ProtocolViolation."""

from __future__ import annotations

import pytest

from ocgate.errors import ConfigError
from ocgate.http import FrontDoor, HttpEvent, HttpLimits, ProtocolViolation, Request, Response

OK = Response(200, "OK", ())
REASONS = {
    400: b"Bad Request",
    405: b"Method Not Allowed",
    413: b"Request Entity Too Large",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    505: b"HTTP Version Not Supported",
}


def events(door: FrontDoor) -> list[HttpEvent]:
    out = []
    while (event := door.next_event()) is not None:
        out.append(event)
    return out


def get(path: str = "/", extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: h\r\n".encode() + extra + b"\r\n"


def post(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: h\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def assert_violation(door: FrontDoor, status: int) -> ProtocolViolation:
    """The only event is the violation, and exactly the error response is queued."""
    (event,) = events(door)
    assert isinstance(event, ProtocolViolation), event
    assert event.status_hint == status, event
    assert event.message
    allow = b"Allow: CONNECT, GET, HEAD, POST\r\n" if status == 405 else b""
    assert door.data_to_send() == (
        b"HTTP/1.1 %d %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n"
        % (status, REASONS[status], allow)
    )
    assert door.should_close
    door.receive_data(get(), 2.0)  # Ignored after a violation.
    assert door.next_event() is None
    assert door.data_to_send() == b""
    return event


def feed(data: bytes, limits: HttpLimits | None = None) -> FrontDoor:
    door = FrontDoor(limits=limits or HttpLimits(), now=0.0)
    door.receive_data(data, 1.0)
    return door


# -- pipelining (ocserv #716) -----------------------------------------------------------------


def test_two_requests_in_one_receive_data() -> None:
    door = feed(get("/a") + get("/b"))
    assert_violation(door, 400)


def test_request_plus_one_byte_in_one_receive_data() -> None:
    door = feed(get() + b"G")
    assert_violation(door, 400)


def test_pipelined_request_in_a_later_slice() -> None:
    door = feed(get() + b"X" * 5000)
    assert_violation(door, 400)


def test_bytes_after_request_before_response() -> None:
    door = feed(get())
    (request,) = events(door)
    assert isinstance(request, Request)
    door.receive_data(get(), 1.0)
    assert_violation(door, 400)
    door.send_response(OK)  # The caller's late answer is dropped.
    assert door.data_to_send() == b""


def test_too_many_bytes_after_connect() -> None:
    door = feed(b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: h\r\n\r\n")
    events(door)
    door.receive_data(b"x" * 65536, 1.0)
    assert door.next_event() is None
    door.receive_data(b"x", 1.0)
    assert_violation(door, 400)


# -- limits ----------------------------------------------------------------------------------


def test_head_at_the_size_limit_is_accepted() -> None:
    base = len(get(extra=b"X: \r\n"))
    door = feed(get(extra=b"X: " + b"a" * (16384 - base) + b"\r\n"))
    assert isinstance(door.next_event(), Request)


@pytest.mark.parametrize("chunk", [1, 1000, 1 << 20])
def test_head_one_byte_over_the_size_limit(chunk: int) -> None:
    base = len(get(extra=b"X: \r\n"))
    data = get(extra=b"X: " + b"a" * (16385 - base) + b"\r\n")
    assert len(data) == 16385
    door = FrontDoor(now=0.0)
    for i in range(0, len(data), chunk):
        door.receive_data(data[i : i + chunk], 1.0)
    assert_violation(door, 431)


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1 << 20])
def test_head_over_the_size_limit(chunk: int) -> None:
    data = get(extra=b"X: " + b"a" * 16384 + b"\r\n")
    door = FrontDoor(now=0.0)
    for i in range(0, len(data), chunk):
        door.receive_data(data[i : i + chunk], 1.0)
    assert_violation(door, 431)


def test_head_padded_with_whitespace_in_one_piece() -> None:
    """h11 strips the padding, so only the sliced feeding catches this one."""
    door = feed(get(extra=b"X:" + b" " * 100_000 + b"a\r\n"))
    assert_violation(door, 431)


def test_too_many_header_fields() -> None:
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(99))
    assert isinstance(feed(get(extra=fields)).next_event(), Request)  # Host + 99 = 100.
    assert_violation(feed(get(extra=fields + b"X-Last: 1\r\n")), 431)


def test_content_length_over_limit_is_rejected_before_the_body() -> None:
    door = feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 262145\r\n\r\n")
    assert_violation(door, 413)


def test_body_at_the_limit_is_accepted() -> None:
    door = feed(post(b"b" * 262144))
    (request,) = events(door)
    assert isinstance(request, Request)
    assert len(request.body) == 262144


def test_one_megabyte_body() -> None:
    assert_violation(feed(post(b"b" * (1 << 20))), 413)


def test_chunked_body_counted_as_it_arrives() -> None:
    door = feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (60000, b"c" * 60000)
    for _ in range(4):
        door.receive_data(chunk, 1.0)
        assert door.next_event() is None
    door.receive_data(chunk, 1.0)
    assert_violation(door, 413)


def test_max_requests_closes_with_the_last_response() -> None:
    door = FrontDoor(limits=HttpLimits(max_requests=3), now=0.0)
    for i in range(3):
        door.receive_data(get(), 1.0)
        assert isinstance(door.next_event(), Request)
        door.send_response(OK)
        closing = door.data_to_send().endswith(b"Connection: close\r\n\r\n")
        assert closing == (i == 2)
    assert door.should_close
    door.receive_data(get(), 1.0)  # The 4th request is never read.
    assert door.next_event() is None


def test_sixteen_requests_by_default() -> None:
    door = FrontDoor(now=0.0)
    for _ in range(15):
        door.receive_data(get(), 1.0)
        assert isinstance(door.next_event(), Request)
        door.send_response(OK)
        assert not door.should_close
    door.receive_data(get(), 1.0)
    assert isinstance(door.next_event(), Request)
    door.send_response(OK)
    assert door.should_close


def test_hundred_kilobyte_cookie() -> None:
    assert_violation(feed(get(extra=b"Cookie: webvpn=" + b"A" * 100_000 + b"\r\n")), 431)


def test_cookie_header_over_4096_bytes() -> None:
    value = b"; ".join(b"c%d=%s" % (i, b"v" * 100) for i in range(45))
    assert len(value) > 4096
    assert_violation(feed(get(extra=b"Cookie: " + value + b"\r\n")), 400)


def test_cookie_value_over_1024_chars() -> None:
    assert_violation(feed(get(extra=b"Cookie: webvpncontext=" + b"A" * 1025 + b"\r\n")), 400)


# -- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: h\r\nNoColonHere\r\n\r\n", id="header-without-colon"
        ),
        pytest.param(b"GET /\r\n\r\n", id="http-0.9"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, id="tls"),
        pytest.param(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", id="double-space"),
        pytest.param(b"G\x00T / HTTP/1.1\r\nHost: h\r\n\r\n", id="nul-in-method"),
        pytest.param(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", id="leading-crlf"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", id="no-host"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", id="two-hosts"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: h\r\nX : y\r\n\r\n", id="space-before-colon"),
        pytest.param(post(b"x").replace(b": 1", b": -1"), id="negative-length"),
        pytest.param(post(b"x").replace(b": 1", b": 1x"), id="bad-length"),
        pytest.param(post(b"x").replace(b": 1", b": 1, 2"), id="two-lengths"),
        pytest.param(post(b"x").replace(b": 1", b": " + b"9" * 30), id="huge-length"),
        pytest.param(post(b"x", extra=b"Transfer-Encoding: chunked\r\n"), id="length-and-chunked"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            id="bad-chunk-size",
        ),
    ],
)
def test_bad_request(data: bytes) -> None:
    assert_violation(feed(data), 400)


@pytest.mark.parametrize("coding", [b"gzip", b"gzip, chunked", b"identity"])
def test_transfer_encoding_other_than_chunked(coding: bytes) -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " + coding + b"\r\n\r\n"
    assert_violation(feed(data), 501)


@pytest.mark.parametrize("version", [b"2.0", b"0.9", b"1.2"])
def test_unsupported_http_version(version: bytes) -> None:
    assert_violation(feed(b"GET / HTTP/" + version + b"\r\nHost: h\r\n\r\n"), 505)


@pytest.mark.parametrize("method", [b"PUT", b"TRACE", b"DELETE", b"OPTIONS"])
def test_method_not_allowed(method: bytes) -> None:
    assert_violation(feed(method + b" / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"), 405)


def test_configured_methods() -> None:
    limits = HttpLimits(methods=frozenset({"GET", "CONNECT", "POST", "HEAD", "OPTIONS"}))
    assert isinstance(feed(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", limits).next_event(), Request)


def test_long_peer_text_is_clipped_in_the_message() -> None:
    door = feed(b"GET / HTTP/1.1\r\nHost: h\r\n" + b"x" * 5000 + b"\r\n\r\n")
    event = assert_violation(door, 400)
    assert event.message == "illegal header line"


def test_peer_bytes_stay_out_of_the_message() -> None:
    event = assert_violation(feed(get(extra=b"Cookie webvpn=SECRET\r\n")), 400)
    assert "SECRET" not in event.message


def test_limits_validation() -> None:
    with pytest.raises(ConfigError):
        HttpLimits(max_body_bytes=0)
    with pytest.raises(ConfigError):
        HttpLimits(auth_timeout=-1.0)
    with pytest.raises(ConfigError):
        HttpLimits(methods=frozenset())
    assert HttpLimits().max_header_bytes == 16384
    assert HttpLimits().max_requests == 16
    assert HttpLimits().max_body_bytes == 262144
    assert HttpLimits().auth_timeout == 240.0
