"""What the stateless decompressor targets (``fuzz_compress_lzs``, ``fuzz_compress_lz4``) share.

Their input: byte 0 picks the output limit from :data:`LIMITS`, the rest is a COMPRESSED payload.
The decoder may raise only ``BadCompressedData``, and what it returns never exceeds the limit;
:func:`decode_limited` checks both, and the target checks its own round trips on the result.

Imports ``ocgate``: import this module inside the target's ``atheris.instrument_imports()``.
"""

from __future__ import annotations

from collections.abc import Callable

from ocgate.errors import BadCompressedData

LIMITS = (1500, 1, 64, 576, 1280, 9000, 16384)
"""The output limits an input's first byte picks from (modulo their number)."""


def decode_limited(
    data: bytes, decompress_untrusted: Callable[[bytes, int], bytes], name: str
) -> tuple[int, bytes, bytes | None]:
    """Decode a non-empty input with ``decompress_untrusted`` (the codec ``name``):
    ``(limit, payload, output)``, the output ``None`` where the decoder refused the payload."""
    limit = LIMITS[data[0] % len(LIMITS)]
    payload = data[1:]
    try:
        out = decompress_untrusted(payload, limit)
    except BadCompressedData:
        return limit, payload, None
    assert len(out) <= limit, f"{name} output beyond the limit"
    return limit, payload, out
