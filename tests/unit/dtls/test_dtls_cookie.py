"""Stateless HelloVerifyRequest cookies (RFC 6347 §4.2.1)."""

from __future__ import annotations

import dataclasses

import pytest

from ocgate.dtls import CookieJar, peek_client_hello_untrusted
from ocgate.dtls._messages import HandshakeType, pull_hello_verify_request_untrusted
from ocgate.dtls._record import records_untrusted
from ocgate.errors import BadRecord, LocalProtocolError
from tests.unit.dtls.test_dtls_messages import HELLO, hello_datagram

ADDR = ("198.51.100.2", 4444)


def with_cookie(cookie: bytes, **changes: object) -> object:
    info = peek_client_hello_untrusted(hello_datagram())
    assert info is not None
    hello = dataclasses.replace(info.hello, cookie=cookie, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(info, hello=hello)


def test_hello_verify_request_and_check() -> None:
    jar = CookieJar(random_bytes=lambda n: b"k" * n)
    info = peek_client_hello_untrusted(hello_datagram())
    assert info is not None
    datagram = jar.hello_verify_request(info, ADDR, 100.0)
    (record,) = list(records_untrusted(datagram))
    assert (record.content_type, record.version, record.epoch_seq) == (22, 0xFEFF, 9)
    assert record.fragment[0] == HandshakeType.hello_verify_request
    version, cookie = pull_hello_verify_request_untrusted(record.fragment[12:])
    assert version == 0xFEFF
    assert len(cookie) == 32
    jar.check(with_cookie(cookie), ADDR, 100.0)  # type: ignore[arg-type]
    jar.check(with_cookie(cookie), ADDR, 125.0)  # type: ignore[arg-type]  # The next period too.
    for addr, now, changes in [
        (("198.51.100.3", 4444), 100.0, {}),
        (("198.51.100.2", 4445), 100.0, {}),
        (ADDR, 200.0, {}),
        (ADDR, 100.0, {"random": bytes(range(2, 34))}),
        (ADDR, 100.0, {"cipher_suites": (0x00A8,)}),
    ]:
        with pytest.raises(BadRecord):
            jar.check(with_cookie(cookie, **changes), addr, now)  # type: ignore[arg-type]
    with pytest.raises(BadRecord):
        jar.check(info, ADDR, 100.0)  # No cookie at all.
    assert HELLO.session_id not in repr(jar).encode()


def test_jars_do_not_share_cookies_and_dtls09_gets_its_version() -> None:
    info = peek_client_hello_untrusted(hello_datagram(version=0x0100))
    assert info is not None
    datagram = CookieJar().hello_verify_request(info, ADDR, 0.0)
    assert datagram[1:3] == b"\x01\x00"
    cookie = pull_hello_verify_request_untrusted(datagram[25:])[1]
    with pytest.raises(BadRecord):
        CookieJar().check(with_cookie(cookie), ADDR, 0.0)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        CookieJar(lifetime=0)
