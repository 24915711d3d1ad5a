"""Stateless HelloVerifyRequest cookies for PSK-NEGOTIATE (RFC 6347 §4.2.1).

Theory of operation (after trio ``_dtls.py``). Before a client proves it can receive at its
address, the server keeps no state for it: the cookie is ``HMAC-SHA256(K_period, address ||
ClientHello parameters)`` where ``K_period = HMAC-SHA256(K, period number)``, a period lasts
``lifetime`` seconds and a cookie from the current or the previous period is accepted. ``K`` is
the jar's only state, drawn once; one jar serves every session. The parameters are the client
version, random, session_id, suites and compression methods, which RFC 6347 requires the second
ClientHello to repeat.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from ocgate.dtls._messages import (
    ClientHelloInfo,
    HandshakeType,
    encode_handshake,
    encode_hello_verify_request,
)
from ocgate.dtls._record import ContentType, encode_record
from ocgate.dtls._suites import ProtocolVersion
from ocgate.errors import BadRecord, LocalProtocolError

__all__ = ["Address", "CookieJar"]

Address = tuple[object, ...]
"""A peer address as the socket layer gives it; only the first two items (host, port) count."""


class CookieJar:
    """Mints and checks HelloVerifyRequest cookies; share one jar between all associations.

    :param random_bytes: source of the jar's key.
    :param lifetime: seconds a cookie period lasts (a cookie lives one to two periods).
    """

    def __init__(
        self, *, random_bytes: Callable[[int], bytes] = os.urandom, lifetime: float = 30.0
    ) -> None:
        if lifetime <= 0:
            raise LocalProtocolError("cookie lifetime must be positive")
        self._key = random_bytes(32)
        self._lifetime = lifetime

    def __repr__(self) -> str:
        return f"CookieJar(lifetime={self._lifetime})"

    def _cookie(self, info: ClientHelloInfo, addr: Address, period: int) -> bytes:
        period_key = hmac.digest(self._key, period.to_bytes(8, "big", signed=True), "sha256")
        hello = info.hello
        material = b"|".join(
            (
                repr(tuple(addr[:2])).encode(),
                hello.client_version.to_bytes(2, "big"),
                hello.random,
                hello.session_id,
                b"".join(s.to_bytes(2, "big") for s in hello.cipher_suites),
                hello.compression_methods,
            )
        )
        return hmac.digest(period_key, material, "sha256")

    def _period(self, now: float) -> int:
        return int(now // self._lifetime)

    def hello_verify_request(self, info: ClientHelloInfo, addr: Address, now: float) -> bytes:
        """Return the HelloVerifyRequest datagram answering ``info`` from ``addr``.

        It reuses the ClientHello's record sequence number and message_seq (RFC 6347 §4.2.1).
        """
        cookie = self._cookie(info, addr, self._period(now))
        # RFC 6347 §4.2.1: HelloVerifyRequest carries DTLS 1.0 whatever is negotiated later;
        # a DTLS 0.9 client gets its own version back (OpenSSL bad_dtls_test.c).
        version = (
            ProtocolVersion.DTLS1_BAD_VER
            if info.record_version == ProtocolVersion.DTLS1_BAD_VER
            else ProtocolVersion.DTLS1_0
        )
        body = encode_hello_verify_request(version, cookie)
        message = encode_handshake(HandshakeType.hello_verify_request, info.message_seq, body)
        return encode_record(ContentType.handshake, version, info.epoch_seq, message)

    def check(self, info: ClientHelloInfo, addr: Address, now: float) -> None:
        """Raise :class:`BadRecord` unless ``info`` carries a cookie we minted for ``addr``."""
        period = self._period(now)
        ok = False
        for candidate in (period, period - 1):
            ok |= hmac.compare_digest(info.cookie, self._cookie(info, addr, candidate))
        if not ok:
            raise BadRecord("missing or invalid DTLS cookie")
