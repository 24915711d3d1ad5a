"""Rekeying on the memory-BIO TLS endpoint (``rekey-method = ssl``, ocserv ``tls_mainloop``).

The peer is a real OpenSSL client (pyOpenSSL) that renegotiates with ``SSL_renegotiate``, as
openconnect's GnuTLS does with ``gnutls_handshake`` on a live TLS 1.2 session.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from OpenSSL import SSL

from ocgate.tls import TlsEndpoint, TlsFailure, build_server_context, translate_priorities
from ocgate.tls._endpoint import offers_secure_renegotiation_untrusted
from tests.unit.tls.test_tls_endpoint import _client, _pump, _write_pair


def _server(tmp_path: Path, *, renegotiation: bool) -> TlsEndpoint:
    cert, key = _write_pair(tmp_path)
    ctx = build_server_context(
        cert_files=(cert,),
        key_files=(key,),
        policy=translate_priorities(None),
        renegotiation=renegotiation,
    )
    return TlsEndpoint(ctx)


def _step(client: SSL.Connection, server: TlsEndpoint, now: float) -> bytes:
    """One client flight to the server and the server's answer back; the server's plaintext."""
    with contextlib.suppress(SSL.WantReadError):
        client.do_handshake()
    try:
        out = client.bio_read(65536)
    except SSL.WantReadError:
        out = b""
    plaintext = server.receive_data(out, now) if out else b""
    back = server.data_to_send()
    if back:
        client.bio_write(back)
    return plaintext


def _connected(tmp_path: Path, *, renegotiation: bool = True) -> tuple[SSL.Connection, TlsEndpoint]:
    server = _server(tmp_path, renegotiation=renegotiation)
    client = _client(SSL.TLS1_2_VERSION)
    _pump(client, server)
    assert server.handshake_complete
    return client, server


def _renegotiate(client: SSL.Connection, server: TlsEndpoint, now: float) -> None:
    assert client.renegotiate()
    _step(client, server, now)  # ClientHello -> ServerHello ... ServerHelloDone
    _step(client, server, now)  # ClientKeyExchange, Finished -> ChangeCipherSpec, Finished
    with contextlib.suppress(SSL.WantReadError):
        client.do_handshake()


def test_secure_renegotiation_keeps_the_connection_and_holds_records(tmp_path: Path) -> None:
    client, server = _connected(tmp_path)
    assert server.secure_renegotiation  # OpenSSL offers renegotiation_info / the SCSV.
    server.rekey_interval = 10.0
    assert client.renegotiate()
    _step(client, server, 100.0)
    # Mid-handshake OpenSSL cannot encrypt data: the records wait, in order, one per send.
    server.send(b"first")
    server.send(b"second")
    _step(client, server, 100.5)
    with contextlib.suppress(SSL.WantReadError):
        client.do_handshake()
    assert server.renegotiations == 1
    assert client.total_renegotiations() == 1
    assert client.recv(100) == b"first"
    assert client.recv(100) == b"second"
    client.send(b"after")
    assert _step(client, server, 101.0) == b"after"


def test_a_second_renegotiation_sooner_than_the_interval_closes(tmp_path: Path) -> None:
    client, server = _connected(tmp_path)
    server.rekey_interval = 10.0
    _renegotiate(client, server, 100.0)  # The first one is always allowed (ocserv).
    assert server.renegotiations == 1
    assert client.renegotiate()
    with pytest.raises(TlsFailure, match="too soon"):
        _step(client, server, 109.0)
    assert server.data_to_send() == b""  # Our half of that handshake is not sent.


def test_a_renegotiation_after_the_interval_is_accepted(tmp_path: Path) -> None:
    client, server = _connected(tmp_path)
    server.rekey_interval = 10.0
    _renegotiate(client, server, 100.0)
    _renegotiate(client, server, 110.0)
    assert server.renegotiations == 2
    server.send(b"still here")
    client.bio_write(server.data_to_send())
    assert client.recv(100) == b"still here"


def test_renegotiation_is_refused_without_rekey_method_ssl(tmp_path: Path) -> None:
    client, server = _connected(tmp_path, renegotiation=False)
    assert client.renegotiate()
    _step(client, server, 100.0)
    with pytest.raises(SSL.Error, match="no renegotiation"):
        client.do_handshake()
    assert server.renegotiations == 0


def _hello(*, suites: bytes, extensions: bytes, split: int | None = None) -> bytes:
    body = b"\x03\x03" + bytes(32) + b"\x00" + len(suites).to_bytes(2, "big") + suites
    body += b"\x01\x00" + len(extensions).to_bytes(2, "big") + extensions
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    parts = [message] if split is None else [message[:split], message[split:]]
    return b"".join(b"\x16\x03\x01" + len(p).to_bytes(2, "big") + p for p in parts)


_RI_EXTENSION = b"\xff\x01\x00\x01\x00"
_SNI_EXTENSION = b"\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("flight", "expected"),
    [
        (_hello(suites=b"\xc0\x2f", extensions=_SNI_EXTENSION + _RI_EXTENSION), True),
        (_hello(suites=b"\xc0\x2f\x00\xff", extensions=_SNI_EXTENSION), True),
        (_hello(suites=b"\xc0\x2f", extensions=_RI_EXTENSION, split=20), True),
        (_hello(suites=b"\xc0\x2f", extensions=_SNI_EXTENSION), False),
        (_hello(suites=b"\xc0\x2f", extensions=b""), False),
        (_hello(suites=b"\xc0\x2f", extensions=_RI_EXTENSION)[:-3], False),
        (b"GET / HTTP/1.1\r\n\r\n", False),
        (b"", False),
    ],
    ids=[
        "ri-extension",
        "scsv",
        "split-hello",
        "neither",
        "no-extensions",
        "truncated",
        "http",
        "empty",
    ],
)
def test_secure_renegotiation_offer_is_read_from_the_hello(flight: bytes, expected: bool) -> None:
    assert offers_secure_renegotiation_untrusted(flight) is expected


def test_renegotiation_changes_the_psk_exporter(tmp_path: Path) -> None:
    """The PSK-DTLS key is the session's exporter (anyconnect-protocol.md §9.3); openconnect and
    ocserv derive it again for every new DTLS session, from the renegotiated TLS session, so the
    tunnel must hand the new value to the DTLS channel (``Tunnel.tls_rekeyed``)."""
    label = b"EXPORTER-openconnect-psk"
    client, server = _connected(tmp_path)
    before = server.export_keying_material(label, 32)
    assert client.export_keying_material(label, 32) == before
    _renegotiate(client, server, 100.0)
    after = server.export_keying_material(label, 32)
    assert after != before
    assert client.export_keying_material(label, 32) == after
