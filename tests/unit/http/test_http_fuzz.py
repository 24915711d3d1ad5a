"""Arbitrary bytes, split at arbitrary points, produce only events, never exceptions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.http import (
    ConnectionClosed,
    FrontDoor,
    HttpLimits,
    ProtocolViolation,
    Request,
    Response,
    TimedOut,
)

SMALL = HttpLimits(max_header_bytes=256, max_body_bytes=64, max_requests=3, auth_timeout=50.0)

FRAGMENTS = [
    b"GET / HTTP/1.1\r\n",
    b"POST /auth HTTP/1.1\r\n",
    b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n",
    b"HEAD / HTTP/1.0\r\n",
    b"Host: h\r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: 99999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"Cookie: webvpn=abc; x=y\r\n",
    b"\r\n",
    b"abc",
    b"3\r\nabc\r\n0\r\n\r\n",
    b"STF\x01\x00\x00\x07\x00",
]


def drive(chunks: list[bytes], answer: bool) -> None:
    door = FrontDoor(limits=SMALL, now=0.0)
    for i, chunk in enumerate(chunks):
        door.receive_data(chunk, float(i))
        while (event := door.next_event()) is not None:
            assert isinstance(event, Request | ConnectionClosed | ProtocolViolation | TimedOut)
            if isinstance(event, Request) and answer:
                status = 200 if event.method == "CONNECT" else 404
                door.send_response(Response(status, "X", ()))
                if status == 200:
                    door.tunnel_established()
                    return
        door.data_to_send()
        door.handle_timer(float(i))
        if door.should_close:
            return
    door.receive_data(b"", 99.0)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=300)
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=10), st.booleans())
def test_fuzz_arbitrary_bytes(data: bytes, cuts: list[int], answer: bool) -> None:
    drive(split(data, cuts), answer)


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=8), max_size=30),
    st.lists(st.integers(min_value=0), max_size=10),
    st.booleans(),
)
def test_fuzz_http_like_bytes(parts: list[bytes], cuts: list[int], answer: bool) -> None:
    drive(split(b"".join(parts), cuts), answer)
