"""Edge cases of the association's record and handshake handling, one behaviour per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocgate.dtls import (
    DTLS_CIPHERSUITES,
    ContentType,
    DataReceived,
    DtlsAssociation,
    DtlsState,
    HandshakeFailed,
    HandshakeType,
    LegacyMode,
    negotiate_dtls,
)
from ocgate.dtls._messages import ClientHello, encode_client_hello, encode_handshake
from ocgate.dtls._record import SEQ_MASK, encode_record
from ocgate.errors import LocalProtocolError
from tests.unit.dtls._pair import legacy_client, psk_client
from tests.unit.dtls.test_dtls_association import (
    alert_of,
    established_pair,
    legacy_mode,
    psk_mode,
)


def started(mode: object = None) -> tuple[DtlsAssociation, object]:
    """A legacy association that answered the client's hello (state: expect Finished)."""
    mode = mode or legacy_mode()
    client = legacy_client(mode)  # type: ignore[arg-type]
    client.start(0.0)
    server = DtlsAssociation(mode=mode, now=0.0)  # type: ignore[arg-type]
    server.receive_datagram(client.datagrams_to_send()[0], 0.0)
    for datagram in server.datagrams_to_send():
        client.receive_datagram(datagram, 0.0)  # The client gets its keys...
    client.datagrams_to_send()  # ...and its Finished is lost.
    return server, client


def hello_failure(**changes: object) -> bytes:
    """Feed a PSK association a hello with ``changes``; return the alert it answered with."""
    fields = dict(
        client_version=0xFEFD, random=bytes(range(1, 33)), session_id=b"", cookie=b"c" * 32,
        cipher_suites=(0x00A9,), compression_methods=b"\x00", extensions=(),
    )  # fmt: skip
    fields.update(changes)
    body = encode_client_hello(ClientHello(**fields))  # type: ignore[arg-type]
    datagram = encode_record(22, 0xFEFF, 0, encode_handshake(1, 1, body))
    server = DtlsAssociation(mode=psk_mode(), now=0.0)
    server.receive_datagram(datagram, 0.0)
    assert isinstance(server.next_event(), HandshakeFailed)
    return alert_of(server.datagrams_to_send()[-1])


@pytest.mark.parametrize(
    ("changes", "alert"),
    [
        ({"compression_methods": b"\x01"}, b"\x02\x28"),
        ({"extensions": ((0xFF01, b"\x01\x00"),)}, b"\x02\x28"),
        ({"cipher_suites": (0x008C, 0xC0A4)}, b"\x02\x28"),
        ({"client_version": 0x0303}, b"\x02\x46"),
        ({"compression_methods": b""}, b"\x02\x32"),
    ],
)
def test_psk_hello_refusals(changes: dict[str, object], alert: bytes) -> None:
    assert hello_failure(**changes) == alert


# Found by fuzz/targets/fuzz_dtls_handshake.py (tests/vectors/fuzz/SOURCES.md): a ClientHello
# numbered 65535 made the server number its own flight past 16 bits, and OverflowError escaped
# receive_datagram. The vector is the fuzzed datagram, a GnuTLS 3.7.9 hello of the
# tests/vectors/dtls transcripts with its message_seq set to 0xFFFF.
FUZZ_VECTOR = (
    Path(__file__).parents[2] / "vectors" / "fuzz" / "dtls-client-hello-message-seq-65535.bin"
)


def test_fuzz_legacy_hello_with_message_seq_65535_is_refused() -> None:
    datagram = FUZZ_VECTOR.read_bytes()
    assert datagram[17:19] == b"\xff\xff"
    mode = LegacyMode(
        session_id=bytes(range(100, 132)),  # The transcripts' session id and master secret.
        master_secret=bytes(range(48)),
        suite=DTLS_CIPHERSUITES["OC2-DTLS1_2-CHACHA20-POLY1305"][0],
    )
    server = DtlsAssociation(mode=mode, now=0.0)
    server.receive_datagram(datagram, 0.0)
    assert isinstance(server.next_event(), HandshakeFailed)
    assert alert_of(server.datagrams_to_send()[-1]) == b"\x02\x2f"  # illegal_parameter


@pytest.mark.parametrize(
    ("message_seq", "refused"), [(0xFFFF, True), (0xFFFD, True), (0xFFFC, False)]
)
def test_psk_hello_message_seq_leaves_room_for_our_flight(message_seq: int, refused: bool) -> None:
    body = encode_client_hello(
        ClientHello(0xFEFD, bytes(range(1, 33)), b"", b"c" * 32, (0x00A9,), b"\x00", ())
    )
    datagram = encode_record(22, 0xFEFF, 0, encode_handshake(1, message_seq, body))
    server = DtlsAssociation(mode=psk_mode(), now=0.0)
    server.receive_datagram(datagram, 0.0)
    assert isinstance(server.next_event(), HandshakeFailed) is refused
    assert server.state is (
        DtlsState.FAILED if refused else DtlsState.SERVER_EXPECT_CLIENT_KEY_EXCHANGE
    )


def test_timer_before_any_hello_is_the_deadline() -> None:
    server = DtlsAssociation(mode=psk_mode(), now=5.0)
    assert server.get_timer() == 65.0
    server.handle_timer(10.0)
    assert server.state is DtlsState.SERVER_EXPECT_CLIENT_HELLO


def test_records_after_a_fatal_one_and_a_broken_tail_are_ignored() -> None:
    server, client = started()
    alert = client.raw_record(ContentType.alert, 0, b"\x02\x0a")  # type: ignore[attr-defined]
    server.receive_datagram(alert + alert + b"\x16\xfe", 1.0)
    assert list(iter(server.next_event, None)) == [HandshakeFailed("client sent alert 10")]


def test_warning_alerts_and_foreign_epochs_are_ignored() -> None:
    pair = established_pair(legacy_mode())
    server = pair.server
    assert server is not None
    server.receive_datagram(pair.client.raw_record(ContentType.alert, 1, b"\x01\x5a"), pair.now)
    server.receive_datagram(encode_record(23, 0x0100, 2 << 48, b"x" * 40), pair.now)
    server.receive_datagram(pair.client.raw_record(ContentType.application_data, 0, b"x"), 0)
    assert server.next_event() is None
    assert server.state is DtlsState.ESTABLISHED


def test_a_broken_tail_keeps_the_records_before_it() -> None:
    pair = established_pair(psk_mode())
    assert pair.server is not None
    pair.client.send([b"\x00first"])
    pair.server.receive_datagram(pair.client.datagrams_to_send()[0] + b"\x17\xfe\xfd", 0.0)
    assert pair.server.next_event() == DataReceived([b"\x00first"])


def test_oversized_plaintext_is_dropped() -> None:
    pair = established_pair(legacy_mode("OC-DTLS1_2-AES256-GCM"))
    server = pair.server
    assert server is not None
    pair.client.send([bytes(2**14 + 1), b"\x00ok"])
    for datagram in pair.client.datagrams_to_send():
        server.receive_datagram(datagram, pair.now)
    assert list(iter(server.next_event, None)) == [DataReceived([b"\x00ok"])]


def test_sequence_exhaustion_is_refused() -> None:
    pair = established_pair(psk_mode())
    assert pair.server is not None
    assert pair.server._epoch is not None
    pair.server._epoch.write_seq = SEQ_MASK + 1
    with pytest.raises(LocalProtocolError):
        pair.server.send_data([b"\x00x"])


def test_flights_split_over_a_small_mtu() -> None:
    mode = legacy_mode()
    client = legacy_client(mode)
    client.start(0.0)
    server = DtlsAssociation(mode=mode, now=0.0)
    server._mtu = 60  # Below any real MTU, to force one record per datagram.
    server.receive_datagram(client.datagrams_to_send()[0], 0.0)
    out = server.datagrams_to_send()
    assert [d[0] for d in out] == [ContentType.handshake, ContentType.change_cipher_spec, 22]
    for datagram in out:
        client.receive_datagram(datagram, 0.0)
    assert client.established


def test_bad_change_cipher_spec_fails_the_handshake() -> None:
    server, client = started()
    server.receive_datagram(client.raw_record(ContentType.change_cipher_spec, 0, b"\x01"), 1.0)  # type: ignore[attr-defined]
    assert isinstance(server.next_event(), HandshakeFailed)  # DTLS 0.9 needs 3 bytes.


def test_finished_in_epoch_zero_is_unexpected() -> None:
    server, client = started()
    finished = encode_handshake(HandshakeType.finished, 2, bytes(12))
    server.receive_datagram(client.raw_record(ContentType.handshake, 0, finished), 1.0)  # type: ignore[attr-defined]
    assert server.next_event() is not None
    assert alert_of(server.datagrams_to_send()[-1]) != b"\x02\x0a"  # Encrypted: epoch 1.
    assert server.state is DtlsState.FAILED


def test_handshake_records_that_need_no_answer() -> None:
    mode = psk_mode()
    client = psk_client(mode)
    client.start(0.0)
    server = DtlsAssociation(mode=mode, now=0.0)
    finished = encode_handshake(HandshakeType.finished, 0, bytes(12))
    server.receive_datagram(encode_record(22, 0xFEFD, 0, finished), 0.0)  # Not a hello yet.
    assert server.state is DtlsState.SERVER_EXPECT_CLIENT_HELLO
    pair = established_pair(legacy_mode())
    assert pair.server is not None
    late = encode_handshake(HandshakeType.finished, 9, bytes(12))
    pair.server.receive_datagram(pair.client.raw_record(ContentType.handshake, 1, late), 1.0)
    assert pair.server.datagrams_to_send() == []
    pair = established_pair(psk_mode())
    assert pair.server is not None
    pair.server.receive_datagram(pair.client.raw_record(ContentType.handshake, 1, late), 1.0)
    assert pair.server.datagrams_to_send() == []  # A future message: no renegotiation.


def test_fragment_bookkeeping() -> None:
    server, client = started()
    far = encode_handshake(HandshakeType.finished, 40, bytes(12))
    server.receive_datagram(client.raw_record(ContentType.handshake, 1, far), 1.0)  # type: ignore[attr-defined]
    assert server.state is DtlsState.SERVER_EXPECT_FINISHED
    first = b"\x14\x00\x00\x0c\x00\x02\x00\x00\x00\x00\x00\x04" + bytes(4)
    other = b"\x14\x00\x00\x0d\x00\x02\x00\x00\x04\x00\x00\x04" + bytes(4)
    server.receive_datagram(client.raw_record(ContentType.handshake, 1, first + other), 1.0)  # type: ignore[attr-defined]
    assert server.state is DtlsState.FAILED  # Inconsistent lengths: illegal_parameter.


def test_unknown_cipher_hint_is_ignored() -> None:
    offer = negotiate_dtls(
        {"x-dtls-ciphersuite": "AES128-SHA:AES256-SHA", "x-dtls-master-secret": "00" * 48},
        psk_enabled=False,
        legacy_enabled=True,
        tls_cipher_hint="CAMELLIA-SOMETHING",
        random_bytes=bytes,
    )
    assert offer is not None
    assert offer.headers[1] == ("X-DTLS-CipherSuite", "AES256-SHA")
