"""oc-lz4, deflate with its running Adler-32, negotiation and the per-channel codec."""

from __future__ import annotations

import zlib

import lz4.block
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.compress import (
    Channel,
    CompressionMethod,
    DeflateCompressor,
    DeflateDecompressor,
    PacketCompression,
    lz4_compress,
    lz4_decompress_untrusted,
    negotiate_compression,
)
from ocgate.errors import BadCompressedData, LocalProtocolError

LZ4, LZS, DEFLATE = CompressionMethod.LZ4, CompressionMethod.LZS, CompressionMethod.DEFLATE
PACKET = bytes(range(20)) + b"hello world " * 40


# -- oc-lz4 --------------------------------------------------------------------------------------


def test_lz4_is_a_raw_block_without_size_prefix() -> None:
    packed = lz4_compress(PACKET)
    # The reference library, told the size out of band, reads it back: no header, no prefix.
    assert lz4.block.decompress(packed, uncompressed_size=len(PACKET)) == PACKET
    assert lz4_decompress_untrusted(packed, 1500) == PACKET


def test_lz4_output_is_bounded() -> None:
    packed = lz4_compress(bytes(4000))
    with pytest.raises(BadCompressedData):
        lz4_decompress_untrusted(packed, 3999)


@pytest.mark.parametrize("data", [b"", b"\xff", b"\xf0" + b"\xff" * 20, b"\x1fa\x01\x00"])
def test_lz4_garbage_raises_bad_compressed_data(data: bytes) -> None:
    with pytest.raises(BadCompressedData):
        lz4_decompress_untrusted(data, 1500)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_lz4_any_bytes_raise_only_bad_compressed_data(data: bytes) -> None:
    try:
        out = lz4_decompress_untrusted(data, 1500)
    except BadCompressedData:
        return
    assert len(out) <= 1500


# -- deflate -------------------------------------------------------------------------------------


def test_deflate_payload_is_sync_flushed_stream_plus_running_adler32() -> None:
    sender = DeflateCompressor()
    first, second = PACKET, PACKET[::-1]
    p1, p2 = sender.compress(first), sender.compress(second)
    assert p1[-8:-4] == b"\x00\x00\xff\xff"
    assert int.from_bytes(p1[-4:], "big") == zlib.adler32(first)
    assert int.from_bytes(p2[-4:], "big") == zlib.adler32(first + second)
    # An independent raw inflater with a 4 KiB window (openconnect's) reads the stream.
    inflater = zlib.decompressobj(-12)
    assert inflater.decompress(p1[:-4]) == first
    assert inflater.decompress(p2[:-4]) == second


def test_deflate_round_trip_is_stateful() -> None:
    sender, receiver = DeflateCompressor(), DeflateDecompressor()
    payloads = [sender.compress(PACKET) for _ in range(3)]
    assert len(payloads[2]) < len(payloads[0])  # the history made the repeat cheap
    assert [receiver.decompress_untrusted(p, 1500) for p in payloads] == [PACKET] * 3


def test_deflate_receiver_accepts_a_peer_stream_with_a_larger_window() -> None:
    peer = zlib.compressobj(6, zlib.DEFLATED, -15, 9)
    body = peer.compress(PACKET) + peer.flush(zlib.Z_SYNC_FLUSH)
    payload = body + zlib.adler32(PACKET).to_bytes(4, "big")
    assert DeflateDecompressor().decompress_untrusted(payload, 1500) == PACKET


def test_deflate_adler_mismatch_and_garbage_raise() -> None:
    payload = DeflateCompressor().compress(PACKET)
    broken = payload[:-1] + bytes([payload[-1] ^ 1])
    with pytest.raises(BadCompressedData, match="adler32"):
        DeflateDecompressor().decompress_untrusted(broken, 1500)
    with pytest.raises(BadCompressedData, match="shorter"):
        DeflateDecompressor().decompress_untrusted(b"\x00\x01", 1500)
    with pytest.raises(BadCompressedData, match="deflate"):
        DeflateDecompressor().decompress_untrusted(b"\xff\xff\xff\xff\x00\x00\x00\x01", 1500)


def test_deflate_output_is_bounded() -> None:
    payload = DeflateCompressor().compress(bytes(5000))
    with pytest.raises(BadCompressedData, match="limit"):
        DeflateDecompressor().decompress_untrusted(payload, 1500)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_deflate_any_bytes_raise_only_bad_compressed_data(data: bytes) -> None:
    try:
        out = DeflateDecompressor().decompress_untrusted(data, 1500)
    except BadCompressedData:
        return
    assert len(out) <= 1500


# -- negotiation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "priority", "channel", "expected"),
    [
        ("oc-lz4,lzs", [LZ4, LZS], Channel.CSTP, LZ4),  # openconnect's default offer
        ("oc-lz4,lzs", [LZS, LZ4], Channel.DTLS, LZS),  # the server's order decides
        ("lzs", [LZ4, LZS], Channel.CSTP, LZS),  # openconnect restricted / Cisco DTLS
        ("lzs,deflate", [LZ4, LZS], Channel.CSTP, LZS),  # Cisco Secure Client CSTP
        ("lzs,deflate", [DEFLATE, LZS], Channel.CSTP, DEFLATE),
        ("lzs,deflate", [DEFLATE], Channel.DTLS, None),  # deflate never on DTLS
        (" OC-LZ4 , lzs ", [LZ4], Channel.CSTP, LZ4),
        ("gzip", [LZ4, LZS], Channel.CSTP, None),
        (None, [LZ4, LZS], Channel.CSTP, None),
        ("oc-lz4,lzs", [], Channel.CSTP, None),  # compression off
    ],
)
def test_negotiation_by_server_priority(
    offer: str | None,
    priority: list[CompressionMethod],
    channel: Channel,
    expected: CompressionMethod | None,
) -> None:
    assert negotiate_compression(offer, priority, channel) is expected


# -- the per-channel codec -----------------------------------------------------------------------


@pytest.mark.parametrize("method", [LZ4, LZS, DEFLATE])
def test_codec_round_trip_and_no_compress_limit(method: CompressionMethod) -> None:
    tx = PacketCompression(method, no_compress_limit=256, limit=1500)
    rx = PacketCompression(method, no_compress_limit=256, limit=1500)
    assert tx.compress(PACKET[:256]) is None  # at or below the limit: plain DATA
    payload = tx.compress(PACKET)
    assert payload is not None
    assert len(payload) < len(PACKET)
    assert rx.decompress_untrusted(payload) == PACKET


def test_codec_minimum_limit_and_incompressible_packets() -> None:
    codec = PacketCompression(LZS, no_compress_limit=0, limit=1500)
    assert codec.no_compress_limit == 64  # ocserv MIN_NO_COMPRESS_LIMIT
    noise = bytes((i * 151 + 7) % 256 for i in range(200))
    assert codec.compress(noise) is None  # LZS would grow it: sent as DATA
    with pytest.raises(LocalProtocolError):
        PacketCompression(LZ4, no_compress_limit=256, limit=0)


def test_codec_deflate_leaves_packets_near_the_limit_uncompressed() -> None:
    codec = PacketCompression(DEFLATE, no_compress_limit=64, limit=1500)
    assert codec.compress(bytes(1480)) is None
    assert codec.compress(bytes(1400)) is not None


def test_codec_decompression_is_bounded_by_the_mtu() -> None:
    big = PacketCompression(LZ4, no_compress_limit=64, limit=9000).compress(bytes(2000))
    assert big is not None
    with pytest.raises(BadCompressedData):
        PacketCompression(LZ4, no_compress_limit=64, limit=1500).decompress_untrusted(big)
