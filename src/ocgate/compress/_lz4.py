"""``oc-lz4``: one raw LZ4 block per packet, no frame header and no size prefix (pure).

anyconnect-protocol.md §10; openconnect ``LZ4_compress_default`` / ``LZ4_decompress_safe``. The
``lz4`` package wraps the reference C library; its block decoder writes into a buffer of exactly
``limit`` bytes and fails on anything that would overrun it, so a peer's payload can never grow
past the MTU.
"""

from __future__ import annotations

import lz4.block

from ocgate.errors import BadCompressedData

__all__ = ["lz4_compress", "lz4_decompress_untrusted"]


def lz4_compress(data: bytes) -> bytes:
    """One packet as a raw LZ4 block (LZ4's default, fast mode)."""
    result: bytes = lz4.block.compress(data, store_size=False)
    return result


def lz4_decompress_untrusted(data: bytes, limit: int) -> bytes:
    """Decode one raw LZ4 block from the peer into at most ``limit`` bytes.

    :raises BadCompressedData: the block is empty, corrupt or decodes to more than ``limit``.
    """
    if not data:
        raise BadCompressedData("empty LZ4 block")
    try:
        result: bytes = lz4.block.decompress(data, uncompressed_size=limit)
    except (lz4.block.LZ4BlockError, ValueError, MemoryError) as exc:
        raise BadCompressedData(f"bad LZ4 block: {exc}") from None
    return result
