"""CSTP frame codec: vectors, round trips, framing errors, bounded buffering, fuzz."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.cstp import FRAME_HEADER, Frame, FrameDecoder, PacketType, encode_frame
from ocgate.errors import BadFrame, LocalProtocolError

VECTORS = Path(__file__).parents[2] / "vectors" / "cstp"


def vector(name: str) -> bytes:
    return bytes.fromhex((VECTORS / name).read_text().strip())


def test_header_layout() -> None:
    assert FRAME_HEADER.size == 8
    assert encode_frame(PacketType.DPD_REQ) == b"STF\x01\x00\x00\x03\x00"
    assert encode_frame(PacketType.DATA, b"ab") == b"STF\x01\x00\x02\x00\x00ab"
    assert encode_frame(0x42, bytes(300))[4:8] == b"\x01\x2c\x42\x00"


def test_packet_type_values() -> None:
    assert {t.name: int(t) for t in PacketType} == {
        "DATA": 0,
        "DPD_REQ": 3,
        "DPD_RESP": 4,
        "DISCONNECT": 5,
        "KEEPALIVE": 7,
        "COMPRESSED": 8,
        "TERMINATE": 9,
    }


@pytest.mark.parametrize(
    ("name", "ptype", "payload"),
    [
        ("oc_dpd_req.hex", PacketType.DPD_REQ, b""),
        ("oc_dpd_resp_to_16.hex", PacketType.DPD_RESP, b""),
        ("oc_bye_sigint.hex", PacketType.DISCONNECT, b"\xb0Aborted by caller"),
        ("server_dpd_req_16.hex", PacketType.DPD_REQ, bytes(range(16))),
    ],
)
def test_openconnect_vectors_decode_and_reencode(name: str, ptype: int, payload: bytes) -> None:
    raw = vector(name)
    assert FrameDecoder().feed_untrusted(raw) == [Frame(ptype, payload)]
    assert encode_frame(ptype, payload) == raw


def test_openconnect_data_vector() -> None:
    raw = vector("oc_data_ipv4_udp.hex")
    (frame,) = FrameDecoder().feed_untrusted(raw)
    assert frame.type == PacketType.DATA
    assert len(frame.payload) == 34
    assert frame.payload[0] >> 4 == 4
    assert frame.payload.endswith(b"ocgate")


def test_every_split_point_reassembles() -> None:
    stream = b"".join(
        [
            vector("oc_data_ipv4_udp.hex"),
            vector("oc_dpd_req.hex"),
            encode_frame(PacketType.DATA, bytes(range(200))),
            vector("oc_bye_sigint.hex"),
        ]
    )
    expected = FrameDecoder().feed_untrusted(stream)
    assert len(expected) == 4
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        got = decoder.feed_untrusted(stream[:cut]) + decoder.feed_untrusted(stream[cut:])
        assert got == expected
        assert decoder.buffered == 0


def test_byte_by_byte() -> None:
    raw = encode_frame(PacketType.KEEPALIVE) + encode_frame(PacketType.DATA, b"xyz")
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for i in range(len(raw)):
        frames += decoder.feed_untrusted(raw[i : i + 1])
    assert frames == [Frame(PacketType.KEEPALIVE, b""), Frame(PacketType.DATA, b"xyz")]


def test_accepts_bytearray_and_memoryview() -> None:
    raw = encode_frame(PacketType.DATA, b"abc")
    assert FrameDecoder().feed_untrusted(bytearray(raw)) == [Frame(0, b"abc")]
    assert FrameDecoder().feed_untrusted(memoryview(raw)) == [Frame(0, b"abc")]


def test_unknown_types_are_returned() -> None:
    assert FrameDecoder().feed_untrusted(encode_frame(0x7F, b"?")) == [Frame(0x7F, b"?")]


@pytest.mark.parametrize(
    "raw",
    [
        b"XTF\x01\x00\x00\x03\x00",
        b"STF\x02\x00\x00\x03\x00",
        b"STF\x01\x00\x00\x03\x01",
        b"STF\x01\x40\x01\x00\x00",  # 16385 > default max
        b"GET / HTTP/1.1\r\n",
        b"X",  # a partial header is checked as soon as it arrives
        b"ST\x00",
    ],
)
def test_bad_frames(raw: bytes) -> None:
    decoder = FrameDecoder()
    with pytest.raises(BadFrame) as info:
        decoder.feed_untrusted(raw)
    assert info.value.reason
    with pytest.raises(BadFrame):
        decoder.feed_untrusted(encode_frame(PacketType.DATA))


def test_bad_header_completed_across_calls() -> None:
    decoder = FrameDecoder()
    assert decoder.feed_untrusted(b"STF\x01\x00") == []
    with pytest.raises(BadFrame, match="reserved"):
        decoder.feed_untrusted(b"\x00\x00\x07")


def test_oversize_length_refused_before_payload_arrives() -> None:
    decoder = FrameDecoder(max_payload=1400)
    with pytest.raises(BadFrame, match="exceeds"):
        decoder.feed_untrusted(b"STF\x01\x05\x79\x00\x00")  # 1401
    assert decoder.buffered == 0


def test_frames_before_an_error_are_kept_by_decode_into() -> None:
    types: list[int] = []
    payloads: list[bytes] = []
    data = encode_frame(PacketType.DATA, b"ok") + b"junkjunk"
    with pytest.raises(BadFrame):
        FrameDecoder().decode_into_untrusted(data, types, payloads)
    assert (types, payloads) == ([0], [b"ok"])


def test_buffering_is_bounded_by_one_frame() -> None:
    decoder = FrameDecoder(max_payload=2000)
    big = encode_frame(PacketType.DATA, bytes(2000))
    assert decoder.feed_untrusted(big[:-1]) == []
    assert decoder.buffered == len(big) - 1 < 8 + 2000
    frames = decoder.feed_untrusted(big[-1:] + big + big[:5])
    assert len(frames) == 2
    assert decoder.buffered == 5


def test_max_payload_is_configurable() -> None:
    decoder = FrameDecoder(max_payload=65535)
    assert decoder.max_payload == 65535
    raw = encode_frame(PacketType.DATA, bytes(65535))
    assert decoder.feed_untrusted(raw)[0].payload == bytes(65535)


@pytest.mark.parametrize("bad", [0, -1, 65536])
def test_max_payload_limits(bad: int) -> None:
    with pytest.raises(LocalProtocolError):
        FrameDecoder(max_payload=bad)


def test_encode_limits() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(PacketType.DATA, bytes(65536))
    with pytest.raises(LocalProtocolError):
        encode_frame(256)
    with pytest.raises(LocalProtocolError):
        encode_frame(-1)


frames_strategy = st.lists(
    st.tuples(st.integers(0, 255), st.binary(max_size=300)), min_size=0, max_size=8
)


@given(frames=frames_strategy, cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_roundtrip_any_split(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(t, p) for t, p in frames)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    decoder = FrameDecoder()
    got: list[Frame] = []
    for chunk in chunks:
        got += decoder.feed_untrusted(chunk)
    assert got == [Frame(t, p) for t, p in frames]
    assert decoder.buffered == 0


@given(chunks=st.lists(st.binary(max_size=64), max_size=8), limit=st.integers(1, 100))
def test_fuzz_only_bad_frame_escapes(chunks: list[bytes], limit: int) -> None:
    decoder = FrameDecoder(max_payload=limit)
    try:
        for chunk in chunks:
            for frame in decoder.feed_untrusted(b"STF\x01" + chunk if chunk[:1] == b"+" else chunk):
                assert len(frame.payload) <= limit
            assert decoder.buffered < 8 + limit
    except BadFrame:
        pass
