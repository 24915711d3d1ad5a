"""``deflate`` on CSTP: one raw deflate stream per direction for the whole CONNECT (pure).

Theory of operation (anyconnect-protocol.md §10; Cisco ASA and openconnect ``cstp.c``; ocserv
lacks it):

* Each direction keeps one zlib stream from the CONNECT to the end of that TLS connection (a
  reconnect starts both afresh). A packet's payload is the stream's output after
  ``Z_SYNC_FLUSH`` (it ends ``00 00 ff ff``), followed by the 4-byte big-endian Adler-32 of every
  uncompressed byte sent compressed so far in that direction (starting from 1).
* The sender uses raw deflate with a 4 KiB window (``wbits = -12``, memLevel 9, default level):
  openconnect inflates with that window. The receiver inflates with the largest window
  (``-15``), which accepts any smaller one.
* The stream is stateful, so a packet once compressed must be sent compressed (it cannot fall
  back to DATA the way LZS and LZ4 do when the output is not smaller).
* :meth:`DeflateDecompressor.decompress_untrusted` parses peer bytes: a corrupt stream, output
  beyond ``limit`` or a wrong running Adler-32 raise :class:`~ocgate.errors.BadCompressedData`;
  after that the stream is unusable and the tunnel must end (openconnect: "Compression (inflate)
  adler32 failure").
"""

from __future__ import annotations

import zlib

from ocgate.errors import BadCompressedData

__all__ = ["DeflateCompressor", "DeflateDecompressor"]

_SEND_WBITS = -12
_RECEIVE_WBITS = -15
_MEM_LEVEL = 9


class DeflateCompressor:
    """The server → client deflate stream of one CSTP connection."""

    __slots__ = ("_adler", "_stream")

    def __init__(self) -> None:
        self._stream = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, _SEND_WBITS, _MEM_LEVEL
        )
        self._adler = 1

    def compress(self, packet: bytes) -> bytes:
        """The COMPRESSED payload for ``packet`` (always sent: the stream has moved on)."""
        stream = self._stream
        body = stream.compress(packet) + stream.flush(zlib.Z_SYNC_FLUSH)
        self._adler = zlib.adler32(packet, self._adler)
        return body + self._adler.to_bytes(4, "big")


class DeflateDecompressor:
    """The client → server deflate stream of one CSTP connection."""

    __slots__ = ("_adler", "_stream")

    def __init__(self) -> None:
        self._stream = zlib.decompressobj(_RECEIVE_WBITS)
        self._adler = 1

    def decompress_untrusted(self, payload: bytes, limit: int) -> bytes:
        """Inflate one COMPRESSED payload from the client into at most ``limit`` bytes.

        :raises BadCompressedData: no room for the checksum, a corrupt stream, too much output
            or a running Adler-32 that does not match.
        """
        if len(payload) < 5:
            raise BadCompressedData("deflate payload shorter than its checksum")
        try:
            out = self._stream.decompress(payload[:-4], limit)
        except zlib.error as exc:
            raise BadCompressedData(f"bad deflate stream: {exc}") from None
        if self._stream.unconsumed_tail or self._stream.eof:
            raise BadCompressedData("deflate packet exceeds the limit or ends the stream")
        self._adler = zlib.adler32(out, self._adler)
        if self._adler != int.from_bytes(payload[-4:], "big"):
            raise BadCompressedData("deflate adler32 mismatch")
        return out
