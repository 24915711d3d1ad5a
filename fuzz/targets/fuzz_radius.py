"""RADIUS replies: ``decode_reply_untrusted`` then ``interpret_accept_untrusted`` /
``interpret_challenge_untrusted`` and the session settings an Access-Accept changes (only
``RemoteProtocolError``, and ``ConfigError`` from the settings, which the login turns into a
refusal).

The target holds the shared secret (the "test key"): bit 0 of the selector byte has it sign the
fuzzed reply with a valid Response Authenticator, and fill in a valid Message-Authenticator when
the attributes carry one, so the fuzzer reaches the attribute interpretation a real server's
reply reaches. Input: selector, reply code, then the attributes (RFC 2865 §5 TLVs).

Oracle: an unsigned reply is never accepted; a signed one gives the attributes back in packet
order (vendor attributes split); what it yields applies to the configuration or is refused
cleanly.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import random
import struct

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from _gateway import gateway_config

    from ocgate.errors import ConfigError, RemoteProtocolError
    from ocgate.gateway import session_settings
    from ocgate.radius._attrs import interpret_accept_untrusted, interpret_challenge_untrusted
    from ocgate.radius._codec import (
        NasInfo,
        decode_reply_untrusted,
        encode_access_request,
    )

SECRET = b"testing123"
CONFIG = gateway_config("append-routes = true\nroute = 10.10.0.0/16\n")
_CODES = (2, 3, 11, 5)
_MESSAGE_AUTHENTICATOR = 80


def _request() -> object:
    return encode_access_request(
        secret=SECRET,
        username="alice",
        password="alicepass",
        nas=NasInfo(identifier="ocgate"),
        client_ip="198.18.0.2",
        user_agent="Open AnyConnect VPN Agent v9.01-3",
        session_id="0123abcd",
        state=None,
        random_bytes=random.Random(0).randbytes,
    )


REQUEST = _request()


def sign(code: int, attributes: bytes) -> bytes:
    """A reply to :data:`REQUEST` that passes the authenticator checks (RFC 2865 §3, RFC 3579)."""
    packet = REQUEST.packet  # type: ignore[attr-defined]
    header = struct.pack("!BBH", code, packet.id, 20 + len(attributes))
    pos = 0
    while pos + 2 <= len(attributes):
        kind, length = attributes[pos], attributes[pos + 1]
        if length < 2:
            break
        if kind == _MESSAGE_AUTHENTICATOR and length == 18:
            zeroed = attributes[: pos + 2] + bytes(16) + attributes[pos + 18 :]
            mac = hmac.new(SECRET, header + packet.authenticator + zeroed, "md5").digest()
            attributes = attributes[: pos + 2] + mac + attributes[pos + 18 :]
            break
        pos += length
    response = hashlib.md5(header + packet.authenticator + attributes + SECRET).digest()
    return header + response + attributes


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    selector, code, attributes = data[0], _CODES[data[1] % len(_CODES)], data[2:]
    unsigned = bytes((code, REQUEST.packet.id)) + attributes  # type: ignore[attr-defined]
    raw = sign(code, attributes) if selector & 1 else unsigned
    try:
        reply = decode_reply_untrusted(REQUEST, raw)  # type: ignore[arg-type]
    except RemoteProtocolError:
        return
    assert selector & 1, "an unsigned reply was accepted"
    try:
        if reply.code == 2:
            result = interpret_accept_untrusted(
                reply.attributes,
                username="alice",
                groupconfig=bool(selector & 2),
                group_separator=";",
                override_interim_updates=bool(selector & 4),
            )
            with contextlib.suppress(ConfigError):  # The login refuses these cleanly.
                session_settings(CONFIG, username="alice", group=None, radius=result)
        elif reply.code == 11:
            interpret_challenge_untrusted(reply.attributes, round=1 + (selector >> 4), server=0)
    except RemoteProtocolError:
        return


def _attr(kind: int, value: bytes) -> bytes:
    return bytes((kind, 2 + len(value))) + value


def _vsa(vendor: int, kind: int, value: bytes) -> bytes:
    return _attr(26, vendor.to_bytes(4, "big") + _attr(kind, value))


def seeds() -> list[bytes]:
    """Replies like FreeRADIUS sends to ocserv (attributes of ocserv ``src/auth/radius.c``)."""
    accept = b"".join(
        (
            _attr(80, bytes(16)),
            _attr(6, (2).to_bytes(4, "big")),
            _attr(8, bytes((10, 77, 0, 9))),
            _attr(9, bytes((255, 255, 255, 0))),
            _attr(22, b"192.0.2.0/24 0.0.0.0 1"),
            _attr(99, b"2001:db8::/32 :: 1"),
            _attr(97, bytes((0, 64)) + bytes.fromhex("20010db800000001")),
            _attr(168, bytes.fromhex("20010db8000000010000000000000002")),
            _attr(25, b"OU=eng;ops"),
            _attr(27, (3600).to_bytes(4, "big")),
            _attr(28, (600).to_bytes(4, "big")),
            _attr(85, (60).to_bytes(4, "big")),
            _vsa(311, 28, bytes((10, 77, 0, 1))),
            _vsa(10055, 1, (1000).to_bytes(4, "big")),
            _attr(18, b"Welcome"),
        )
    )
    challenge = _attr(80, bytes(16)) + _attr(24, b"state-1") + _attr(18, b"Enter code")
    return [
        b"\x03\x00" + accept,
        b"\x01\x02" + challenge,
        b"\x01\x01" + _attr(80, bytes(16)) + _attr(18, b"Denied"),
        b"\x00\x00" + accept,
    ]


if __name__ == "__main__":
    _harness.main(test_one_input)
