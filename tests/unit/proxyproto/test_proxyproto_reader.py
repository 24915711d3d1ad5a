"""The per-connection reader: pieces, one event, the time limit, the bytes after the header."""

from __future__ import annotations

import random

import pytest

from ocgate.proxyproto import (
    HEADER_TIMEOUT,
    V1_MAX_LINE,
    Command,
    HeaderReceived,
    HeaderRefused,
    ProxyHeaderReader,
)

V1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"  # proxy-protocol.txt §2.1's example.
V2 = bytes.fromhex("0D0A0D0A000D0A515549540A2111000CC6120002C61200019C4001BB")
TLS = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40)


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
@pytest.mark.parametrize("seed", range(5))
def test_any_split_gives_one_event_with_the_bytes_after_the_header(
    header: bytes, seed: int
) -> None:
    stream = header + TLS
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(stream)), 4))
    reader = ProxyHeaderReader(now=0.0)
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    events = []
    taken = 0
    for piece in pieces:
        reader.receive_data(piece, 1.0)
        taken += len(piece)
        event = reader.next_event()
        if event is not None:
            events.append(event)
            break
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, HeaderReceived)
    assert event.header.command is Command.PROXY
    assert event.header.length == len(header)
    # What came with the piece that completed the header is the client's; the rest follows.
    assert event.data == stream[len(header) : taken]
    assert reader.done
    assert reader.get_timer() is None
    reader.receive_data(b"more", 2.0)  # Not the reader's any more.
    assert reader.next_event() is None


def test_a_direct_tls_client_is_refused_at_its_first_byte() -> None:
    reader = ProxyHeaderReader(now=0.0)
    reader.receive_data(TLS[:1], 0.1)
    event = reader.next_event()
    assert isinstance(event, HeaderRefused)
    assert "neither the v1 nor the v2 signature" in event.reason
    assert reader.next_event() is None


def test_a_header_that_does_not_complete_in_time_is_refused() -> None:
    reader = ProxyHeaderReader(now=100.0)
    assert reader.get_timer() == 100.0 + HEADER_TIMEOUT == 110.0
    reader.receive_data(V2[:20], 101.0)
    reader.handle_timer(109.9)  # Early: nothing yet.
    assert reader.next_event() is None
    reader.handle_timer(110.0)
    event = reader.next_event()
    assert isinstance(event, HeaderRefused)
    assert event.reason == "no complete PROXY protocol header in time"
    assert reader.get_timer() is None
    reader.handle_timer(200.0)
    assert reader.next_event() is None


def test_bytes_arriving_after_the_deadline_do_not_rescue_a_late_header() -> None:
    reader = ProxyHeaderReader(now=0.0, timeout=3.0)
    reader.receive_data(V1[:10], 1.0)
    reader.receive_data(V1[10:20], 3.5)
    event = reader.next_event()
    assert isinstance(event, HeaderRefused)


def test_a_complete_header_wins_even_at_the_deadline() -> None:
    reader = ProxyHeaderReader(now=0.0, timeout=3.0)
    reader.receive_data(V1, 3.0)
    assert isinstance(reader.next_event(), HeaderReceived)


def test_a_line_that_never_ends_is_refused_at_its_bound() -> None:
    reader = ProxyHeaderReader(now=0.0)
    reader.receive_data(b"PROXY UNKNOWN ", 0.0)
    fed = 14
    while not reader.done:
        reader.receive_data(b"x", 0.0)
        fed += 1
        assert fed <= V1_MAX_LINE
    assert fed == V1_MAX_LINE
    event = reader.next_event()
    assert isinstance(event, HeaderRefused)
    assert "no CRLF" in event.reason
