"""Compression of tunnel packets: LZS, oc-lz4 and deflate, and their negotiation (sans-IO).

Reference: anyconnect-protocol.md §10. Off by default (``compression = false``): compressing
traffic before encrypting it lets an observer learn about the plaintext from the sizes of the
records (CRIME/BREACH-style), see docs/ocserv-keys.md (``compression``).
"""

from __future__ import annotations

from ocgate.compress._codec import (
    MIN_NO_COMPRESS_LIMIT,
    PRIORITY_NAMES,
    Channel,
    CompressionMethod,
    PacketCompression,
    negotiate_compression,
)
from ocgate.compress._deflate import DeflateCompressor, DeflateDecompressor
from ocgate.compress._lz4 import lz4_compress, lz4_decompress_untrusted
from ocgate.compress._lzs import LZS_WINDOW, lzs_compress, lzs_decompress_untrusted

__all__ = [
    "LZS_WINDOW",
    "MIN_NO_COMPRESS_LIMIT",
    "PRIORITY_NAMES",
    "Channel",
    "CompressionMethod",
    "DeflateCompressor",
    "DeflateDecompressor",
    "PacketCompression",
    "lz4_compress",
    "lz4_decompress_untrusted",
    "lzs_compress",
    "lzs_decompress_untrusted",
    "negotiate_compression",
]
