"""CSTP framing: ``FrameDecoder.feed_untrusted`` / ``decode_into_untrusted`` (only ``BadFrame``).

Input: operations; each payload is one read from the TLS stream (tag bit 0 picks the API, the
first operation's tag also picks ``max_payload``). Oracle: the same stream fed in one piece to a
second decoder gives the same frames and fails (or not) the same way (``feed_untrusted`` drops the
frames of the call that fails), and re-encoding the frames gives back the stream up to the failure
point or the held partial frame.
"""

from __future__ import annotations

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.cstp import FrameDecoder, encode_frame
    from ocgate.errors import BadFrame

_MAX_PAYLOADS = (16384, 1, 8, 1400, 65535)


def _decode(
    decoder: FrameDecoder, chunks: list[bytes], use_lists: bool
) -> tuple[list[tuple[int, bytes]], bool]:
    frames: list[tuple[int, bytes]] = []
    for chunk in chunks:
        types: list[int] = []
        payloads: list[bytes] = []
        try:
            if use_lists:
                decoder.decode_into_untrusted(chunk, types, payloads)
            else:
                frames += [(f.type, f.payload) for f in decoder.feed_untrusted(chunk)]
        except BadFrame:
            frames += zip(types, payloads, strict=True)
            return frames, True
        frames += zip(types, payloads, strict=True)
    return frames, False


def test_one_input(data: bytes) -> None:
    operations = list(_harness.ops(data))
    if not operations:
        return
    max_payload = _MAX_PAYLOADS[operations[0][0] % len(_MAX_PAYLOADS)]
    chunks = [payload for _, payload in operations]
    split = FrameDecoder(max_payload)
    use_lists = bool(operations[0][0] & 1)
    frames, failed = _decode(split, chunks, use_lists=use_lists)
    whole = FrameDecoder(max_payload)
    frames_whole, failed_whole = _decode(whole, [b"".join(chunks)], use_lists=True)
    if use_lists or not failed:
        assert (frames, failed) == (frames_whole, failed_whole), "split and whole stream differ"
    else:  # feed_untrusted drops the frames of the call that failed.
        assert failed_whole
        assert frames == frames_whole[: len(frames)]
    encoded = b"".join(encode_frame(t, p) for t, p in frames_whole)
    stream = b"".join(chunks)
    assert stream.startswith(encoded), "frames do not re-encode to the stream"
    assert all(len(p) <= max_payload for _, p in frames)
    if failed:
        try:
            split.feed_untrusted(b"")
        except BadFrame:
            pass
        else:
            raise AssertionError("a failed decoder accepted more input")
    else:
        assert split.buffered == len(stream) - len(encoded) < 8 + max_payload


def seeds() -> list[bytes]:
    """openconnect 9.01's frames (tests/vectors/cstp), whole, concatenated and split mid-header."""
    directory = _harness.VECTORS / "cstp"
    frames = [_harness.hex_vector(p) for p in sorted(directory.glob("*.hex"))]
    stream = b"".join(frames)
    out = [b"".join(_harness.op(0, f) for f in frames)]
    out.append(_harness.op(1, stream))
    out.append(b"".join(_harness.op(3, stream[i : i + 5]) for i in range(0, len(stream), 5)))
    out += [_harness.op(0, f[:3]) + _harness.op(0, f[3:]) for f in frames]
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
