"""One epoch of an association: both directions' record protection, the replay window, the write
sequence, and the fast path for established application data. The first handshake's keys are
epoch 1; each renegotiation (a DTLS rekey) installs the next epoch (RFC 6347 §4.1).

Theory of operation.

* Once the handshake has keys (:func:`new_epoch_state`), every record of that epoch,
  in and out, handshake or data, goes through its one :class:`EpochState`: the reference path
  (:meth:`DtlsAssociation.receive_datagram` → ``records_untrusted`` → ``Record`` →
  :meth:`EpochState.open`) and the fast path share the replay window and the write sequence.
* **The fast path accepts one kind of datagram only**: a single ``application_data`` record of
  its epoch in the negotiated version that fills the datagram exactly, is not a replay,
  authenticates and holds at most 2^14 bytes of plaintext. For such a datagram
  :meth:`EpochState.open_batch_untrusted` returns the plaintext and marks the window, exactly as the
  reference path would. Any other datagram — several records, another content type, epoch or
  version, a replay, a bad MAC or padding, a bad length, a sequence number far ahead or behind —
  stops the batch *before* it changes any state, and the caller hands that datagram to the
  reference path, which decides (and usually drops) it as it always has. So every rejection has one
  implementation, and the property tests in ``tests/unit/dtls/test_dtls_fastpath.py`` hold the two
  paths to identical results.
* :meth:`EpochState.seal_data` builds one record per payload (``prefix + payload``) with the next
  write sequence numbers; :meth:`EpochState.seal` is the reference path's single record.
* Two implementations with one interface: :class:`PyEpochState` here, and the compiled
  ``ocgate._fastpath.EpochState`` (C on OpenSSL's libcrypto, built by ``pip install`` when a
  compiler and the OpenSSL headers are present). :func:`new_epoch_state` uses the compiled one when
  it imported (and ``OCGATE_FASTPATH=python`` is not set), else this one; ``IMPLEMENTATIONS``
  names both for tests and benchmarks.
* CBC suites in the fast path keep one cipher context per direction instead of building one per
  record (the reference path's way). Receiving: a CBC decryptor's state is the previous ciphertext
  block, and each record carries its own IV block first, so decrypting ``IV || C`` with the running
  context yields one garbage block and then the plaintext chained from that IV. Sending: RFC 4346
  §6.2.3.2 option 2(b) — a fresh random block ``R`` is encrypted first with the running context,
  and its ciphertext ``E(R ⊕ residue)``, unpredictable without the key, is the record's explicit
  IV. The MAC and padding checks are the reference's (both computed, one verdict). (The compiled
  implementation keeps one context per direction too and sets each record's IV on it; it seals
  with a fresh random IV per record, exactly as the reference does.)
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ocgate.dtls._record import (
    MAX_CIPHERTEXT,
    MAX_PLAINTEXT,
    SEQ_MASK,
    ContentType,
    ReplayWindow,
    encode_record,
)
from ocgate.dtls._suites import BulkCipher, DtlsSuite, KeyBlock, protections
from ocgate.errors import BadRecord, LocalProtocolError

__all__ = [
    "FORCE_PYTHON",
    "IMPLEMENTATION",
    "IMPLEMENTATIONS",
    "EpochFactory",
    "EpochState",
    "PyEpochState",
    "new_epoch_state",
]

_APPLICATION_DATA = int(ContentType.application_data)
# Record header + the AES-GCM explicit nonce (equal to epoch||seq), 21 bytes (RFC 6347 §4.1,
# RFC 5288 §3): type (1) | version (2) | epoch||seq (8) | length (2) | explicit nonce (8).
_HEADER = struct.Struct("!BHQH")
_HEADER_GCM = struct.Struct("!BHQHQ")
# MAC / AEAD pseudo-header (RFC 6347 §4.1.2.1):
#   epoch||seq (8) | type (1) | version (2) | length (2).
_PSEUDO = struct.Struct("!QBHH")
_MAC_LEN = 20
_TAG = 16


class EpochState(Protocol):
    """One epoch of one association (see the module docstring); both implementations provide it."""

    @property
    def version(self) -> int:
        """The record version of the association (``0x0100`` or ``0xFEFD``)."""
        ...

    write_seq: int
    """The next sequence number this side writes (settable for tests)."""

    def open(self, epoch_seq: int, content_type: int, fragment: bytes) -> bytes | None:
        """The reference path's record: ``None`` for a replay (drop silently), else the plaintext.

        :raises BadRecordMac: the record does not authenticate.
        :raises BadRecord: the plaintext exceeds 2^14 bytes (``record_overflow``).
        """
        ...

    def seal(self, content_type: int, plaintext: bytes) -> bytes:
        """One whole record (header included) with the next sequence number."""
        ...

    def open_batch_untrusted(
        self, datagrams: Sequence[bytes], start: int, data_type: int
    ) -> tuple[list[bytes], int, bytes | None]:
        """Open ``datagrams[start:]`` on the fast path while it can.

        ``start`` is clamped to ``0 .. len(datagrams)``. Returns ``(packets, stop, payload)``:
        ``packets`` are the bodies (type byte removed) of
        the leading datagrams whose plaintext starts with ``data_type``; ``datagrams[stop]`` (if
        ``stop < len(datagrams)``) ended the run. With ``payload`` set, the fast path accepted it
        (window marked) and ``payload`` is its whole plaintext, of another type; with ``payload``
        ``None``, nothing of it was used and it belongs to the reference path.
        """
        ...

    def seal_data(self, prefix: bytes, payloads: Sequence[bytes]) -> list[bytes]:
        """One application-data record per payload, plaintext ``prefix + payload``.

        :raises LocalProtocolError: a plaintext over 2^14 bytes, or sequence numbers exhausted.
        """
        ...


class EpochFactory(Protocol):
    """Builds the :class:`EpochState` of ``epoch`` (1 after the first handshake)."""

    def __call__(
        self,
        suite: DtlsSuite,
        keys: KeyBlock,
        random_bytes: Callable[[int], bytes],
        epoch: int = 1,
    ) -> EpochState: ...


class PyEpochState:
    """The pure-Python :class:`EpochState` (the reference for the compiled one)."""

    __slots__ = (
        "_block",
        "_decrypt",
        "_encrypt",
        "_epoch_bits",
        "_iv_read",
        "_iv_write",
        "_mac_read",
        "_mac_write",
        "_open_one",
        "_random_bytes",
        "_read",
        "_read_ctx",
        "_replay",
        "_salt_read",
        "_salt_write",
        "_seal_many",
        "_write",
        "_write_ctx",
        "version",
        "write_seq",
    )
    _decrypt: Callable[[bytes, bytes, bytes], bytes]
    _encrypt: Callable[[bytes, bytes, bytes], bytes]
    _open_one: Callable[[bytes, int, int], bytes | None]
    _seal_many: Callable[[bytes, Sequence[bytes], int], list[bytes]]
    _read_ctx: CipherContext
    _write_ctx: CipherContext

    def __init__(
        self,
        suite: DtlsSuite,
        keys: KeyBlock,
        random_bytes: Callable[[int], bytes],
        epoch: int = 1,
    ) -> None:
        if not 1 <= epoch <= 0xFFFF:
            raise ValueError("epoch out of range")
        self._epoch_bits = epoch << 48
        self.version = int(suite.version)
        self.write_seq = 0
        self._replay = ReplayWindow()
        self._random_bytes = random_bytes
        self._read, self._write = protections(suite, keys, random_bytes)
        bulk = suite.params.bulk
        if bulk is BulkCipher.AES_GCM:
            aead = AESGCM(keys.read_key), AESGCM(keys.write_key)
            self._decrypt, self._encrypt = aead[0].decrypt, aead[1].encrypt
            self._salt_read, self._salt_write = keys.read_iv, keys.write_iv
            self._open_one, self._seal_many = self._open_gcm, self._seal_gcm
        elif bulk is BulkCipher.CHACHA20_POLY1305:
            chacha = ChaCha20Poly1305(keys.read_key), ChaCha20Poly1305(keys.write_key)
            self._decrypt, self._encrypt = chacha[0].decrypt, chacha[1].encrypt
            self._iv_read = int.from_bytes(keys.read_iv, "big")
            self._iv_write = int.from_bytes(keys.write_iv, "big")
            self._open_one, self._seal_many = self._open_chacha, self._seal_chacha
        else:
            if bulk is BulkCipher.AES_CBC:
                read: algorithms.AES | TripleDES = algorithms.AES(keys.read_key)
                write: algorithms.AES | TripleDES = algorithms.AES(keys.write_key)
                self._block = 16
            else:
                read, write = TripleDES(keys.read_key), TripleDES(keys.write_key)
                self._block = 8
            zero = bytes(self._block)
            self._read_ctx = Cipher(read, modes.CBC(zero)).decryptor()
            self._write_ctx = Cipher(write, modes.CBC(zero)).encryptor()
            self._mac_read, self._mac_write = keys.read_mac, keys.write_mac
            self._open_one, self._seal_many = self._open_cbc, self._seal_cbc

    # -- the reference path's records ------------------------------------------------------------

    def open(self, epoch_seq: int, content_type: int, fragment: bytes) -> bytes | None:
        seq = epoch_seq & SEQ_MASK
        try:
            self._replay.check(seq)
        except BadRecord:
            return None
        plaintext = self._read.open(epoch_seq, content_type, self.version, fragment)
        if len(plaintext) > MAX_PLAINTEXT:
            raise BadRecord("record overflow", description=22)
        self._replay.mark(seq)
        return plaintext

    def seal(self, content_type: int, plaintext: bytes) -> bytes:
        if len(plaintext) > MAX_PLAINTEXT:
            raise LocalProtocolError("DTLS payload longer than 2^14")
        seq = self._take(1)
        epoch_seq = self._epoch_bits | seq
        fragment = self._write.seal(epoch_seq, content_type, self.version, plaintext)
        return encode_record(content_type, self.version, epoch_seq, fragment)

    def _take(self, count: int) -> int:
        seq = self.write_seq
        if seq + count - 1 > SEQ_MASK:
            raise LocalProtocolError("DTLS sequence numbers exhausted")
        self.write_seq = seq + count
        return seq

    # -- the fast path ----------------------------------------------------------------------------

    def open_batch_untrusted(
        self, datagrams: Sequence[bytes], start: int, data_type: int
    ) -> tuple[list[bytes], int, bytes | None]:
        packets: list[bytes] = []
        open_one = self._open_one
        version = self.version
        replay = self._replay
        start = min(max(start, 0), len(datagrams))
        for index in range(start, len(datagrams)):
            datagram = datagrams[index]
            size = len(datagram)
            if size < 13 or datagram[0] != _APPLICATION_DATA:
                return packets, index, None
            _, record_version, epoch_seq, length = _HEADER.unpack_from(datagram)
            if (
                record_version != version
                or (epoch_seq & ~SEQ_MASK) != self._epoch_bits
                or length != size - 13
                or length > MAX_CIPHERTEXT
            ):
                return packets, index, None
            seq = epoch_seq & SEQ_MASK
            try:
                replay.check(seq)
            except BadRecord:
                return packets, index, None
            plaintext = open_one(datagram, epoch_seq, length)
            if plaintext is None or len(plaintext) > MAX_PLAINTEXT:
                return packets, index, None
            replay.mark(seq)
            if not plaintext or plaintext[0] != data_type:
                return packets, index, plaintext
            packets.append(plaintext[1:])
        return packets, len(datagrams), None

    def _open_gcm(self, datagram: bytes, epoch_seq: int, length: int) -> bytes | None:
        if length < 8 + _TAG:
            return None
        aad = _PSEUDO.pack(epoch_seq, _APPLICATION_DATA, self.version, length - 8 - _TAG)
        try:
            return self._decrypt(self._salt_read + datagram[13:21], datagram[21:], aad)
        except InvalidTag:
            return None

    def _open_chacha(self, datagram: bytes, epoch_seq: int, length: int) -> bytes | None:
        if length < _TAG:
            return None
        nonce = (self._iv_read ^ epoch_seq).to_bytes(12, "big")
        aad = _PSEUDO.pack(epoch_seq, _APPLICATION_DATA, self.version, length - _TAG)
        try:
            return self._decrypt(nonce, datagram[13:], aad)
        except InvalidTag:
            return None

    def _open_cbc(self, datagram: bytes, epoch_seq: int, length: int) -> bytes | None:
        block = self._block
        size = length - block
        if size < _MAC_LEN + 1 or size % block:
            return None
        # The running context turns the record's IV block into garbage and chains the rest from it.
        data = self._read_ctx.update(datagram[13:])[block:]
        pad = data[-1]
        pad_fits = pad + 1 + _MAC_LEN <= len(data)
        pad_len = pad if pad_fits else 0
        pad_ok = hmac.compare_digest(data[-1 - pad_len :], bytes((pad,)) * (pad_len + 1))
        end = len(data) - 1 - pad_len - _MAC_LEN
        pseudo = _PSEUDO.pack(epoch_seq, _APPLICATION_DATA, self.version, end)
        expected = hmac.digest(self._mac_read, pseudo + data[:end], "sha1")
        mac_ok = hmac.compare_digest(data[end : end + _MAC_LEN], expected)
        if not (mac_ok & pad_ok & pad_fits):
            return None
        return data[:end]

    def seal_data(self, prefix: bytes, payloads: Sequence[bytes]) -> list[bytes]:
        if not payloads:
            return []
        limit = MAX_PLAINTEXT - len(prefix)
        if any(len(p) > limit for p in payloads):
            raise LocalProtocolError("DTLS payload longer than 2^14")
        return self._seal_many(prefix, payloads, self._take(len(payloads)))

    def _seal_gcm(self, prefix: bytes, payloads: Sequence[bytes], seq: int) -> list[bytes]:
        version, salt, encrypt = self.version, self._salt_write, self._encrypt
        header, pseudo = _HEADER_GCM.pack, _PSEUDO.pack
        out = []
        for payload in payloads:
            epoch_seq = self._epoch_bits | seq
            seq += 1
            plaintext = prefix + payload
            size = len(plaintext)
            nonce = salt + epoch_seq.to_bytes(8, "big")
            sealed = encrypt(nonce, plaintext, pseudo(epoch_seq, _APPLICATION_DATA, version, size))
            out.append(header(_APPLICATION_DATA, version, epoch_seq, size + 24, epoch_seq) + sealed)
        return out

    def _seal_chacha(self, prefix: bytes, payloads: Sequence[bytes], seq: int) -> list[bytes]:
        version, iv, encrypt = self.version, self._iv_write, self._encrypt
        header, pseudo = _HEADER.pack, _PSEUDO.pack
        out = []
        for payload in payloads:
            epoch_seq = self._epoch_bits | seq
            seq += 1
            plaintext = prefix + payload
            size = len(plaintext)
            nonce = (iv ^ epoch_seq).to_bytes(12, "big")
            sealed = encrypt(nonce, plaintext, pseudo(epoch_seq, _APPLICATION_DATA, version, size))
            out.append(header(_APPLICATION_DATA, version, epoch_seq, size + _TAG) + sealed)
        return out

    def _seal_cbc(self, prefix: bytes, payloads: Sequence[bytes], seq: int) -> list[bytes]:
        version, block, key = self.version, self._block, self._mac_write
        update = self._write_ctx.update
        header, pseudo = _HEADER.pack, _PSEUDO.pack
        randoms = self._random_bytes(block * len(payloads))
        out = []
        for i, payload in enumerate(payloads):
            epoch_seq = self._epoch_bits | seq
            seq += 1
            plaintext = prefix + payload
            size = len(plaintext)
            mac = hmac.digest(key, pseudo(epoch_seq, _APPLICATION_DATA, version, size) + plaintext,
                              "sha1")  # fmt: skip
            pad = block - 1 - (size + _MAC_LEN) % block
            # The first block is R; its ciphertext is the record's explicit IV (RFC 4346 6.2.3.2).
            sealed = update(randoms[i * block : (i + 1) * block] + plaintext + mac
                            + bytes((pad,)) * (pad + 1))  # fmt: skip
            out.append(header(_APPLICATION_DATA, version, epoch_seq, len(sealed)) + sealed)
        return out


FORCE_PYTHON = os.environ.get("OCGATE_FASTPATH", "").strip().lower() == "python"
"""``OCGATE_FASTPATH=python`` in the environment: ignore the compiled module (tests, and a way
out should it ever misbehave)."""


def _compiled() -> EpochFactory | None:
    if FORCE_PYTHON:
        return None
    try:
        from ocgate import _fastpath  # type: ignore[attr-defined]
    except ImportError:
        return None

    def factory(
        suite: DtlsSuite,
        keys: KeyBlock,
        random_bytes: Callable[[int], bytes],
        epoch: int = 1,
    ) -> EpochState:
        state: EpochState = _fastpath.EpochState(
            _BULK_CODES[suite.params.bulk],
            int(suite.version),
            keys.read_key,
            keys.write_key,
            keys.read_iv,
            keys.write_iv,
            keys.read_mac,
            keys.write_mac,
            random_bytes,
            epoch,
        )
        return state

    return factory


_BULK_CODES = {
    BulkCipher.AES_GCM: 1,
    BulkCipher.CHACHA20_POLY1305: 2,
    BulkCipher.AES_CBC: 3,
    BulkCipher.DES3_CBC: 4,
}
IMPLEMENTATIONS: dict[str, EpochFactory] = {"python": PyEpochState}
"""Every implementation this interpreter has, by name: ``python`` always, ``c`` when compiled."""
_C = _compiled()
if _C is not None:
    IMPLEMENTATIONS["c"] = _C
IMPLEMENTATION = "c" if _C is not None else "python"
"""The name of the implementation :func:`new_epoch_state` uses (for the log)."""
DEFAULT: list[EpochFactory] = [_C or PyEpochState]
"""The factory :func:`new_epoch_state` uses (a list so that tests can swap it)."""


def new_epoch_state(
    suite: DtlsSuite, keys: KeyBlock, random_bytes: Callable[[int], bytes], epoch: int = 1
) -> EpochState:
    """``epoch`` for ``suite`` and ``keys`` in the fastest implementation available."""
    return DEFAULT[0](suite, keys, random_bytes, epoch)
