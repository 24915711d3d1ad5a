"""CSTP deflate: ``DeflateDecompressor.decompress_untrusted`` over a stream of payloads.

Input: operations (``_harness.ops``); each payload is one COMPRESSED frame from the client, the
tag's low bit makes the target first deflate that payload with a real sender (so the stream and
its running Adler-32 stay valid and later frames reach deeper states), else it goes as it is.
Only ``BadCompressedData`` may escape, and after it the stream is abandoned (the tunnel ends).
Oracles: output never exceeds the limit; frames built by the sender decode to their input while
the stream is intact.
"""

from __future__ import annotations

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.compress import DeflateCompressor, DeflateDecompressor
    from ocgate.errors import BadCompressedData

_LIMIT = 1500


def test_one_input(data: bytes) -> None:
    sender, receiver = DeflateCompressor(), DeflateDecompressor()
    intact = True
    for tag, payload in _harness.ops(data):
        built = tag & 1 and len(payload) <= _LIMIT - 64
        frame = sender.compress(payload) if built else payload
        if not built:
            intact = False  # a raw frame may be valid; the sender's state no longer matches
        try:
            out = receiver.decompress_untrusted(frame, _LIMIT)
        except BadCompressedData:
            assert not intact, "a frame the sender built was refused"
            return
        assert len(out) <= _LIMIT, "deflate output beyond the limit"
        if intact:
            assert out == payload, "a frame the sender built decoded wrongly"


def seeds() -> list[bytes]:
    """Real packets of the LZS vectors, deflated by the sender and as raw frames."""
    import json

    document = json.loads((_harness.VECTORS / "compress" / "lzs_openconnect.json").read_text())
    plains = [bytes.fromhex(v["plain"])[:1400] for v in document["vectors"]]
    sender = DeflateCompressor()
    raw = [_harness.op(0, sender.compress(p)) for p in plains[:8]]
    return [b"".join(_harness.op(1, p) for p in plains[:10]), b"".join(raw)]


if __name__ == "__main__":
    _harness.main(test_one_input)
