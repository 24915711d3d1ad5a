"""The workers' TLS contexts with virtual hosts: the files the supervisor passes
(``daemon._setup.tls_files``) and the context the client's server name (SNI) selects
(``vhost_tls_context``, ``ocgate.tls._sni``), against an in-memory pyOpenSSL client."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from cryptography import x509
from OpenSSL import SSL

from ocgate.config import Config, parse_config
from ocgate.daemon._setup import tls_files, vhost_tls_context
from ocgate.tls import TlsEndpoint, TlsFailure
from tests.interop._certs import ServerCert, make_server_cert
from tests.pki import make_pki
from tests.unit.gateway.conftest import make_config_text


def _config(config_dir: Path, b: ServerCert, extra: str = "") -> Config:
    text = make_config_text(
        config_dir,
        "ipv4-network = 10.9.0.0/24\n"
        f"[vhost:b.example]\nserver-cert = {b.cert_path}\nserver-key = {b.key_path}\n" + extra,
    )
    return parse_config(text, source=str(config_dir / "ocserv.conf"))


def _handshake(ctx: SSL.Context, server_name: bytes | None) -> tuple[x509.Certificate, TlsEndpoint]:
    """A TLS handshake of a client sending ``server_name``; the certificate it was served."""
    server = TlsEndpoint(ctx)
    client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client = SSL.Connection(client_ctx, None)
    if server_name is not None:
        client.set_tlsext_host_name(server_name)
    client.set_connect_state()
    for _ in range(20):
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        with contextlib.suppress(SSL.WantReadError):
            server.receive_data(client.bio_read(65536))
        back = server.data_to_send()
        if back:
            client.bio_write(back)
        if server.handshake_complete and not back:
            break
    assert server.handshake_complete
    peer = client.get_peer_certificate()
    assert peer is not None
    return peer.to_cryptography(), server


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_files_are_the_default_hosts_then_each_vhosts(config_dir: Path, tmp_path: Path) -> None:
    b = make_server_cert(tmp_path / "b", "192.0.2.1")
    config = _config(config_dir, b)
    assert tls_files(config) == [
        str(config_dir / "cert.pem"),
        str(config_dir / "key.pem"),
        str(b.cert_path),
        str(b.key_path),
    ]
    pki = make_pki(tmp_path / "pki")
    with_ca = _config(config_dir, b, f"ca-cert = {pki.ca.cert_path}\n")
    assert tls_files(with_ca)[4:] == [str(pki.ca.cert_path)]
    plain = parse_config(make_config_text(config_dir), source="x.conf")
    assert tls_files(plain) == [str(config_dir / "cert.pem"), str(config_dir / "key.pem")]


@pytest.mark.parametrize(
    ("sent", "vhost"),
    [
        (b"b.example", "b.example"),
        (b"B.Example.", "b.example"),
        (b"other.example", None),
        (None, None),
    ],
)
def test_the_server_name_selects_the_certificate(
    config_dir: Path, tmp_path: Path, sent: bytes | None, vhost: str | None
) -> None:
    b = make_server_cert(tmp_path / "b", "192.0.2.1")
    config = _config(config_dir, b)
    ctx, _warnings = vhost_tls_context(config, tls_files(config))
    served, endpoint = _handshake(ctx, sent)
    expected = b.cert_path if vhost else config_dir / "cert.pem"
    assert served == _cert(expected)
    assert endpoint.server_name() == sent
    assert config.vhost(endpoint.server_name()).vhost_name == vhost


def test_a_vhost_asking_for_client_certificates_asks(config_dir: Path, tmp_path: Path) -> None:
    # OpenSSL keeps the connection's verify mode when the context changes: the SNI callback
    # copies the vhost's, so its clients are asked for a certificate (the default's are not).
    b = make_server_cert(tmp_path / "b", "192.0.2.1")
    pki = make_pki(tmp_path / "pki")
    extra = f'auth = "certificate"\nca-cert = {pki.ca.cert_path}\ncert-user-oid = 2.5.4.3\n'
    config = _config(config_dir, b, extra)
    ctx, _warnings = vhost_tls_context(config, tls_files(config))

    def asked_for_a_certificate(name: bytes) -> bool:
        """Whether the server sent a CertificateRequest (the client saw its CA list)."""
        server = TlsEndpoint(ctx)
        client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        client_ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        client = SSL.Connection(client_ctx, None)
        client.set_tlsext_host_name(name)
        client.set_connect_state()
        for _ in range(20):
            with contextlib.suppress(SSL.WantReadError, SSL.Error):
                client.do_handshake()
            with contextlib.suppress(SSL.WantReadError, TlsFailure):
                server.receive_data(client.bio_read(65536))
            back = server.data_to_send()
            if not back:
                break
            client.bio_write(back)
        return bool(client.get_client_ca_list())

    assert not asked_for_a_certificate(b"a.example")
    assert asked_for_a_certificate(b"b.example")
