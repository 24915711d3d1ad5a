"""Every DTLS ``*_untrusted`` parser and the cookie check raise only ``BadRecord``.

Input: a selector byte, then the bytes for the parser it picks: ``records_untrusted`` (a
datagram), ``peek_client_hello_untrusted`` (+ :class:`CookieJar` check and HelloVerifyRequest),
``handshake_fragments_untrusted``, ``pull_client_hello_untrusted``,
``pull_server_hello_untrusted``, ``pull_hello_verify_request_untrusted``,
``pull_psk_client_key_exchange_untrusted`` and ``pull_alert_untrusted`` (a message body).

Oracle: whatever parses re-encodes and parses back to the same value; a HelloVerifyRequest our
jar makes for a peeked hello is a record that parses and carries a cookie the jar accepts.
"""

from __future__ import annotations

import contextlib
import json

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.dtls import CookieJar
    from ocgate.dtls._messages import (
        ClientHello,
        HandshakeType,
        encode_client_hello,
        encode_handshake,
        encode_hello_verify_request,
        encode_psk_client_key_exchange,
        encode_server_hello,
        handshake_fragments_untrusted,
        peek_client_hello_untrusted,
        pull_alert_untrusted,
        pull_client_hello_untrusted,
        pull_hello_verify_request_untrusted,
        pull_psk_client_key_exchange_untrusted,
        pull_server_hello_untrusted,
    )
    from ocgate.dtls._record import encode_record, records_untrusted
    from ocgate.errors import BadRecord

_JAR = CookieJar(random_bytes=lambda n: bytes(range(n)))
_ADDR = ("192.0.2.7", 40000)


def _records(data: bytes) -> None:
    for record in records_untrusted(data):
        again = encode_record(
            record.content_type, record.version, record.epoch_seq, record.fragment
        )
        assert list(records_untrusted(again)) == [record]


def _peek(data: bytes) -> None:
    info = peek_client_hello_untrusted(data)
    if info is None:
        return
    with contextlib.suppress(BadRecord):  # Most hellos carry no cookie of ours.
        _JAR.check(info, _ADDR, 100.0)
    reply = _JAR.hello_verify_request(info, _ADDR, 100.0)
    (record,) = records_untrusted(reply)
    (fragment,) = handshake_fragments_untrusted(record.fragment)
    assert fragment.msg_type == HandshakeType.hello_verify_request
    _, cookie = pull_hello_verify_request_untrusted(fragment.body)
    hello = ClientHello(
        info.client_version,
        info.random,
        info.session_id,
        cookie,
        info.cipher_suites,
        info.hello.compression_methods,
        info.hello.extensions,
    )
    message = encode_handshake(HandshakeType.client_hello, 1, encode_client_hello(hello))
    second = peek_client_hello_untrusted(
        encode_record(22, info.record_version, info.epoch_seq, message)
    )
    assert second is not None
    _JAR.check(second, _ADDR, 100.0)  # Must not raise: the client echoed our cookie.


def _fragments(data: bytes) -> None:
    for fragment in handshake_fragments_untrusted(data):
        assert fragment.frag_offset + len(fragment.body) <= fragment.length


def _client_hello(data: bytes) -> None:
    hello = pull_client_hello_untrusted(data)
    assert pull_client_hello_untrusted(encode_client_hello(hello)) == hello


def _server_hello(data: bytes) -> None:
    hello = pull_server_hello_untrusted(data)
    assert pull_server_hello_untrusted(encode_server_hello(hello)) == hello


def _hello_verify(data: bytes) -> None:
    version, cookie = pull_hello_verify_request_untrusted(data)
    assert encode_hello_verify_request(version, cookie) == data


def _psk_cke(data: bytes) -> None:
    identity = pull_psk_client_key_exchange_untrusted(data)
    assert encode_psk_client_key_exchange(identity) == data


def _alert(data: bytes) -> None:
    assert bytes(pull_alert_untrusted(data)) == data


_PARSERS = (
    _records,
    _peek,
    _fragments,
    _client_hello,
    _server_hello,
    _hello_verify,
    _psk_cke,
    _alert,
)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    with contextlib.suppress(BadRecord):
        _PARSERS[data[0] % len(_PARSERS)](data[1:])


def seeds() -> list[bytes]:
    """Every datagram a real GnuTLS 3.7.9 client sent (tests/vectors/dtls), for each parser."""
    transcripts = json.loads((_harness.VECTORS / "dtls" / "gnutls_transcripts.json").read_text())
    datagrams = [
        bytes.fromhex(d) for case in transcripts["cases"].values() for d in case["client_datagrams"]
    ]
    out: list[bytes] = []
    hellos = [d for d in datagrams if d[0] == 22 and d[3:5] == b"\0\0" and d[13] == 1]
    for datagram in datagrams[::3]:
        out.append(b"\x00" + datagram)
    for hello in hellos:
        out += [b"\x01" + hello, b"\x02" + hello[13:], b"\x03" + hello[25:]]
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
