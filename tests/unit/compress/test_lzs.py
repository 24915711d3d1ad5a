"""LZS against openconnect's own implementation (vectors with provenance in SOURCES.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.compress import lzs_compress, lzs_decompress_untrusted
from ocgate.errors import BadCompressedData, LocalProtocolError

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "compress" / "lzs_openconnect.json").read_text()
)["vectors"]
IDS = [v["name"] for v in VECTORS]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_decompresses_openconnect_output(vector: dict[str, str]) -> None:
    plain = bytes.fromhex(vector["plain"])
    assert lzs_decompress_untrusted(bytes.fromhex(vector["lzs"]), 65536) == plain


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_full_search_compresses_exactly_like_openconnect(vector: dict[str, str]) -> None:
    plain = bytes.fromhex(vector["plain"])
    assert lzs_compress(plain, max_chain=None).hex() == vector["lzs"]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_bounded_search_round_trips(vector: dict[str, str]) -> None:
    plain = bytes.fromhex(vector["plain"])
    packed = lzs_compress(plain, max_chain=4)
    assert lzs_decompress_untrusted(packed, len(plain)) == plain


def test_vectors_exercise_the_whole_format() -> None:
    """Long lengths, both offset forms and incompressible data are among the vectors."""
    by_name = {v["name"]: v for v in VECTORS}
    zeros = by_name["zeros 1500 (long length nibbles)"]
    assert len(zeros["lzs"]) // 2 < 100
    far = by_name["11-bit offsets"]
    assert len(far["lzs"]) < len(far["plain"]) * 0.6
    rand = by_name["random 200 (incompressible)"]
    assert len(rand["lzs"]) > len(rand["plain"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000) | st.lists(st.sampled_from(b"ab\x00"), max_size=3000).map(bytes))
def test_round_trip_any_input(data: bytes) -> None:
    assert lzs_decompress_untrusted(lzs_compress(data), max(len(data), 1)) == data


def test_output_limit_is_enforced() -> None:
    packed = lzs_compress(bytes(1000))
    assert lzs_decompress_untrusted(packed, 1000) == bytes(1000)
    with pytest.raises(BadCompressedData, match="limit"):
        lzs_decompress_untrusted(packed, 999)
    literals = lzs_compress(b"abcdefgh")
    with pytest.raises(BadCompressedData, match="limit"):
        lzs_decompress_untrusted(literals, 7)


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"", "end marker"),
        (b"\x30", "end marker"),  # one literal's first bits, then nothing
        (bytes.fromhex("c1"), "end marker"),  # 7-bit offset 2 cut short
        (bytes.fromhex("c08000"), "before the start"),  # match at offset 1 with no output yet
        (bytes.fromhex("a0000000"), "before the start"),  # 11-bit offset 0
        (bytes.fromhex("ffffffffffffffff"), "end marker|limit|before"),
    ],
)
def test_malformed_streams_raise_only_bad_compressed_data(stream: bytes, reason: str) -> None:
    with pytest.raises(BadCompressedData, match=reason):
        lzs_decompress_untrusted(stream, 1500)


def test_trailing_bytes_after_the_end_marker_are_ignored() -> None:
    assert lzs_decompress_untrusted(lzs_compress(b"abc") + b"\xff\xff", 10) == b"abc"


def test_overlapping_match_repeats_a_pattern() -> None:
    data = b"xyz" * 100
    packed = lzs_compress(data)
    assert len(packed) < 20
    assert lzs_decompress_untrusted(packed, 300) == data


def test_too_long_input_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        lzs_compress(bytes(65536))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_raise_only_bad_compressed_data(data: bytes) -> None:
    try:
        out = lzs_decompress_untrusted(data, 1500)
    except BadCompressedData:
        return
    assert len(out) <= 1500
