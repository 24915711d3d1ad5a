"""DtlsAssociation: the sans-IO DTLS server for AnyConnect's two handshakes (§9.2, §9.3).

Theory of operation.

* One association serves one handshake attempt of one session; the caller keeps two slots per
  session so a new handshake never disturbs the established one (anyconnect-protocol.md §9.4).
* **Legacy mode** resumes a session that never existed: the client's ``X-DTLS-Master-Secret``,
  our ``X-DTLS-Session-ID`` and suite. **PSK mode** runs a full plain-PSK handshake keyed by the
  CSTP session's exporter; the caller has already answered cookieless ClientHellos statelessly
  with :class:`~ocgate.dtls.CookieJar` and verified the cookie before creating the association,
  which ignores ClientHellos without a cookie.
* **Errors** (STYLE rule 6) are :class:`BadRecord` carrying an alert description, turned into
  outcomes at one place (:meth:`DtlsAssociation._receive_record`): during the handshake a fatal
  alert and :class:`HandshakeFailed`; afterwards the record is dropped silently, since one bad or
  forged datagram must never tear down a tunnel. Replays are always dropped silently.
* **Retransmission** (RFC 6347 §4.2.4): our last flight goes out again when its timer fires (400 ms,
  doubling) and when the client retransmits the flight before it; the handshake gives up 60 s
  after the association was created (ocserv's numbers). The final PSK flight has no timer and is
  only repeated on demand, a bounded number of times.
* **Epochs**: 0 before ChangeCipherSpec, 1 after; records pass the epoch's 64-record replay window
  (RFC 6347 §4.1.2.6) before decryption and mark it only once authenticated.
* **Renegotiation** (a DTLS rekey: openconnect's ``X-DTLS-Rekey-Method: ssl``, answered in place
  by ocserv): a ClientHello protected by the established epoch N starts a new handshake of the same
  mode whose messages travel in epoch N and whose keys become epoch N+1; data keeps flowing in
  epoch N meanwhile. The hello must carry RFC 5746 ``renegotiation_info`` with the client's last
  Finished, and our ServerHello echoes both Finished values; a renegotiation sooner than
  ``rekey_interval`` after the previous one fails the association (ocserv refuses it too). Epoch
  N is kept, as the previous one, until the next switch: our last flight may have to be repeated
  in it and late records of it are still authentic.
"""

from __future__ import annotations

import hmac
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from ocgate.dtls._epoch import EpochState, new_epoch_state
from ocgate.dtls._handshake import (
    HANDSHAKING,
    TRANSITIONS,
    DtlsState,
    Message,
    Reassembler,
    Transcript,
    psk_master_secret,
)
from ocgate.dtls._messages import (
    AlertDescription,
    AlertLevel,
    ClientHello,
    ExtensionType,
    HandshakeFragment,
    HandshakeType,
    ServerHello,
    encode_alert,
    encode_handshake,
    encode_server_hello,
    handshake_fragments_untrusted,
    pull_alert_untrusted,
    pull_client_hello_untrusted,
    pull_psk_client_key_exchange_untrusted,
)
from ocgate.dtls._record import (
    MAX_PLAINTEXT,
    SEQ_MASK,
    ContentType,
    Record,
    encode_record,
    records_untrusted,
)
from ocgate.dtls._suites import (
    SUITE_PARAMS,
    CipherSuite,
    DtlsSuite,
    ProtocolVersion,
    derive_key_block,
)
from ocgate.dtls.events import (
    AssociationClosed,
    DataReceived,
    DtlsEvent,
    HandshakeCompleted,
    HandshakeFailed,
)
from ocgate.errors import BadRecord, LocalProtocolError

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "INITIAL_RETRANSMIT",
    "PSK_SUITES",
    "DtlsAssociation",
    "LegacyMode",
    "PskMode",
]

INITIAL_RETRANSMIT = 0.4
HANDSHAKE_TIMEOUT = 60.0
_MAX_ON_DEMAND = 16
"""How often a flight is repeated because the client repeated its own (anti-reflection cap)."""
_MAX_HELLO_SEQ = 0xFFFF - 3
"""Our flight numbers its messages on from the ClientHello's message_seq (up to three more, DTLS
0.9 counting its ChangeCipherSpec); a hello nearer 2^16 would overflow the 16-bit field (a hello
with message_seq 65535 raised OverflowError out of receive_datagram: fuzz_dtls_handshake)."""

PSK_SUITES = (
    CipherSuite.TLS_PSK_WITH_AES_256_GCM_SHA384,
    CipherSuite.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite.TLS_PSK_WITH_AES_128_GCM_SHA256,
)
"""Our PSK preference order (§9.3); the first one the client offers wins."""


@dataclass(frozen=True, slots=True)
class LegacyMode:
    """Resume the session announced in the CONNECT reply (anyconnect-protocol.md §9.2).

    :param session_id: the 32 bytes sent as ``X-DTLS-Session-ID``.
    :param master_secret: the 48 bytes of the client's ``X-DTLS-Master-Secret``.
    :param suite: the suite sent as ``X-DTLS-CipherSuite`` / ``X-DTLS12-CipherSuite``.
    """

    session_id: bytes
    master_secret: bytes = field(repr=False)
    suite: DtlsSuite

    def __post_init__(self) -> None:
        if not 1 <= len(self.session_id) <= 32 or len(self.master_secret) != 48:
            raise LocalProtocolError("legacy DTLS needs a 1-32 byte session id and 48-byte secret")


@dataclass(frozen=True, slots=True)
class PskMode:
    """PSK-NEGOTIATE (anyconnect-protocol.md §9.3).

    :param app_id: the ``X-DTLS-App-ID`` bytes (the demultiplexer's key; not checked here).
    :param psk: 32 bytes of the CSTP TLS exporter, label ``EXPORTER-openconnect-psk``.
    :param suites: acceptable suites in our preference order (``match-tls-dtls-ciphers`` narrows).
    """

    app_id: bytes
    psk: bytes = field(repr=False)
    suites: tuple[CipherSuite, ...] = PSK_SUITES

    def __post_init__(self) -> None:
        if not self.psk or not self.suites or not set(self.suites) <= set(PSK_SUITES):
            raise LocalProtocolError("PSK mode needs a key and PSK suites")


_RETRANSMIT_TRIGGERS: dict[DtlsState, frozenset[int]] = {
    DtlsState.SERVER_EXPECT_CLIENT_KEY_EXCHANGE: frozenset({HandshakeType.client_hello}),
    DtlsState.SERVER_EXPECT_FINISHED: frozenset({HandshakeType.client_hello}),
    DtlsState.ESTABLISHED: frozenset({HandshakeType.client_key_exchange, HandshakeType.finished}),
}
"""Old messages that mean "the client missed our last flight" in each state."""
_EXPECTED_EPOCH: dict[int, int] = {HandshakeType.finished: 1}
_TERMINAL = frozenset({DtlsState.CLOSED, DtlsState.FAILED})
_CCS = b"\x01"
_Flight = list[tuple[int, int, bytes]]  # (content type, epoch, plaintext)


class DtlsAssociation:
    """A DTLS server association (sans-IO; STYLE rule 1).

    :param mode: :class:`LegacyMode` or :class:`PskMode`.
    :param now: the current time; the handshake must finish within 60 s of it.
    :param random_bytes: randomness (server random, CBC IVs).
    :param mtu: largest datagram our handshake flights may use.
    """

    def __init__(
        self,
        *,
        mode: LegacyMode | PskMode,
        now: float,
        random_bytes: Callable[[int], bytes] = os.urandom,
        mtu: int = 1400,
        rekey_interval: float = 0.0,
    ) -> None:
        if mtu < 256:
            raise LocalProtocolError("DTLS MTU below 256")
        self._mode = mode
        self._kind = "psk" if isinstance(mode, PskMode) else "legacy"
        self._random_bytes = random_bytes
        self._mtu = mtu
        self._state = DtlsState.SERVER_EXPECT_CLIENT_HELLO
        self._suite: DtlsSuite | None = mode.suite if isinstance(mode, LegacyMode) else None
        self._version = self._suite.version if self._suite else ProtocolVersion.DTLS1_2
        self._events: deque[DtlsEvent] = deque()
        self._payloads: list[bytes] = []
        self._out: list[bytes] = []
        self._now = now
        self._deadline = now + HANDSHAKE_TIMEOUT
        self._retransmit_at: float | None = None
        self._interval = INITIAL_RETRANSMIT
        self._flight: _Flight = []
        self._on_demand_left = _MAX_ON_DEMAND
        self._repeated_this_datagram = False
        self._write_seq0 = 0
        self._write_epoch = 0
        self._epoch: EpochState | None = None
        self._epoch_number = 1
        """The number of :attr:`_epoch` (the epoch data travels in)."""
        self._next: EpochState | None = None
        """Epoch ``_epoch_number + 1`` while a renegotiation installs it."""
        self._previous: EpochState | None = None
        """Epoch ``_epoch_number - 1`` after a renegotiation (late records, repeated flights)."""
        self._hs_epoch = 0
        """The epoch the messages of the running handshake travel in."""
        self.renegotiating = False
        self.rekeys = 0
        """Completed renegotiations."""
        self._rekey_interval = rekey_interval
        self._last_rekey: float | None = None
        self._client_verify = b""
        self._server_verify = b""
        self._secure_renegotiation = False
        self._reassembler = Reassembler()
        self._transcript: Transcript | None = None
        self._master = b""
        self._client_random: bytes | None = None
        self._server_random = b""
        self._hello_epoch_seq = 0
        self._message_seq = 0

    # -- public surface -------------------------------------------------------------------------

    @property
    def state(self) -> DtlsState:
        return self._state

    @property
    def client_random(self) -> bytes | None:
        """The accepted ClientHello's random: lets the demultiplexer route retransmitted hellos."""
        return self._client_random

    @property
    def cipher_description(self) -> str | None:
        """openconnect's ``(DTLS1.2)-(PSK)-(AES-256-GCM)``; ``None`` until the suite is chosen."""
        return self._suite.description if self._suite else None

    @property
    def record_overhead(self) -> int:
        """Bytes a record adds to its payload (worst case over the PSK suites until chosen)."""
        if self._suite is not None:
            return self._suite.params.record_overhead
        assert isinstance(self._mode, PskMode)
        return max(SUITE_PARAMS[s].record_overhead for s in self._mode.suites)

    @property
    def fast_path(self) -> EpochState | None:
        """Epoch 1 while the association is established (the adapter's fast path), else ``None``.

        Its :meth:`~EpochState.open_batch_untrusted` takes the datagrams only this association
        would accept as data and leaves every other one to :meth:`receive_datagram`; its
        :meth:`~EpochState.seal_data` is :meth:`send_data` without the per-record objects.
        """
        return self._epoch if self._state is DtlsState.ESTABLISHED else None

    def next_event(self) -> DtlsEvent | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        if self._state not in HANDSHAKING:
            return None
        if self._retransmit_at is None:
            return self._deadline
        return min(self._deadline, self._retransmit_at)

    def handle_timer(self, now: float) -> None:
        self._now = now
        if self._state not in HANDSHAKING:
            return
        if now >= self._deadline:
            self._finish(DtlsState.FAILED)
            self._emit(HandshakeFailed("handshake timed out"))
        elif self._retransmit_at is not None and now >= self._retransmit_at:
            self._interval *= 2
            self._retransmit_at = now + self._interval
            self._send_flight()

    def send_data(self, payloads: Iterable[bytes]) -> None:
        """Queue one application-data record (and datagram) per payload.

        Ignored once closed or failed; before the handshake completes it is a caller bug.
        """
        if self._state is not DtlsState.ESTABLISHED:
            if self._state in _TERMINAL or self.renegotiating:
                return  # Renegotiating: data goes over CSTP meanwhile (ocserv sends none).
            raise LocalProtocolError("DTLS handshake not complete")
        encode = self._encode
        epoch = self._epoch_number
        for payload in payloads:
            if len(payload) > MAX_PLAINTEXT:
                raise LocalProtocolError("DTLS payload longer than 2^14")
            self._out.append(encode(ContentType.application_data, epoch, payload))

    def close(self) -> None:
        """Queue a close_notify alert and stop; no event follows."""
        if self._state in _TERMINAL:
            return
        alert = encode_alert(AlertLevel.warning, AlertDescription.close_notify)
        self._out.append(self._encode(ContentType.alert, self._write_epoch, alert))
        self._finish(DtlsState.CLOSED)

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Process every record of one datagram (a bad record never stops the good ones)."""
        self._now = now
        self._repeated_this_datagram = False
        try:
            for record in records_untrusted(data):
                if self._state in _TERMINAL:
                    break
                self._receive_record(record)
        except BadRecord:
            pass  # A malformed record header: the rest of the datagram cannot be delimited.
        self._flush_payloads()

    # -- record layer ---------------------------------------------------------------------------

    def _receive_record(self, record: Record) -> None:
        if self.renegotiating and not record.epoch:
            return  # Plaintext beside an established epoch could be forged: dropped, as then.
        try:
            plaintext = self._unprotect(record)
        except BadRecord as exc:
            if self._state in HANDSHAKING and not self.renegotiating:
                self._fail(exc.description, f"{exc} (alert {exc.description} sent)")
            return  # A forgery must not end an established association (renegotiating or not).
        if plaintext is None:
            return
        try:
            self._CONTENT_HANDLERS[record.content_type](self, record, plaintext)
        except BadRecord as exc:
            if self._state in HANDSHAKING:
                self._fail(exc.description, f"{exc} (alert {exc.description} sent)")

    def _unprotect(self, record: Record) -> bytes | None:
        """Return the plaintext, ``None`` to drop silently, or raise :class:`BadRecord`."""
        epoch = record.epoch
        if epoch == 0:
            return record.fragment
        if record.version != self._version:
            return None
        state = self._epoch_state(epoch)
        if state is None:
            return None
        # Replay check, authentication, the 2^14 limit, then the window (in EpochState.open).
        return state.open(record.epoch_seq, record.content_type, record.fragment)

    def _epoch_state(self, epoch: int) -> EpochState | None:
        if epoch == self._epoch_number:
            return self._epoch
        if epoch == self._epoch_number + 1:
            return self._next
        if epoch == self._epoch_number - 1:
            return self._previous
        return None

    def _encode(self, content_type: int, epoch: int, plaintext: bytes) -> bytes:
        if epoch:
            state = self._epoch_state(epoch)
            assert state is not None
            return state.seal(content_type, plaintext)
        seq = self._write_seq0
        if seq > SEQ_MASK:
            raise LocalProtocolError("DTLS sequence numbers exhausted")
        self._write_seq0 = seq + 1
        return encode_record(content_type, self._version, seq, plaintext)

    def _send_flight(self) -> None:
        datagram = b""
        for content_type, epoch, plaintext in self._flight:
            record = self._encode(content_type, epoch, plaintext)
            if datagram and len(datagram) + len(record) > self._mtu:
                self._out.append(datagram)
                datagram = b""
            datagram += record
        if datagram:
            self._out.append(datagram)

    def _start_flight(self) -> None:
        self._send_flight()
        self._interval = INITIAL_RETRANSMIT
        self._retransmit_at = self._now + self._interval

    def _repeat_flight_on_demand(self) -> None:
        if self._flight and not self._repeated_this_datagram and self._on_demand_left > 0:
            self._repeated_this_datagram = True
            self._on_demand_left -= 1
            self._send_flight()

    # -- events and endings ---------------------------------------------------------------------

    def _flush_payloads(self) -> None:
        if self._payloads:
            self._events.append(DataReceived(self._payloads))
            self._payloads = []

    def _emit(self, event: DtlsEvent) -> None:
        self._flush_payloads()
        self._events.append(event)

    def _finish(self, state: DtlsState) -> None:
        self._state = state
        self._flight = []
        self._retransmit_at = None
        self._transcript = None

    def _fail(self, description: int, reason: str) -> None:
        alert = encode_alert(AlertLevel.fatal, description)
        self._out.append(self._encode(ContentType.alert, self._write_epoch, alert))
        self._finish(DtlsState.FAILED)
        self._emit(HandshakeFailed(reason))

    # -- content types --------------------------------------------------------------------------

    def _on_alert(self, record: Record, plaintext: bytes) -> None:
        level, description = pull_alert_untrusted(plaintext)
        closing = level == AlertLevel.fatal or description == AlertDescription.close_notify
        if not closing:
            return
        if self._state in HANDSHAKING:
            self._finish(DtlsState.FAILED)
            self._emit(HandshakeFailed(f"client sent alert {description}"))
        elif record.epoch:  # Plaintext alerts after the handshake could be forged.
            self._finish(DtlsState.CLOSED)
            name = "close_notify" if description == 0 else f"fatal alert {description}"
            self._emit(AssociationClosed(f"client sent {name}"))

    def _on_change_cipher_spec(self, record: Record, plaintext: bytes) -> None:
        # RFC 5246 §7.1: one byte 1; DTLS 0.9 appends the 2-byte handshake message_seq.
        if plaintext[:1] != _CCS or len(plaintext) != (
            3 if self._version == ProtocolVersion.DTLS1_BAD_VER else 1
        ):
            raise BadRecord("bad ChangeCipherSpec")

    def _on_application_data(self, record: Record, plaintext: bytes) -> None:
        established = self._state is DtlsState.ESTABLISHED or self.renegotiating
        if established and record.epoch and record.epoch <= self._epoch_number:
            self._payloads.append(plaintext)

    def _on_handshake(self, record: Record, plaintext: bytes) -> None:
        renegotiation = self._state is DtlsState.ESTABLISHED and record.epoch == self._epoch_number
        if self._state not in HANDSHAKING and not self._flight and not renegotiation:
            return
        for fragment in handshake_fragments_untrusted(plaintext):
            self._on_fragment(fragment, record)

    _CONTENT_HANDLERS: ClassVar[dict[int, Callable[[DtlsAssociation, Record, bytes], None]]] = {
        ContentType.alert: _on_alert,
        ContentType.change_cipher_spec: _on_change_cipher_spec,
        ContentType.application_data: _on_application_data,
        ContentType.handshake: _on_handshake,
    }

    # -- handshake messages ---------------------------------------------------------------------

    def _on_fragment(self, fragment: HandshakeFragment, record: Record) -> None:
        reassembler = self._reassembler
        if (
            self._state is DtlsState.ESTABLISHED
            and record.epoch == self._epoch_number
            and fragment.msg_type == HandshakeType.client_hello
        ):
            # Protected by the current epoch, so never a retransmission of an earlier hello.
            if not self._begin_renegotiation():
                return
            reassembler.restart_at(fragment.message_seq)
            self._hello_epoch_seq = record.epoch_seq
        elif self._state is DtlsState.SERVER_EXPECT_CLIENT_HELLO:
            if fragment.msg_type != HandshakeType.client_hello or record.epoch != self._hs_epoch:
                return
            self._hello_epoch_seq = record.epoch_seq
            if fragment.message_seq > reassembler.next_seq:
                reassembler.restart_at(fragment.message_seq)
        if fragment.message_seq < reassembler.next_seq:
            if fragment.msg_type in _RETRANSMIT_TRIGGERS.get(self._state, ()):
                self._repeat_flight_on_demand()
            return
        if self._state not in HANDSHAKING:
            return
        reassembler.add(fragment, record.epoch)
        while self._state in HANDSHAKING and (message := reassembler.pop()) is not None:
            self._on_message(message)

    def _on_message(self, message: Message) -> None:
        key = (self._kind, self._state, message.msg_type)
        next_state = TRANSITIONS.get(key)
        expected_epoch = self._hs_epoch + _EXPECTED_EPOCH.get(message.msg_type, 0)
        if next_state is None or message.epoch != expected_epoch:
            raise BadRecord(f"unexpected handshake message {message.msg_type}", description=10)
        if self._MESSAGE_HANDLERS[message.msg_type](self, message):
            self._state = next_state
            if next_state is DtlsState.ESTABLISHED:
                assert self._suite is not None
                if self.renegotiating:
                    self._switch_epoch()
                self._emit(HandshakeCompleted(self._suite.description))

    def _begin_renegotiation(self) -> bool:
        """A ClientHello in the established epoch: run a new handshake under it (a DTLS rekey).

        One sooner than ``rekey_interval`` after the previous rekey ends the association, as
        ocserv ends the session ("client requested DTLS rehandshake too soon").
        """
        last = self._last_rekey
        if last is not None and self._now - last < self._rekey_interval:
            self._fail(
                AlertDescription.no_renegotiation, "client requested DTLS rehandshake too soon"
            )
            return False
        self.renegotiating = True
        self._state = DtlsState.SERVER_EXPECT_CLIENT_HELLO
        self._hs_epoch = self._epoch_number
        self._deadline = self._now + HANDSHAKE_TIMEOUT
        self._interval = INITIAL_RETRANSMIT
        self._retransmit_at = None
        self._flight = []
        self._on_demand_left = _MAX_ON_DEMAND
        self._next = None
        return True

    def _switch_epoch(self) -> None:
        """The renegotiation completed: its keys become the epoch data travels in."""
        self._previous, self._epoch, self._next = self._epoch, self._next, None
        self._epoch_number += 1
        self.renegotiating = False
        self.rekeys += 1
        self._last_rekey = self._now

    def _on_client_hello(self, message: Message) -> bool:
        hello = pull_client_hello_untrusted(message.body)
        if not any(hello.random):
            raise BadRecord("all-zero ClientHello random (ocserv #277)", description=47)
        if message.message_seq > _MAX_HELLO_SEQ:
            raise BadRecord(f"ClientHello message_seq {message.message_seq}", description=47)
        if isinstance(self._mode, PskMode):
            if not hello.cookie and not self.renegotiating:
                return False  # Stale pre-cookie hello; cookies are checked before we exist.
            suite = self._choose_psk_suite(hello.cipher_suites)
            session_id = b""  # A full handshake: an echoed id would claim resumption.
        else:
            suite = self._mode.suite
            session_id = self._mode.session_id
            if not hmac.compare_digest(hello.session_id, session_id):
                raise BadRecord("unknown DTLS session id", description=40)
            if suite.cipher_suite not in hello.cipher_suites:
                raise BadRecord("client does not offer the announced suite", description=40)
        self._check_hello(hello)
        self._suite = suite
        self._client_random = hello.random
        self._server_random = self._random_bytes(32)
        self._message_seq = message.message_seq
        self._write_seq0 = self._hello_epoch_seq & SEQ_MASK
        bodies_only = suite.version == ProtocolVersion.DTLS1_BAD_VER
        self._transcript = Transcript(suite, bodies_only=bodies_only)
        self._transcript.add(HandshakeType.client_hello, message.message_seq, message.body)
        extensions: tuple[tuple[int, bytes], ...] = ()
        if self.renegotiating:  # RFC 5746 §3.7: both Finished values of the last handshake.
            verify = self._client_verify + self._server_verify
            extensions = ((ExtensionType.renegotiation_info, bytes((len(verify),)) + verify),)
        elif hello.offers_renegotiation_info:
            self._secure_renegotiation = True
            extensions = ((ExtensionType.renegotiation_info, b"\x00"),)
        server_hello = ServerHello(
            suite.version, self._server_random, session_id, suite.cipher_suite, extensions
        )
        self._flight = []
        epoch = self._hs_epoch
        self._queue_handshake(HandshakeType.server_hello, encode_server_hello(server_hello), epoch)
        if isinstance(self._mode, PskMode):
            self._queue_handshake(HandshakeType.server_hello_done, b"", epoch)
        else:
            self._master = self._mode.master_secret
            self._install_keys()
            self._queue_finished(b"server finished")
            # DTLS 0.9 numbers ChangeCipherSpec as a handshake message (OpenSSL, GnuTLS).
            self._reassembler.restart_at(message.message_seq + 1 + bodies_only)
        self._start_flight()
        return True

    def _check_hello(self, hello: ClientHello) -> None:
        version = hello.client_version
        if self._version == ProtocolVersion.DTLS1_BAD_VER:
            ok = version == ProtocolVersion.DTLS1_BAD_VER
        else:  # DTLS versions count down: 0xFEFD (1.2) and any later one are acceptable.
            ok = 0xFE00 <= version <= ProtocolVersion.DTLS1_2
        if not ok:
            raise BadRecord(f"client version {version:#06x}", description=70)
        if 0 not in hello.compression_methods:
            raise BadRecord("null compression not offered", description=40)
        renegotiation = hello.extension(ExtensionType.renegotiation_info)
        if self.renegotiating:
            # RFC 5746 §3.7: only a client that offered secure renegotiation may renegotiate, and
            # it proves the link to the last handshake with that handshake's client Finished.
            expected = bytes((len(self._client_verify),)) + self._client_verify
            if not self._secure_renegotiation or renegotiation is None:
                raise BadRecord("insecure DTLS renegotiation refused", description=40)
            if not hmac.compare_digest(renegotiation, expected):
                raise BadRecord("renegotiation_info does not match", description=40)
        elif renegotiation not in (None, b"\x00"):
            raise BadRecord("renegotiation_info on an initial handshake", description=40)

    def _choose_psk_suite(self, offered: tuple[int, ...]) -> DtlsSuite:
        assert isinstance(self._mode, PskMode)
        for candidate in self._mode.suites:
            if candidate in offered:
                return DtlsSuite(candidate.name, ProtocolVersion.DTLS1_2, candidate)
        raise BadRecord("no acceptable PSK cipher suite", description=40)

    def _on_client_key_exchange(self, message: Message) -> bool:
        assert isinstance(self._mode, PskMode)
        assert self._suite is not None
        assert self._client_random is not None
        assert self._transcript is not None
        pull_psk_client_key_exchange_untrusted(message.body)  # The identity is ignored (ocserv).
        self._transcript.add(message.msg_type, message.message_seq, message.body)
        self._master = psk_master_secret(
            self._suite, self._mode.psk, self._client_random, self._server_random
        )
        self._install_keys()
        return True

    def _on_finished(self, message: Message) -> bool:
        assert self._transcript is not None
        expected = self._transcript.verify_data(self._master, b"client finished")
        if not hmac.compare_digest(message.body, expected):
            raise BadRecord("client Finished does not verify", description=51)
        self._client_verify = message.body
        self._retransmit_at = None
        self._flight = []
        if isinstance(self._mode, PskMode):
            self._transcript.add(message.msg_type, message.message_seq, message.body)
            self._queue_finished(b"server finished")
            self._send_flight()  # Final flight: repeated only when the client repeats its own.
        self._transcript = None
        return True

    _MESSAGE_HANDLERS: ClassVar[dict[int, Callable[[DtlsAssociation, Message], bool]]] = {
        HandshakeType.client_hello: _on_client_hello,
        HandshakeType.client_key_exchange: _on_client_key_exchange,
        HandshakeType.finished: _on_finished,
    }

    # -- our messages ---------------------------------------------------------------------------

    def _install_keys(self) -> None:
        assert self._suite is not None
        assert self._client_random is not None
        keys = derive_key_block(self._suite, self._master, self._client_random, self._server_random)
        state = new_epoch_state(self._suite, keys, self._random_bytes, self._hs_epoch + 1)
        if self.renegotiating:
            self._next = state
        else:
            self._epoch = state

    def _queue_handshake(self, msg_type: HandshakeType, body: bytes, epoch: int) -> None:
        assert self._transcript is not None
        self._transcript.add(msg_type, self._message_seq, body)
        message = encode_handshake(msg_type, self._message_seq, body)
        self._message_seq += 1
        self._flight.append((ContentType.handshake, epoch, message))

    def _queue_finished(self, label: bytes) -> None:
        assert self._transcript is not None
        ccs = _CCS
        if self._version == ProtocolVersion.DTLS1_BAD_VER:
            ccs += self._message_seq.to_bytes(2, "big")
            self._message_seq += 1
        self._flight.append((ContentType.change_cipher_spec, self._hs_epoch, ccs))
        self._write_epoch = self._hs_epoch + 1
        verify_data = self._transcript.verify_data(self._master, label)
        self._server_verify = verify_data
        self._queue_handshake(HandshakeType.finished, verify_data, self._hs_epoch + 1)
