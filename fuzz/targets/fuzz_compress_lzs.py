"""LZS: ``lzs_decompress_untrusted`` on peer bytes (only ``BadCompressedData``).

Input: byte 0 picks the output limit, the rest is a COMPRESSED payload. Oracles: the output never
exceeds the limit; whatever decodes re-compresses (both search depths) to a stream that decodes
to the same bytes; and the input itself, taken as a packet, round-trips through the compressor.
"""

from __future__ import annotations

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from _compress import decode_limited

    from ocgate.compress import lzs_compress, lzs_decompress_untrusted


def test_one_input(data: bytes) -> None:
    if not data:
        return
    limit, payload, out = decode_limited(data, lzs_decompress_untrusted, "LZS")
    if out is not None:
        for depth in (None, 2):
            again = lzs_compress(out, max_chain=depth)
            assert lzs_decompress_untrusted(again, max(limit, 1)) == out, "re-compression differs"
    packed = lzs_compress(payload, max_chain=8)
    assert lzs_decompress_untrusted(packed, max(len(payload), 1)) == payload, "round trip failed"


def seeds() -> list[bytes]:
    """openconnect's LZS streams (tests/vectors/compress) with a 16 KiB limit."""
    import json

    document = json.loads((_harness.VECTORS / "compress" / "lzs_openconnect.json").read_text())
    return [b"\x06" + bytes.fromhex(v["lzs"]) for v in document["vectors"]]


if __name__ == "__main__":
    _harness.main(test_one_input)
