"""CstpConnection with negotiated compression: COMPRESSED frames in both directions."""

from __future__ import annotations

import pytest

from ocgate.compress import CompressionMethod, PacketCompression
from ocgate.cstp import (
    CstpConnection,
    CstpState,
    FrameDecoder,
    PacketsReceived,
    PacketType,
    ProtocolFailed,
    encode_frame,
)

BIG = bytes([0x45]) + bytes(8) + bytes([17]) + b"payload " * 100  # 810-byte IPv4/UDP
SMALL = bytes([0x45]) + bytes(8) + bytes([1]) + bytes(74)  # 84-byte ping
METHODS = list(CompressionMethod)


def server(method: CompressionMethod, *, idle: int | None = None) -> CstpConnection:
    codec = PacketCompression(method, no_compress_limit=256, limit=1500)
    return CstpConnection(
        now=0.0, dpd=0, keepalive=30, idle_timeout=idle, session_deadline=None, compression=codec
    )


def sent_frames(conn: CstpConnection) -> list[tuple[int, bytes]]:
    out = []
    for record in conn.frames_to_send():
        (frame,) = FrameDecoder(65535).feed_untrusted(record)
        out.append((frame.type, frame.payload))
    return out


@pytest.mark.parametrize("method", METHODS)
def test_large_packets_go_compressed_small_ones_plain(method: CompressionMethod) -> None:
    conn = server(method)
    conn.send_packets([SMALL, BIG, SMALL], now=1.0)
    frames = sent_frames(conn)
    assert [t for t, _ in frames] == [PacketType.DATA, PacketType.COMPRESSED, PacketType.DATA]
    client = PacketCompression(method, no_compress_limit=256, limit=1500)
    assert client.decompress_untrusted(frames[1][1]) == BIG
    assert (conn.tx_packets, conn.tx_bytes) == (3, 2 * len(SMALL) + len(BIG))


@pytest.mark.parametrize("method", METHODS)
def test_compressed_frames_are_delivered_in_order(method: CompressionMethod) -> None:
    conn = server(method)
    client = PacketCompression(method, no_compress_limit=256, limit=1500)
    payload = client.compress(BIG)
    assert payload is not None
    data = (
        encode_frame(PacketType.DATA, SMALL)
        + encode_frame(PacketType.COMPRESSED, payload)
        + encode_frame(PacketType.DATA, SMALL)
    )
    conn.receive_data(data, 1.0)
    assert conn.next_event() == PacketsReceived([SMALL, BIG, SMALL])
    assert conn.rx_packets == 3


def test_bad_compressed_frame_ends_the_connection() -> None:
    conn = server(CompressionMethod.LZS)
    conn.receive_data(encode_frame(PacketType.COMPRESSED, b"\xff\xff\xff"), 1.0)
    event = conn.next_event()
    assert isinstance(event, ProtocolFailed)
    assert "COMPRESSED" in event.message
    assert conn.state is CstpState.CLOSED


def test_compressed_frame_beyond_the_mtu_ends_the_connection() -> None:
    conn = server(CompressionMethod.LZ4)
    payload = PacketCompression(CompressionMethod.LZ4, no_compress_limit=64, limit=9000).compress(
        bytes(3000)
    )
    assert payload is not None
    conn.receive_data(encode_frame(PacketType.COMPRESSED, payload), 1.0)
    assert isinstance(conn.next_event(), ProtocolFailed)


def test_outbound_compressed_traffic_counts_for_idle() -> None:
    conn = server(CompressionMethod.LZ4, idle=60)
    conn.send_packets([BIG], now=50.0)
    assert conn.get_timer() == 110.0
