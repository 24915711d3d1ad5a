"""The record hot path of an established TLS connection: OpenSSL's C calls, without wrappers.

pyOpenSSL's ``Connection.recv``/``sendall``/``bio_read`` allocate a cffi buffer and walk its error
checks on every call: about 5 µs per 1,400-byte record each way, where the AES-GCM itself takes
under one (``bench/bench_micro.py tls``). A CSTP tunnel moves one packet per record, so that
overhead was most of the TLS-only data path. :class:`RecordIO` makes the same OpenSSL calls
(``BIO_write``, ``SSL_read``, ``SSL_write``, ``BIO_read``) on the connection's memory BIOs with one
preallocated buffer, and hands every error back to pyOpenSSL's own error mapping, so the
behaviour (alerts, close_notify, renegotiation inside ``SSL_read``) is OpenSSL's, unchanged.

One buffer serves every connection of the process: each call copies out of it before returning,
and a worker runs its connections on one thread.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

__all__ = ["RecordIO"]

_CHUNK = 65536
_BUFFER = _ffi.new("char[]", _CHUNK)
_WANT_READ = _lib.SSL_ERROR_WANT_READ
_ZERO_RETURN = _lib.SSL_ERROR_ZERO_RETURN


class RecordIO:
    """Plaintext and ciphertext of one ``SSL.Connection`` over its memory BIOs.

    :raises SSL.Error: from every method, as pyOpenSSL would raise it for the same OpenSSL result.
    """

    __slots__ = ("_conn", "_into", "_out", "_ssl")

    def __init__(self, conn: SSL.Connection) -> None:
        self._conn = conn
        # pyOpenSSL's handles of the SSL object and of the BIOs it made for Connection(ctx, None).
        self._ssl: Any = conn._ssl
        self._into: Any = conn._into_ssl
        self._out: Any = conn._from_ssl

    def feed(self, data: bytes) -> None:
        """Ciphertext from the peer into the read BIO (a memory BIO takes all of it)."""
        if _lib.BIO_write(self._into, data, len(data)) != len(data):
            self._conn.bio_write(data)  # Only on allocation failure: let pyOpenSSL raise.

    def read(self) -> tuple[bytes, bool]:
        """Every record the fed ciphertext completes, decrypted; and whether the peer closed."""
        ssl = self._ssl
        chunks: list[bytes] = []
        while True:
            n = _lib.SSL_read(ssl, _BUFFER, _CHUNK)
            if n > 0:
                chunks.append(_ffi.buffer(_BUFFER, n)[:])
                continue
            error = _lib.SSL_get_error(ssl, n)
            if error == _WANT_READ:
                return b"".join(chunks), False
            if error == _ZERO_RETURN:
                return b"".join(chunks), True
            self._conn._raise_ssl_error(ssl, n)

    def write(self, data: bytes) -> None:
        """Encrypt ``data`` (fewer than 16 KiB: exactly one record) into the write BIO."""
        ssl = self._ssl
        view = data if isinstance(data, bytes) else _ffi.from_buffer(data)
        n = _lib.SSL_write(ssl, view, len(data))
        if n == len(data):
            return
        if n <= 0:
            self._conn._raise_ssl_error(ssl, n)
        self._conn.sendall(bytes(data[n:]))  # A partial write (never with memory BIOs).

    def fresh_bios(self) -> None:
        """Replace the memory BIOs by new ones: their buffers go.

        OpenSSL's memory BIO never shrinks: it keeps the capacity of the most it ever held, so the
        handshake's flights, or one burst (asyncio hands over up to 256 KiB at once), would stay
        with the connection as long as it lives. Meant for when everything fed was read and
        everything written was drained; bytes still waiting in either BIO move to its successor,
        so nothing is ever lost.
        """
        into = _lib.BIO_new(_lib.BIO_s_mem())
        out = _lib.BIO_new(_lib.BIO_s_mem())
        if into == _ffi.NULL or out == _ffi.NULL:  # Out of memory: keep the old ones.
            for bio in (into, out):
                if bio != _ffi.NULL:
                    _lib.BIO_free(bio)
            return
        for old, new in ((self._into, into), (self._out, out)):
            while (n := _lib.BIO_read(old, _BUFFER, _CHUNK)) > 0:
                _lib.BIO_write(new, _BUFFER, n)
        _lib.SSL_set_bio(self._ssl, into, out)  # Frees the old pair.
        conn: Any = self._conn
        self._into = conn._into_ssl = into
        self._out = conn._from_ssl = out

    def handles(self) -> tuple[int, int, int]:
        """The addresses of the SSL object and of its read and write BIOs (the data-path thread
        drives them through this same OpenSSL, ``ocgate.daemon._offload``)."""
        return tuple(int(_ffi.cast("uintptr_t", h)) for h in (self._ssl, self._into, self._out))  # type: ignore[return-value]

    def buffered(self) -> int:
        """Bytes waiting anywhere inside: ciphertext in either BIO, plaintext not read."""
        waiting: int = (
            _lib.BIO_get_mem_data(self._into, _ffi.NULL)
            + _lib.BIO_get_mem_data(self._out, _ffi.NULL)
            + _lib.SSL_pending(self._ssl)
        )
        return waiting

    def drain(self) -> bytes:
        """Ciphertext waiting in the write BIO."""
        out = self._out
        chunks: list[bytes] = []
        while (n := _lib.BIO_read(out, _BUFFER, _CHUNK)) > 0:
            chunks.append(_ffi.buffer(_BUFFER, n)[:])
        return b"".join(chunks)
