"""Handshake message codecs round-trip, and the demultiplexer's ClientHello peek (§9.4)."""

from __future__ import annotations

import pytest

from ocgate.dtls import ClientHello, ContentType, HandshakeType, peek_client_hello_untrusted
from ocgate.dtls._messages import (
    ExtensionType,
    ServerHello,
    encode_alert,
    encode_client_hello,
    encode_handshake,
    encode_hello_verify_request,
    encode_psk_client_key_exchange,
    encode_server_hello,
    handshake_fragments_untrusted,
    pull_alert_untrusted,
    pull_client_hello_untrusted,
    pull_hello_verify_request_untrusted,
    pull_psk_client_key_exchange_untrusted,
    pull_server_hello_untrusted,
)
from ocgate.dtls._record import encode_record
from ocgate.errors import BadRecord

HELLO = ClientHello(
    client_version=0xFEFD,
    random=bytes(range(1, 33)),
    session_id=b"S" * 32,
    cookie=b"",
    cipher_suites=(0x00A9, 0xCCAB),
    compression_methods=b"\x00",
    extensions=(
        (ExtensionType.renegotiation_info, b"\x00"),
        (ExtensionType.application_id, b"\x03abc"),
    ),
)


def hello_datagram(hello: ClientHello = HELLO, *, version: int = 0xFEFF, seq: int = 0) -> bytes:
    message = encode_handshake(HandshakeType.client_hello, seq, encode_client_hello(hello))
    return encode_record(ContentType.handshake, version, 9, message)


def test_client_hello_roundtrip() -> None:
    assert pull_client_hello_untrusted(encode_client_hello(HELLO)) == HELLO
    bare = ClientHello(0x0100, bytes(range(32)), b"", b"", (0x0035,), b"\x00")
    assert pull_client_hello_untrusted(encode_client_hello(bare)) == bare
    assert not bare.offers_renegotiation_info
    scsv = ClientHello(0x0100, bytes(range(32)), b"", b"", (0x0035, 0x00FF), b"\x00")
    assert scsv.offers_renegotiation_info


def test_other_messages_roundtrip() -> None:
    server = ServerHello(0xFEFD, bytes(32), b"", 0x00A9, ((0xFF01, b"\x00"),))
    assert pull_server_hello_untrusted(encode_server_hello(server)) == server
    assert pull_hello_verify_request_untrusted(encode_hello_verify_request(0xFEFF, b"c" * 32)) == (
        0xFEFF,
        b"c" * 32,
    )
    assert pull_psk_client_key_exchange_untrusted(encode_psk_client_key_exchange(b"psk")) == b"psk"
    assert pull_alert_untrusted(encode_alert(2, 40)) == (2, 40)
    fragment = handshake_fragments_untrusted(encode_handshake(20, 3, b"x" * 12) * 2)
    assert [(f.msg_type, f.message_seq, f.is_whole, f.body) for f in fragment] == [
        (20, 3, True, b"x" * 12)
    ] * 2


@pytest.mark.parametrize(
    ("decoder", "data"),
    [
        (pull_client_hello_untrusted, encode_client_hello(HELLO)[:-1]),
        (pull_client_hello_untrusted, encode_client_hello(HELLO) + b"\x00"),
        (pull_client_hello_untrusted, bytes(2 + 32) + b"\x21" + bytes(40)),  # session_id > 32
        (pull_server_hello_untrusted, bytes(34) + b"\x00\x00\xa9\x01"),  # compression
        (pull_hello_verify_request_untrusted, b"\xfe\xff\x01ab"),
        (pull_psk_client_key_exchange_untrusted, b"\x00\x03psk!"),
        (pull_alert_untrusted, b"\x02"),
        (handshake_fragments_untrusted, encode_handshake(1, 0, b"abc")[:-1]),
        (handshake_fragments_untrusted, b"\x01\x00\x00\x02\x00\x00\x00\x00\x01\x00\x00\x02ab"),
    ],
)
def test_decoders_refuse_malformed_input(decoder: object, data: bytes) -> None:
    with pytest.raises(BadRecord):
        decoder(data)  # type: ignore[operator]


def test_duplicate_extension_and_bad_suite_list() -> None:
    body = encode_client_hello(
        ClientHello(0xFEFD, bytes(32), b"", b"", (1,), b"\x00", ((5, b""), (5, b"")))
    )
    with pytest.raises(BadRecord):
        pull_client_hello_untrusted(body)
    odd = bytes(2 + 32) + b"\x00\x00\x00\x03\x00\x01\x00\x01\x00"
    with pytest.raises(BadRecord):
        pull_client_hello_untrusted(odd)


def test_peek_finds_app_id_and_record_fields() -> None:
    info = peek_client_hello_untrusted(hello_datagram(seq=1))
    assert info is not None
    assert (info.record_version, info.epoch_seq, info.message_seq) == (0xFEFF, 9, 1)
    assert info.app_id == b"abc" == info.lookup_id  # ocserv looks at extension 48018 first.
    assert info.session_id == b"S" * 32
    assert info.random == HELLO.random
    assert info.cipher_suites == (0x00A9, 0xCCAB)


def test_peek_returns_none_for_other_datagrams() -> None:
    assert peek_client_hello_untrusted(b"") is None
    assert peek_client_hello_untrusted(encode_record(23, 0xFEFD, 1 << 48, bytes(40))) is None
    finished = encode_record(22, 0xFEFD, 0, encode_handshake(20, 1, bytes(12)))
    assert peek_client_hello_untrusted(finished) is None
    epoch1 = bytearray(hello_datagram())
    epoch1[4] = 1
    assert peek_client_hello_untrusted(bytes(epoch1)) is None


def test_peek_refuses_zero_random_fragments_and_bad_versions() -> None:
    zero = ClientHello(0xFEFD, bytes(32), b"", b"", (0x00A9,), b"\x00")
    with pytest.raises(BadRecord):
        peek_client_hello_untrusted(hello_datagram(zero))
    with pytest.raises(BadRecord):
        peek_client_hello_untrusted(hello_datagram(version=0x0303))
    body = encode_client_hello(HELLO)
    partial = b"\x01" + len(body).to_bytes(3, "big") + bytes(5) + b"\x00\x00\x10" + body[:16]
    with pytest.raises(BadRecord):
        peek_client_hello_untrusted(encode_record(22, 0xFEFD, 0, partial))
    with pytest.raises(BadRecord):
        peek_client_hello_untrusted(hello_datagram()[:-1])
