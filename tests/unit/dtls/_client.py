"""A small sans-IO DTLS *client* for both AnyConnect handshakes, for the engine's tests only.

It speaks the client side of legacy resumption (DTLS 0.9 and 1.2) and of PSK-NEGOTIATE with a
HelloVerifyRequest, retransmits its flight on a fixed timer, can fragment its handshake messages,
and records what it receives. The wire checks that do not depend on this code are the GnuTLS /
OpenSSL interop tests and the GnuTLS transcripts in tests/vectors/dtls.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ocgate.dtls._handshake import Transcript, psk_master_secret
from ocgate.dtls._messages import (
    ClientHello,
    ExtensionType,
    HandshakeFragment,
    HandshakeType,
    encode_alert,
    encode_client_hello,
    encode_psk_client_key_exchange,
    handshake_fragments_untrusted,
    pull_alert_untrusted,
    pull_hello_verify_request_untrusted,
    pull_server_hello_untrusted,
)
from ocgate.dtls._record import ContentType, Record, encode_record, records_untrusted
from ocgate.dtls._suites import (
    CipherSuite,
    DtlsSuite,
    ProtocolVersion,
    RecordProtection,
    derive_protections,
)
from ocgate.errors import BadRecord

V09 = ProtocolVersion.DTLS1_BAD_VER
PSK_OFFER = (0x00A9, 0xCCAB, 0xC0A5, 0x008D, 0x00A8, 0xC0A4, 0x008C, 0x00AE)
"""openconnect 9.01's PSK suite list (anyconnect-protocol.md §9.3)."""


@dataclass
class ClientConfig:
    suite: DtlsSuite | None = None  # Legacy when set.
    session_id: bytes = b""
    master_secret: bytes = b""
    psk: bytes = b""
    offered: tuple[int, ...] = PSK_OFFER
    fragment_size: int | None = None
    fragment_hello: bool = True
    corrupt_finished: bool = False
    retransmit: float = 1.0
    seed: int = 1
    extensions: tuple[tuple[int, bytes], ...] = ((ExtensionType.renegotiation_info, b"\x00"),)


@dataclass
class DtlsTestClient:
    config: ClientConfig
    received: list[bytes] = field(default_factory=list)
    alerts: list[tuple[int, int]] = field(default_factory=list)
    established: bool = False

    def __post_init__(self) -> None:
        cfg = self.config
        self.rng = random.Random(cfg.seed)
        self.legacy = cfg.suite is not None
        self.suite = cfg.suite
        self.version = cfg.suite.version if cfg.suite else ProtocolVersion.DTLS1_2
        self.hello_record_version = self.version if self.legacy else ProtocolVersion.DTLS1_0
        self.write_seq = [0, 0]
        self.write_prot: RecordProtection | None = None
        self.read_prot: RecordProtection | None = None
        self.message_seq = 0
        self.server_seq = 0
        self.client_random = self.rng.randbytes(32)
        self.server_random = b""
        self.master = cfg.master_secret
        self.transcript: Transcript | None = None
        self.hello_body = b""
        self.hello_seq = 0
        self.flight: list[tuple[int, int, bytes]] = []
        self.out: list[bytes] = []
        self.timer: float | None = None

    # -- driving ---------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._send_hello(b"", now)

    def datagrams_to_send(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def handle_timer(self, now: float) -> None:
        if self.timer is not None and now >= self.timer:
            self._send_flight()
            self.timer = now + self.config.retransmit

    def send(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            self.out.append(self._record(ContentType.application_data, 1, payload))

    def close(self) -> None:
        self.out.append(self._record(ContentType.alert, 1, encode_alert(1, 0)))

    def raw_record(self, content_type: int, epoch: int, plaintext: bytes) -> bytes:
        return self._record(content_type, epoch, plaintext)

    def receive_datagram(self, data: bytes, now: float) -> None:
        try:
            for record in records_untrusted(data):
                self._receive_record(record, now)
        except BadRecord:
            pass

    # -- records ---------------------------------------------------------------------------------

    def _record(self, content_type: int, epoch: int, plaintext: bytes) -> bytes:
        seq = self.write_seq[epoch]
        self.write_seq[epoch] += 1
        version = self.hello_record_version if not self.suite else self.version
        epoch_seq = epoch << 48 | seq
        if epoch:
            assert self.write_prot is not None
            plaintext = self.write_prot.seal(epoch_seq, content_type, version, plaintext)
        return encode_record(content_type, version, epoch_seq, plaintext)

    def _send_flight(self) -> None:
        self.out.append(b"".join(self._record(*item) for item in self.flight))

    def _handshake(self, msg_type: int, body: bytes, epoch: int = 0) -> None:
        seq = self.message_seq
        self.message_seq += 1
        if self.transcript is not None:
            self.transcript.add(msg_type, seq, body)
        size = self.config.fragment_size or max(len(body), 1)
        if msg_type == HandshakeType.client_hello and not self.config.fragment_hello:
            size = max(len(body), 1)
        chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        offset = 0
        pieces = []
        for chunk in chunks:
            header = bytes([msg_type]) + len(body).to_bytes(3, "big") + seq.to_bytes(2, "big")
            header += offset.to_bytes(3, "big") + len(chunk).to_bytes(3, "big")
            pieces.append((ContentType.handshake, epoch, header + chunk))
            offset += len(chunk)
        self.flight.extend(reversed(pieces))  # Out of order on purpose: exercises reassembly.

    def _start_flight(self, now: float) -> None:
        self._send_flight()
        self.timer = now + self.config.retransmit

    def _receive_record(self, record: Record, now: float) -> None:
        plaintext = record.fragment
        if record.epoch:
            if self.read_prot is None:
                return
            plaintext = self.read_prot.open(
                record.epoch_seq, record.content_type, record.version, record.fragment
            )
        if record.content_type == ContentType.application_data:
            self.received.append(plaintext)
        elif record.content_type == ContentType.alert:
            self.alerts.append(pull_alert_untrusted(plaintext))
        elif record.content_type == ContentType.handshake:
            for fragment in handshake_fragments_untrusted(plaintext):
                self._on_fragment(fragment, now)

    def _on_fragment(self, fragment: HandshakeFragment, now: float) -> None:
        assert fragment.is_whole
        if fragment.message_seq < self.server_seq:
            if self.flight:
                self._send_flight()  # The server repeated its flight: ours got lost.
            return
        if fragment.message_seq > self.server_seq:
            return
        self.server_seq += 1
        handler = {
            HandshakeType.hello_verify_request: self._on_hello_verify_request,
            HandshakeType.server_hello: self._on_server_hello,
            HandshakeType.server_hello_done: self._on_server_hello_done,
            HandshakeType.finished: self._on_finished,
        }[HandshakeType(fragment.msg_type)]
        handler(fragment, now)

    # -- handshake -------------------------------------------------------------------------------

    def _send_hello(self, cookie: bytes, now: float) -> None:
        cfg = self.config
        suites = (cfg.suite.cipher_suite,) if cfg.suite else cfg.offered
        hello = ClientHello(
            self.version, self.client_random, cfg.session_id, cookie, suites, b"\x00",
            cfg.extensions,
        )  # fmt: skip
        self.hello_body = encode_client_hello(hello)
        self.hello_seq = self.message_seq
        if cfg.suite:
            self.transcript = Transcript(cfg.suite, bodies_only=cfg.suite.version == V09)
        self.flight = []
        self._handshake(HandshakeType.client_hello, self.hello_body)
        self._start_flight(now)

    def _on_hello_verify_request(self, fragment: HandshakeFragment, now: float) -> None:
        _, cookie = pull_hello_verify_request_untrusted(fragment.body)
        self._send_hello(cookie, now)

    def _on_server_hello(self, fragment: HandshakeFragment, now: float) -> None:
        hello = pull_server_hello_untrusted(fragment.body)
        self.server_random = hello.random
        if self.suite is None:
            suite = CipherSuite(hello.cipher_suite)
            self.suite = DtlsSuite(suite.name, ProtocolVersion.DTLS1_2, suite)
            self.transcript = Transcript(self.suite, bodies_only=False)
            self.transcript.add(HandshakeType.client_hello, self.hello_seq, self.hello_body)
        else:
            assert hello.session_id == self.config.session_id, "legacy needs resumption"
            self._install_keys()
            if self.version == V09:
                self.server_seq += 1  # DTLS 0.9 ChangeCipherSpec takes a message_seq.
        assert self.transcript is not None
        self.transcript.add(fragment.msg_type, fragment.message_seq, fragment.body)

    def _install_keys(self) -> None:
        assert self.suite is not None
        self.write_prot, self.read_prot = derive_protections(
            self.suite, self.master, self.client_random, self.server_random, self.rng.randbytes
        )

    def _on_server_hello_done(self, fragment: HandshakeFragment, now: float) -> None:
        assert self.transcript is not None
        assert self.suite is not None
        self.transcript.add(fragment.msg_type, fragment.message_seq, fragment.body)
        self.flight = []
        self._handshake(HandshakeType.client_key_exchange, encode_psk_client_key_exchange(b"psk"))
        self.master = psk_master_secret(
            self.suite, self.config.psk, self.client_random, self.server_random
        )
        self._install_keys()
        self._queue_finished(b"client finished")
        self._start_flight(now)

    def _queue_finished(self, label: bytes) -> None:
        assert self.transcript is not None
        ccs = b"\x01"
        if self.version == V09:
            ccs += self.message_seq.to_bytes(2, "big")
            self.message_seq += 1
        self.flight.append((ContentType.change_cipher_spec, 0, ccs))
        verify_data = self.transcript.verify_data(self.master, label)
        if self.config.corrupt_finished and label == b"client finished":
            verify_data = bytes([verify_data[0] ^ 1]) + verify_data[1:]
        self._handshake(HandshakeType.finished, verify_data, 1)

    def _on_finished(self, fragment: HandshakeFragment, now: float) -> None:
        assert self.transcript is not None
        expected = self.transcript.verify_data(self.master, b"server finished")
        assert fragment.body == expected, "server Finished does not verify"
        self.transcript.add(fragment.msg_type, fragment.message_seq, fragment.body)
        self.established = True
        self.timer = None
        if self.legacy:
            self.flight = []
            self._queue_finished(b"client finished")
            self._send_flight()
