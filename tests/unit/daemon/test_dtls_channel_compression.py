"""The worker's DTLS channel with negotiated compression (0x08 records), both directions.

COMPRESSED records leave the batch fast path for the reference path; packets still reach the
tunnel in order, and what the channel sends decompresses to what it was given.
"""

from __future__ import annotations

import pytest

from ocgate.compress import CompressionMethod, PacketCompression
from tests.unit.daemon.test_dtls_channel_fast import ADDR, _pair
from tests.unit.dtls.test_dtls_fastpath import IMPLS

BIG = bytes([0x45]) + bytes(8) + bytes([17]) + b"payload " * 100
SMALL = bytes([0x45]) + bytes(8) + bytes([1]) + bytes(74)
STATELESS = [CompressionMethod.LZ4, CompressionMethod.LZS]


def _codec(method: CompressionMethod) -> PacketCompression:
    return PacketCompression(method, no_compress_limit=256, limit=1400)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("method", STATELESS)
def test_sent_packets_are_compressed_in_order(impl: str, method: CompressionMethod) -> None:
    _, rig = _pair("psk", impl)
    rig.channel.compression = _codec(method)
    packets = [SMALL, BIG, BIG, SMALL, BIG]
    assert rig.channel.send_packets(packets, 0.0) == []
    for datagram in rig.sender.sent:
        rig.client.receive_datagram(datagram, 0.0)
    records = rig.client.received
    assert [r[0] for r in records] == [0x00, 0x08, 0x08, 0x00, 0x08]
    client = _codec(method)
    decoded = [r[1:] if r[0] == 0 else client.decompress_untrusted(r[1:]) for r in records]
    assert decoded == packets
    assert (rig.channel.tx_packets, rig.channel.tx_bytes) == (5, sum(map(len, packets)))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("method", STATELESS)
def test_received_compressed_records_take_the_reference_path(
    impl: str, method: CompressionMethod
) -> None:
    _, rig = _pair("psk", impl)
    rig.channel.compression = _codec(method)
    client = _codec(method)
    payload = client.compress(BIG)
    assert payload is not None
    raw = rig.client.raw_record
    batch = [
        raw(23, 1, b"\x00" + SMALL),
        raw(23, 1, b"\x08" + payload),
        raw(23, 1, b"\x00" + SMALL),
        raw(23, 1, b"\x08" + b"\xff\xff\xff"),  # does not decompress: dropped
        raw(23, 1, b"\x08" + payload),
    ]
    index = rig.channel.receive_fast(batch, 0, ADDR)
    while index < len(batch):
        rig.channel.datagram_received(batch[index], ADDR)
        index = rig.channel.receive_fast(batch, index + 1, ADDR)
    assert rig.packets == [SMALL, BIG, SMALL, BIG]
    assert rig.channel.dropped == 1
    assert rig.channel.rx_packets == 4


def test_without_negotiation_compressed_records_are_dropped() -> None:
    _, rig = _pair("psk", "python")
    rig.channel.datagram_received(rig.client.raw_record(23, 1, b"\x08\x00\x01"), ADDR)
    assert rig.packets == []
    assert rig.channel.dropped == 1
