"""The memory-BIO TLS endpoint against an in-memory pyOpenSSL client (no sockets)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from OpenSSL import SSL

from ocgate.errors import ConfigError
from ocgate.tls import (
    TlsEndpoint,
    TlsFailure,
    build_server_context,
    load_credentials,
    translate_priorities,
)
from tests.pki import make_pki


def _write_pair(directory: Path) -> tuple[str, str]:
    """A server certificate and its key from the shared test PKI, as cert.pem / key.pem."""
    pki = make_pki(directory / "pki")
    cert, key = directory / "cert.pem", directory / "key.pem"
    shutil.copyfile(pki.server.cert_path, cert)
    shutil.copyfile(pki.server.key_path, key)
    return str(cert), str(key)


def _pump(client: SSL.Connection, server: TlsEndpoint) -> bytes:
    """Move bytes both ways until quiet; return the plaintext the server received."""
    received = b""
    for _ in range(20):
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        moved = False
        try:
            out = client.bio_read(65536)
        except SSL.WantReadError:
            out = b""
        if out:
            received += server.receive_data(out)
            moved = True
        back = server.data_to_send()
        if back:
            client.bio_write(back)
            moved = True
        if not moved:
            break
    return received


def _client(version: int) -> SSL.Connection:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(version)
    ctx.set_max_proto_version(version)
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    return conn


@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION])
def test_handshake_data_and_one_record_per_send(tmp_path: Path, version: int) -> None:
    cert, key = _write_pair(tmp_path)
    ctx = build_server_context(
        cert_files=(cert,), key_files=(key,), policy=translate_priorities(None)
    )
    server = TlsEndpoint(ctx)
    client = _client(version)
    _pump(client, server)
    assert server.handshake_complete
    client.send(b"hello")
    assert _pump(client, server) == b"hello"
    # Two sends must be two records: openconnect reads one CSTP frame per record.
    server.send(b"A" * 100)
    server.send(b"B" * 100)
    wire = server.data_to_send()
    records = []
    while wire:
        length = int.from_bytes(wire[3:5], "big")
        records.append(wire[: 5 + length])
        wire = wire[5 + length :]
    assert len(records) == 2
    assert server.cipher_description().startswith("(TLS1.")
    exported = server.export_keying_material(b"EXPORTER-openconnect-psk", 32)
    assert exported == client.export_keying_material(b"EXPORTER-openconnect-psk", 32)


def test_tls11_client_is_refused(tmp_path: Path) -> None:
    cert, key = _write_pair(tmp_path)
    ctx = build_server_context(
        cert_files=(cert,), key_files=(key,), policy=translate_priorities(None)
    )
    server = TlsEndpoint(ctx)
    client = _client(SSL.TLS1_1_VERSION)
    with pytest.raises((TlsFailure, SSL.Error)):
        _pump(client, server)


def test_garbage_raises_tls_failure(tmp_path: Path) -> None:
    cert, key = _write_pair(tmp_path)
    ctx = build_server_context(
        cert_files=(cert,), key_files=(key,), policy=translate_priorities(None)
    )
    with pytest.raises(TlsFailure):
        TlsEndpoint(ctx).receive_data(b"GET / HTTP/1.1\r\n\r\n")


def test_mismatched_key_is_a_config_error(tmp_path: Path) -> None:
    cert, _ = _write_pair(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, key = _write_pair(other)
    with pytest.raises(ConfigError, match="server-cert"):
        build_server_context(
            cert_files=(cert,), key_files=(key,), policy=translate_priorities(None)
        )


def test_credentials_pin_matches_openconnect_format(tmp_path: Path) -> None:
    cert, _ = _write_pair(tmp_path)
    creds = load_credentials(cert)
    assert creds.pin_sha256.startswith("pin-sha256:")
    assert len(creds.pin_sha256) == 11 + 44
    assert len(creds.sha1_hex) == 40
    assert creds.sha1_hex == creds.sha1_hex.upper()


def _anonymous_kib() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1])
    raise AssertionError("no Anonymous line in smaps_rollup")


def test_a_burst_does_not_stay_with_the_connection(tmp_path: Path) -> None:
    """OpenSSL's memory BIOs never shrink; the endpoint replaces them after the handshake and
    after a burst, so a connection that once moved 256 KiB at once does not keep 256 KiB (it
    did: 221 KB per connection measured before, 22 KB after)."""
    cert, key = _write_pair(tmp_path)
    ctx = build_server_context(
        cert_files=(cert,), key_files=(key,), policy=translate_priorities(None)
    )
    burst = 256 * 1024
    keep: list[TlsEndpoint] = []  # The servers only: the client's own BIOs keep their bursts.

    def one() -> None:
        server, client = TlsEndpoint(ctx), _client(SSL.TLS1_3_VERSION)
        _pump(client, server)
        client.sendall(b"u" * burst)  # Up: one receive_data of 256 KiB of records.
        assert len(server.receive_data(client.bio_read(2 * burst))) == burst
        for _ in range(burst // 16384):  # Down: 256 KiB of records drained at once.
            server.send(b"d" * 16384)
        client.bio_write(server.data_to_send())
        got = b""
        with contextlib.suppress(SSL.WantReadError):
            while len(got) < burst:
                got += client.recv(65536)
        assert got == b"d" * burst
        client.send(b"still fine")  # The replaced BIOs carry on.
        assert _pump(client, server) == b"still fine"
        keep.append(server)

    for _ in range(20):
        one()
    before, count = _anonymous_kib(), 200
    for _ in range(count):
        one()
    per_connection = (_anonymous_kib() - before) / count
    assert per_connection < 64, f"{per_connection:.0f} KiB kept per connection"


def test_fresh_bios_keep_bytes_still_waiting() -> None:
    # Whatever sits in the old read BIO when the pair is replaced moves to the new one, in order.
    from OpenSSL import SSL
    from OpenSSL._util import ffi, lib

    from ocgate.tls._records import RecordIO

    conn = SSL.Connection(SSL.Context(SSL.TLS_SERVER_METHOD), None)
    io = RecordIO(conn)
    io.feed(b"partial record")
    old = conn._into_ssl
    io.fresh_bios()
    assert conn._into_ssl != old
    buf = ffi.new("char[]", 100)
    n = lib.BIO_read(conn._into_ssl, buf, 100)
    assert ffi.buffer(buf, n)[:] == b"partial record"
