"""Renegotiation of an established association (a DTLS rekey) against hostile input.

The successful rekeys (GnuTLS, as openconnect 9.01 drives it, PSK and legacy) are in
``test_dtls_interop.py``; here the test client of this package plays the peer: RFC 5746 is
required, and nothing a spoofed datagram can carry ends the established epoch meanwhile.
"""

from __future__ import annotations

from ocgate.dtls import DataReceived, HandshakeCompleted, HandshakeFailed, PskMode
from ocgate.dtls._handshake import DtlsState
from ocgate.dtls._messages import (
    ClientHello,
    ExtensionType,
    HandshakeType,
    encode_alert,
    encode_client_hello,
    encode_handshake,
)
from ocgate.dtls._record import ContentType, encode_record
from ocgate.dtls._suites import ProtocolVersion
from tests.unit.dtls._client import PSK_OFFER
from tests.unit.dtls._pair import DtlsPair, psk_client

PSK = bytes(range(200, 232))


def _established() -> DtlsPair:
    mode = PskMode(app_id=bytes(range(1, 33)), psk=PSK)
    pair = DtlsPair(mode, psk_client(mode))
    pair.start()
    pair.run(lambda: any(isinstance(e, HandshakeCompleted) for e in pair.events))
    assert pair.server is not None
    assert pair.server.state is DtlsState.ESTABLISHED
    return pair


def _client_verify(pair: DtlsPair) -> bytes:
    """The client's Finished verify_data: the end of the last message of its final flight."""
    return pair.client.flight[-1][2][-12:]


def _hello(pair: DtlsPair, renegotiation_info: bytes | None) -> bytes:
    """A renegotiation ClientHello, protected by epoch 1 as GnuTLS sends it."""
    extensions = () if renegotiation_info is None else (
        (ExtensionType.renegotiation_info, renegotiation_info),
    )  # fmt: skip
    hello = ClientHello(
        ProtocolVersion.DTLS1_2, bytes(range(1, 33)), b"", b"", PSK_OFFER, b"\x00", extensions
    )
    message = encode_handshake(HandshakeType.client_hello, 3, encode_client_hello(hello))
    return pair.client.raw_record(ContentType.handshake, 1, message)


def _feed(pair: DtlsPair, datagram: bytes) -> list[object]:
    assert pair.server is not None
    pair.server.receive_datagram(datagram, pair.now)
    events = []
    while (event := pair.server.next_event()) is not None:
        events.append(event)
    return events


def test_a_renegotiation_without_renegotiation_info_is_refused() -> None:
    pair = _established()
    events = _feed(pair, _hello(pair, None))
    assert [type(e) for e in events] == [HandshakeFailed]
    assert "insecure DTLS renegotiation" in events[0].reason  # type: ignore[attr-defined]


def test_a_renegotiation_with_another_finished_is_refused() -> None:
    pair = _established()
    wrong = bytes([_client_verify(pair)[0] ^ 1]) + _client_verify(pair)[1:]
    events = _feed(pair, _hello(pair, bytes((12,)) + wrong))
    assert [type(e) for e in events] == [HandshakeFailed]
    assert "renegotiation_info does not match" in events[0].reason  # type: ignore[attr-defined]


def test_forgeries_during_a_renegotiation_leave_the_epoch_alone() -> None:
    pair = _established()
    server = pair.server
    assert server is not None
    assert _feed(pair, _hello(pair, bytes((12,)) + _client_verify(pair))) == []
    assert server.renegotiating
    assert server.datagrams_to_send()  # ServerHello, ServerHelloDone in epoch 1.
    # A spoofed plaintext fatal alert, and an epoch-1 record that does not authenticate.
    plaintext_alert = encode_record(ContentType.alert, 0xFEFD, 99, encode_alert(2, 40))
    forged = bytearray(pair.client.raw_record(ContentType.application_data, 1, b"\x00data"))
    forged[-1] ^= 1
    assert _feed(pair, plaintext_alert) == []
    assert _feed(pair, bytes(forged)) == []
    assert server.renegotiating
    assert server.state is DtlsState.SERVER_EXPECT_CLIENT_KEY_EXCHANGE
    # Authentic data in the established epoch still arrives; nothing is sent over DTLS meanwhile.
    events = _feed(pair, pair.client.raw_record(ContentType.application_data, 1, b"\x00ip"))
    assert events == [DataReceived([b"\x00ip"])]
    server.send_data([b"\x00reply"])
    assert server.datagrams_to_send() == []
    assert server.fast_path is None
