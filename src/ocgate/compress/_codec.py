"""Negotiating a compression method and compressing packets on one channel (pure).

Theory of operation (anyconnect-protocol.md §10; ocserv ``src/worker-http.c``
``header_value_check`` / ``src/worker-vpn.c`` and ``src/config.c`` ``compression-algo-priority``):

* The client lists what it accepts in ``X-CSTP-Accept-Encoding`` and ``X-DTLS-Accept-Encoding``
  (openconnect: ``oc-lz4,lzs``; Cisco Secure Client: ``lzs,deflate`` on CSTP, ``lzs`` on DTLS).
  With ``compression = true`` the server picks, per channel, the offered method that comes first
  in ``compression-algo-priority`` (``lz4:lzs``; ocgate also knows ``deflate``, CSTP only) and
  names it in ``X-CSTP-Content-Encoding`` / ``X-DTLS-Content-Encoding``; nothing offered or
  ``compression = false`` (the default) means no header and no compression.
* To the client, a packet longer than ``no-compress-limit`` is compressed; LZS and LZ4 output is
  used only when smaller than the packet (else it goes as plain DATA, as openconnect does). Packets
  at or below the limit always go as DATA. LZS is only tried on packets that LZ4 (C) can shrink:
  the pure-Python LZS coder costs about a millisecond on an incompressible packet, LZ4
  microseconds. Deflate is stateful: once compressed, always sent.
* From the client, a COMPRESSED (0x08) payload is decompressed into at most ``limit`` bytes (the
  channel's largest packet): a bad one raises :class:`~ocgate.errors.BadCompressedData`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from ocgate.compress._deflate import DeflateCompressor, DeflateDecompressor
from ocgate.compress._lz4 import lz4_compress, lz4_decompress_untrusted
from ocgate.compress._lzs import lzs_compress, lzs_decompress_untrusted
from ocgate.errors import LocalProtocolError

__all__ = [
    "MIN_NO_COMPRESS_LIMIT",
    "PRIORITY_NAMES",
    "Channel",
    "CompressionMethod",
    "PacketCompression",
    "negotiate_compression",
]

MIN_NO_COMPRESS_LIMIT = 64
"""ocserv ``MIN_NO_COMPRESS_LIMIT``: a smaller ``no-compress-limit`` is raised to this."""


class CompressionMethod(enum.Enum):
    """The encodings, by their wire token in the ``*-Encoding`` headers."""

    LZ4 = "oc-lz4"
    LZS = "lzs"
    DEFLATE = "deflate"


class Channel(enum.Enum):
    CSTP = "cstp"
    DTLS = "dtls"


PRIORITY_NAMES: dict[str, CompressionMethod] = {
    "lz4": CompressionMethod.LZ4,
    "lzs": CompressionMethod.LZS,
    "deflate": CompressionMethod.DEFLATE,
}
"""The names ``compression-algo-priority`` accepts (ocserv: ``lz4``, ``lzs``)."""

_DEFLATE_SLACK = 64
"""More than deflate can add to a packet of a few KiB (block headers, sync flush, Adler-32)."""
_STATEFUL = frozenset({CompressionMethod.DEFLATE})


def negotiate_compression(
    offer: str | None, priority: Sequence[CompressionMethod], channel: Channel
) -> CompressionMethod | None:
    """The method for ``channel``: the first of ``priority`` the client's ``offer`` lists.

    :param offer: the raw ``X-CSTP-Accept-Encoding`` or ``X-DTLS-Accept-Encoding`` value.
    :param priority: the server's order (empty: compression is off).
    """
    if not offer:
        return None
    offered = {token.strip().lower() for token in offer.split(",")}
    for method in priority:
        if method in _STATEFUL and channel is not Channel.CSTP:
            continue  # Deflate needs an ordered, lossless channel.
        if method.value in offered:
            return method
    return None


class PacketCompression:
    """One channel's compression state, both directions.

    :param method: the negotiated method.
    :param no_compress_limit: packets of at most this many bytes go uncompressed.
    :param limit: the largest packet a COMPRESSED payload may decompress to.
    """

    __slots__ = ("_deflate_in", "_deflate_out", "limit", "method", "no_compress_limit")

    def __init__(self, method: CompressionMethod, *, no_compress_limit: int, limit: int) -> None:
        if limit < 1:
            raise LocalProtocolError("the decompression limit must be positive")
        self.method = method
        self.no_compress_limit = max(no_compress_limit, MIN_NO_COMPRESS_LIMIT)
        self.limit = limit
        self._deflate_out: DeflateCompressor | None = None
        self._deflate_in: DeflateDecompressor | None = None
        if method is CompressionMethod.DEFLATE:
            self._deflate_out = DeflateCompressor()
            self._deflate_in = DeflateDecompressor()

    def compress(self, packet: bytes) -> bytes | None:
        """The COMPRESSED payload for ``packet``, or ``None`` to send it as plain DATA."""
        if len(packet) <= self.no_compress_limit:
            return None
        if self._deflate_out is not None:
            if len(packet) > self.limit - _DEFLATE_SLACK:
                return None  # Its output might not fit a frame, and the stream cannot skip it.
            return self._deflate_out.compress(packet)
        out = lz4_compress(packet)
        if self.method is CompressionMethod.LZS:
            # LZ4 (C, microseconds) is the probe: a packet it cannot shrink (encrypted or
            # already compressed data) is not worth the pure-Python LZS coder's millisecond.
            if len(out) >= len(packet):
                return None
            out = lzs_compress(packet)
        return out if len(out) < len(packet) else None

    def decompress_untrusted(self, payload: bytes) -> bytes:
        """The IP packet inside one COMPRESSED payload from the client.

        :raises BadCompressedData: the payload does not decompress within :attr:`limit`.
        """
        if self._deflate_in is not None:
            return self._deflate_in.decompress_untrusted(payload, self.limit)
        if self.method is CompressionMethod.LZ4:
            return lz4_decompress_untrusted(payload, self.limit)
        return lzs_decompress_untrusted(payload, self.limit)
