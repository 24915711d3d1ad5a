"""DTLS record framing (RFC 6347 §4.1) and the anti-replay window (RFC 6347 §4.1.2.6).

A datagram carries one or more records back to back; a record never spans datagrams. The
``epoch`` (16 bits) and ``sequence_number`` (48 bits) are kept as one 64-bit ``epoch_seq``, which
is exactly the "sequence number" the MAC and AEAD additional data cover.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

from ocgate.errors import BadRecord, LocalProtocolError

__all__ = [
    "MAX_CIPHERTEXT",
    "MAX_PLAINTEXT",
    "RECORD_HEADER",
    "ContentType",
    "Record",
    "ReplayWindow",
    "encode_record",
    "records_untrusted",
]


class ContentType(IntEnum):
    """RFC 5246 §6.2.1 ``ContentType``."""

    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23


# DTLS record header, 13 bytes (RFC 6347 §4.1):
#
#   0      1      2      3      4      5      6      7      8      9     10     11     12
#   +------+------+------+------+------+------+------+------+------+------+------+------+------+
#   | type |   version   |    epoch    |          sequence_number (48 bits)      |   length    |
#   +------+------+------+------+------+------+------+------+------+------+------+------+------+
RECORD_HEADER = struct.Struct("!BHQH")
MAX_PLAINTEXT = 2**14
"""RFC 5246 §6.2.1: a record's plaintext is at most 2^14 bytes."""
MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048
SEQ_MASK = (1 << 48) - 1
_KNOWN_VERSIONS = frozenset({0x0100, 0xFEFF, 0xFEFD})
_CONTENT_TYPES = frozenset(int(t) for t in ContentType)


@dataclass(frozen=True, slots=True)
class Record:
    """One DTLS record as received.

    :param epoch_seq: ``epoch << 48 | sequence_number``.
    """

    content_type: int
    version: int
    epoch_seq: int
    fragment: bytes

    @property
    def epoch(self) -> int:
        return self.epoch_seq >> 48


def records_untrusted(datagram: bytes) -> Iterator[Record]:
    """Yield the records of ``datagram`` in order.

    Raises :class:`BadRecord` at the first truncated or malformed header (the records before it
    have been yielded; the rest of the datagram is lost, as RFC 6347 §4.1.2.7 allows).
    """
    offset, size = 0, len(datagram)
    while offset < size:
        if size - offset < RECORD_HEADER.size:
            raise BadRecord("truncated record header")
        ctype, version, epoch_seq, length = RECORD_HEADER.unpack_from(datagram, offset)
        if ctype not in _CONTENT_TYPES or version not in _KNOWN_VERSIONS:
            raise BadRecord(f"bad record type {ctype} or version {version:#06x}")
        start = offset + RECORD_HEADER.size
        offset = start + length
        if offset > size or length > MAX_CIPHERTEXT:
            raise BadRecord("truncated or oversized record")
        yield Record(ctype, version, epoch_seq, datagram[start:offset])


def encode_record(content_type: int, version: int, epoch_seq: int, fragment: bytes) -> bytes:
    """Return one record: header + ``fragment`` (already protected for epochs above 0)."""
    if len(fragment) > MAX_CIPHERTEXT:
        raise LocalProtocolError("record fragment too long")
    return RECORD_HEADER.pack(content_type, version, epoch_seq, len(fragment)) + fragment


class ReplayWindow:
    """The RFC 6347 §4.1.2.6 sliding window over the sequence numbers of one epoch.

    :meth:`check` runs before decryption and raises for a duplicate or a record older than the
    window; :meth:`mark` runs only after the record authenticated, so forged records cannot move
    the window.
    """

    SIZE = 64

    def __init__(self) -> None:
        self._top = -1
        self._bitmap = 0  # Bit i set: sequence number ``_top - i`` was received.

    def check(self, seq: int) -> None:
        """Raise :class:`BadRecord` when ``seq`` is a replay or too old to tell."""
        if seq > self._top:
            return
        behind = self._top - seq
        if behind >= self.SIZE or self._bitmap >> behind & 1:
            raise BadRecord("replayed or stale record")

    def mark(self, seq: int) -> None:
        """Record ``seq`` as received (after it authenticated)."""
        if seq > self._top:
            shift = seq - self._top
            # A jump past the window starts it afresh: shifting by the distance would build an
            # integer of that many bits (a peer 2**40 ahead would cost the process gigabytes).
            if shift >= self.SIZE:
                self._bitmap = 1
            else:
                self._bitmap = (self._bitmap << shift | 1) & ((1 << self.SIZE) - 1)
            self._top = seq
        else:
            self._bitmap |= 1 << (self._top - seq)
