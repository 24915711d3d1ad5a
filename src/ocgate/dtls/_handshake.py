"""Server handshake bookkeeping: states and transitions, reassembly, transcript, key schedule.

Theory of operation.

* **States** (:class:`DtlsState`) advance only through :data:`TRANSITIONS`, keyed by (handshake
  kind, state, message received). Legacy mode is the abbreviated handshake of a resumed session
  (ClientHello → ServerHello, ChangeCipherSpec, Finished → ChangeCipherSpec, Finished); PSK mode is
  the full plain-PSK handshake (ClientHello+cookie → ServerHello, ServerHelloDone →
  ClientKeyExchange, ChangeCipherSpec, Finished → ChangeCipherSpec, Finished).
* **ChangeCipherSpec** is not a state: DTLS may lose or reorder it (RFC 6347 §4.1), and the
  client's Finished, encrypted under the new keys and checked against the transcript, proves what
  it would. Epoch-1 records are readable as soon as the keys exist.
* **Reassembly** (RFC 6347 §4.2.3) keeps fragments of the next expected ``message_seq`` and of a
  few after it, each message at most ``MAX_HANDSHAKE_MESSAGE`` bytes, and hands out whole messages
  in order. Fragments of earlier messages are the client retransmitting; the association answers
  them with its last flight.
* **Transcript**: DTLS 1.2 hashes every message as if sent in one fragment, 12-byte header
  included (RFC 6347 §4.2.6), and leaves out the cookieless ClientHello and HelloVerifyRequest;
  DTLS 0.9 hashes message bodies only, no header (OpenSSL ``bad_dtls_test.c`` ``MAC_OFFSET``,
  GnuTLS ``handshake_hash_add_recvd``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ocgate.dtls._messages import (
    MAX_HANDSHAKE_MESSAGE,
    HandshakeFragment,
    HandshakeType,
    encode_handshake,
)
from ocgate.dtls._suites import DtlsSuite
from ocgate.errors import BadRecord

__all__ = [
    "HANDSHAKING",
    "TRANSITIONS",
    "DtlsState",
    "Message",
    "Reassembler",
    "Transcript",
    "finished_verify_data",
    "psk_master_secret",
]


class DtlsState(Enum):
    SERVER_EXPECT_CLIENT_HELLO = "expect ClientHello"
    SERVER_EXPECT_CLIENT_KEY_EXCHANGE = "expect ClientKeyExchange"
    SERVER_EXPECT_FINISHED = "expect Finished"
    ESTABLISHED = "established"
    CLOSED = "closed"
    FAILED = "failed"


HANDSHAKING = frozenset(
    {
        DtlsState.SERVER_EXPECT_CLIENT_HELLO,
        DtlsState.SERVER_EXPECT_CLIENT_KEY_EXCHANGE,
        DtlsState.SERVER_EXPECT_FINISHED,
    }
)

_S = DtlsState
_H = HandshakeType
TRANSITIONS: dict[tuple[str, DtlsState, int], DtlsState] = {
    ("legacy", _S.SERVER_EXPECT_CLIENT_HELLO, _H.client_hello): _S.SERVER_EXPECT_FINISHED,
    ("legacy", _S.SERVER_EXPECT_FINISHED, _H.finished): _S.ESTABLISHED,
    ("psk", _S.SERVER_EXPECT_CLIENT_HELLO, _H.client_hello): _S.SERVER_EXPECT_CLIENT_KEY_EXCHANGE,
    ("psk", _S.SERVER_EXPECT_CLIENT_KEY_EXCHANGE, _H.client_key_exchange): (
        _S.SERVER_EXPECT_FINISHED
    ),
    ("psk", _S.SERVER_EXPECT_FINISHED, _H.finished): _S.ESTABLISHED,
}
"""(kind, state, message received) → next state; any other message is ``unexpected_message``."""


@dataclass(frozen=True, slots=True)
class Message:
    """A reassembled handshake message and the epoch its fragments came in."""

    msg_type: int
    message_seq: int
    body: bytes
    epoch: int


class _Partial:
    __slots__ = ("buf", "epoch", "have", "msg_type")

    def __init__(self, fragment: HandshakeFragment, epoch: int) -> None:
        self.msg_type = fragment.msg_type
        self.epoch = epoch
        self.buf = bytearray(fragment.length)
        self.have = bytearray(fragment.length)


class Reassembler:
    """Bounded reassembly of handshake fragments by ``message_seq`` and ``fragment_offset``."""

    MAX_AHEAD = 4

    def __init__(self) -> None:
        self.next_seq = 0
        self._partial: dict[int, _Partial] = {}

    def restart_at(self, message_seq: int) -> None:
        """Expect ``message_seq`` next, forgetting fragments of earlier messages."""
        self.next_seq = message_seq
        self._partial = {s: p for s, p in self._partial.items() if s >= message_seq}

    def add(self, fragment: HandshakeFragment, epoch: int) -> None:
        """Store a fragment of the expected message or of one shortly after it."""
        seq = fragment.message_seq
        if not self.next_seq <= seq < self.next_seq + self.MAX_AHEAD:
            return
        partial = self._partial.get(seq)
        if partial is None:
            partial = self._partial[seq] = _Partial(fragment, epoch)
        if (partial.msg_type, len(partial.buf), partial.epoch) != (
            fragment.msg_type,
            fragment.length,
            epoch,
        ):
            raise BadRecord("inconsistent handshake fragments", description=47)
        end = fragment.frag_offset + len(fragment.body)
        partial.buf[fragment.frag_offset : end] = fragment.body
        partial.have[fragment.frag_offset : end] = b"\x01" * len(fragment.body)

    def pop(self) -> Message | None:
        """Return the next whole message in ``message_seq`` order, if it is complete."""
        partial = self._partial.get(self.next_seq)
        if partial is None or 0 in partial.have:
            return None
        del self._partial[self.next_seq]
        self.next_seq += 1
        return Message(partial.msg_type, self.next_seq - 1, bytes(partial.buf), partial.epoch)


assert MAX_HANDSHAKE_MESSAGE * Reassembler.MAX_AHEAD <= 64 * 1024  # Memory bound per association.


class Transcript:
    """The handshake messages the Finished hashes cover, in the suite's format."""

    def __init__(self, suite: DtlsSuite, *, bodies_only: bool) -> None:
        self._suite = suite
        self._bodies_only = bodies_only
        self._data = bytearray()

    def add(self, msg_type: int, message_seq: int, body: bytes) -> None:
        if self._bodies_only:
            self._data += body
        else:
            self._data += encode_handshake(msg_type, message_seq, body)

    def verify_data(self, master_secret: bytes, label: bytes) -> bytes:
        return finished_verify_data(self._suite, master_secret, label, bytes(self._data))


def finished_verify_data(
    suite: DtlsSuite, master_secret: bytes, label: bytes, messages: bytes
) -> bytes:
    """RFC 5246 §7.4.9: ``PRF(master, label, Hash(messages))[:12]``."""
    return suite.prf(master_secret, label, suite.transcript_hash(messages), 12)


def psk_master_secret(
    suite: DtlsSuite, psk: bytes, client_random: bytes, server_random: bytes
) -> bytes:
    """RFC 4279 §2 premaster ``N || 0*N || N || psk`` → RFC 5246 §8.1 master secret."""
    size = len(psk).to_bytes(2, "big")
    premaster = size + bytes(len(psk)) + size + psk
    return suite.prf(premaster, b"master secret", client_random + server_random, 48)
