"""oc-lz4: ``lz4_decompress_untrusted`` on peer bytes (only ``BadCompressedData``).

Input: byte 0 picks the output limit, the rest is a COMPRESSED payload. Oracles: the output never
exceeds the limit and re-compresses to a block that decodes to the same bytes; the input itself,
taken as a packet, round-trips.
"""

from __future__ import annotations

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.compress import lz4_compress, lz4_decompress_untrusted
    from ocgate.errors import BadCompressedData

_LIMITS = (1500, 1, 64, 576, 1280, 9000, 16384)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    limit = _LIMITS[data[0] % len(_LIMITS)]
    payload = data[1:]
    try:
        out = lz4_decompress_untrusted(payload, limit)
    except BadCompressedData:
        out = None
    if out is not None:
        assert len(out) <= limit, "LZ4 output beyond the limit"
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
