"""The client's first TLS flight: ``offers_secure_renegotiation_untrusted`` (raises nothing).

It decides whether a client may be told ``X-CSTP-Rekey-Method: ssl`` (RFC 5746 offered in its
ClientHello), so it must never raise and never say yes by accident. Input: byte 0 picks the mode.
Raw mode feeds the rest as the flight. Built mode reads cipher suites and extension types from the
rest, encodes a ClientHello with them (split over two records at a fuzzed point) and checks the
answer against the list: yes exactly when the SCSV (0x00FF) or ``renegotiation_info`` (0xFF01) is
in it. Seeds: real OpenSSL ClientHellos (TLS 1.2 and 1.3) and built ones.
"""

from __future__ import annotations

import contextlib

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.tls._endpoint import offers_secure_renegotiation_untrusted

_SCSV = 0x00FF
_RENEGOTIATION_INFO = 0xFF01


def _u16s(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2)]


def _built(data: bytes) -> tuple[bytes, bool]:
    split = data[0] if data else 0
    half = (len(data) - 1) // 2
    suites, ext_types = _u16s(data[1 : 1 + half])[:64] or [0xC02F], _u16s(data[1 + half :])[:32]
    body = b"\x03\x03" + bytes(32) + b"\x00"
    body += (2 * len(suites)).to_bytes(2, "big") + b"".join(s.to_bytes(2, "big") for s in suites)
    extensions = b"".join(t.to_bytes(2, "big") + b"\x00\x01\x00" for t in ext_types)
    body += b"\x01\x00" + len(extensions).to_bytes(2, "big") + extensions
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    cut = 1 + split % len(message)
    records = b"".join(
        b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part
        for part in (message[:cut], message[cut:])
        if part
    )
    return records, _SCSV in suites or _RENEGOTIATION_INFO in ext_types


def test_one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] % 2 == 0:
        assert isinstance(offers_secure_renegotiation_untrusted(data[1:]), bool)
        return
    flight, expected = _built(data[1:])
    assert offers_secure_renegotiation_untrusted(flight) is expected, "wrong RFC 5746 answer"


def seeds() -> list[bytes]:
    """Real OpenSSL ClientHellos (raw mode) and built hellos with and without RFC 5746."""
    from OpenSSL import SSL

    out: list[bytes] = []
    for version in (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION):
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_max_proto_version(version)
        conn = SSL.Connection(ctx, None)
        conn.set_connect_state()
        with contextlib.suppress(SSL.WantReadError):
            conn.do_handshake()
        out.append(b"\x00" + conn.bio_read(16384))
    out.append(b"\x01\x07" + b"\xc0\x2f\x00\xff" + b"\x00\x00\x00\x0a")
    out.append(b"\x01\x30" + b"\xc0\x2f\xc0\x30" + b"\x00\x00\xff\x01")
    out.append(b"\x01\x00" + b"\xc0\x2f\xc0\x30" + b"\x00\x00\x00\x0a")
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
