"""Arbitrary and mutated bytes: ``pull_proxy_header_untrusted`` raises only ``BadProxyHeader``,
never reads past its bounds, and a split stream reads like the whole (STYLE rule 5)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ocgate.errors import BadProxyHeader
from ocgate.proxyproto import (
    MAX_HEADER,
    HeaderReceived,
    HeaderRefused,
    ProxyHeader,
    ProxyHeaderReader,
    pull_proxy_header_untrusted,
)

SEEDS = [
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n",
    b"PROXY UNKNOWN\r\n",
    bytes.fromhex("0D0A0D0A000D0A515549540A2111000CC6120002C61200019C4001BB"),
    bytes.fromhex("0D0A0D0A000D0A515549540A20000000"),
]


def _parse(data: bytes) -> ProxyHeader | None:
    try:
        header = pull_proxy_header_untrusted(data)
    except BadProxyHeader:
        return None
    if header is not None:
        assert 0 < header.length <= min(len(data), MAX_HEADER)
        assert (header.source is None) == (header.destination is None)
    return header


@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    _parse(data)


@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=4),
    st.binary(max_size=40),
)
def test_mutated_headers(seed: bytes, flips: list[tuple[int, int]], tail: bytes) -> None:
    data = bytearray(seed)
    for index, value in flips:
        if index < len(data):
            data[index] = value
    _parse(bytes(data) + tail)


@given(st.sampled_from(SEEDS), st.binary(max_size=40), st.lists(st.integers(1, 100), max_size=6))
def test_split_reads_like_whole(seed: bytes, tail: bytes, sizes: list[int]) -> None:
    stream = seed + tail
    whole = ProxyHeaderReader(now=0.0)
    whole.receive_data(stream, 0.0)
    expected = whole.next_event()
    reader = ProxyHeaderReader(now=0.0)
    offset = 0
    for size in [*sizes, len(stream)]:
        reader.receive_data(stream[offset : offset + size], 0.0)
        offset += size
        if reader.done:
            break
    event = reader.next_event()
    assert type(event) is type(expected)
    if isinstance(event, HeaderReceived):
        assert isinstance(expected, HeaderReceived)
        assert event.header == expected.header
        assert stream[event.header.length :].startswith(event.data)
    else:
        assert isinstance(event, HeaderRefused)
