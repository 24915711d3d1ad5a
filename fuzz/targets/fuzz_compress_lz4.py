"""oc-lz4: ``lz4_decompress_untrusted`` on peer bytes (only ``BadCompressedData``).

Input: byte 0 picks the output limit, the rest is a COMPRESSED payload. Oracles: the output never
exceeds the limit and re-compresses to a block that decodes to the same bytes; the input itself,
taken as a packet, round-trips.
"""

from __future__ import annotations

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from _compress import decode_limited

    from ocgate.compress import lz4_compress, lz4_decompress_untrusted


def test_one_input(data: bytes) -> None:
    if not data:
        return
    limit, payload, out = decode_limited(data, lz4_decompress_untrusted, "LZ4")
    if out:
        assert lz4_decompress_untrusted(lz4_compress(out), limit) == out
    if payload:
        packed = lz4_compress(payload)
        assert lz4_decompress_untrusted(packed, len(payload)) == payload, "round trip failed"


def seeds() -> list[bytes]:
    """LZ4 blocks of the plaintexts of the LZS vectors (tests/vectors/compress)."""
    import json

    document = json.loads((_harness.VECTORS / "compress" / "lzs_openconnect.json").read_text())
    plains = [bytes.fromhex(v["plain"]) for v in document["vectors"]]
    return [b"\x06" + lz4_compress(p) for p in plains if p]


if __name__ == "__main__":
    _harness.main(test_one_input)
