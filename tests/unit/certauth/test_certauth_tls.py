"""A TLS handshake in memory where the server asks for a client certificate and verifies it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from OpenSSL import SSL, crypto

from ocgate.certauth import (
    CertPolicy,
    CertRequest,
    cert_request_mode,
    configure_client_cert_request,
    load_cert_policy,
    peer_chain_der,
)
from ocgate.config import AuthMethod, Config
from ocgate.errors import AuthFailed, ConfigError
from tests.pki import IssuedCert, Pki, make_pki

VERSIONS = [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _server(pki: Pki, *, required: bool) -> SSL.Connection:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.use_certificate_file(str(pki.server.cert_path))
    ctx.use_privatekey_file(str(pki.server.key_path))
    ctx.set_session_id(b"ocgate-test")
    configure_client_cert_request(ctx, required=required, ca_file=str(pki.ca.cert_path))
    conn = SSL.Connection(ctx, None)
    conn.set_accept_state()
    return conn


def _client(version: int, user: IssuedCert | None) -> SSL.Connection:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(version)
    ctx.set_max_proto_version(version)
    if user is not None:
        ctx.use_certificate_chain_file(str(user.cert_path))
        ctx.use_privatekey_file(str(user.key_path))
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    return conn


def _step(conn: SSL.Connection) -> None:
    with contextlib.suppress(SSL.WantReadError):
        conn.do_handshake()


def _transfer(source: SSL.Connection, sink: SSL.Connection) -> bool:
    try:
        data = source.bio_read(65536)
    except SSL.WantReadError:
        return False
    sink.bio_write(data)
    return bool(data)


def _handshake(client: SSL.Connection, server: SSL.Connection) -> None:
    """Move records both ways until neither side has anything to send."""
    for _ in range(20):
        _step(client)
        moved = _transfer(client, server)
        _step(server)
        moved = _transfer(server, client) or moved
        if not moved:
            break
    # TLS 1.3: the server learns the client certificate from the client's second flight; the
    # extra round lets a failing server send its alert and the client read session tickets.
    _step(client)


@pytest.mark.parametrize("version", VERSIONS)
def test_presented_chain_verifies(pki: Pki, version: int) -> None:
    server, client = _server(pki, required=True), _client(version, pki.dave)
    _handshake(client, server)
    chain = peer_chain_der(server)
    assert chain == pki.dave.chain_der
    verifier = load_cert_policy(
        CertPolicy(ca_file=str(pki.ca.cert_path), crl_file=str(pki.crl_path), user_oid="2.5.4.3")
    )
    assert verifier.verify(chain, pki.now).username == "dave"


@pytest.mark.parametrize("version", VERSIONS)
def test_untrusted_certificate_passes_tls_and_fails_verification(pki: Pki, version: int) -> None:
    server, client = _server(pki, required=True), _client(version, pki.stranger)
    _handshake(client, server)
    verifier = load_cert_policy(CertPolicy(ca_file=str(pki.ca.cert_path)))
    with pytest.raises(AuthFailed, match="not signed by ca-cert"):
        verifier.verify(peer_chain_der(server), pki.now)


# Found by fuzz/targets/fuzz_certauth.py (tests/vectors/fuzz/SOURCES.md): a certificate whose
# version field is 18. OpenSSL sends and accepts it; cryptography refuses to load it with
# InvalidVersion, which is not a ValueError, so reading the chain raised in the worker.
FUZZ_VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "fuzz"
FUZZ_LEAF_KEY = 0xA11CE


@pytest.mark.parametrize("version", VERSIONS)
def test_fuzz_certificate_with_unknown_version_is_refused_not_raised(
    pki: Pki, version: int, tmp_path: Path
) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(
        ec.derive_private_key(FUZZ_LEAF_KEY, ec.SECP256R1()).private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(version)
    ctx.set_max_proto_version(version)
    leaf = FUZZ_VECTORS / "certauth-x509-version-18.der"
    ctx.use_certificate_file(str(leaf), crypto.FILETYPE_ASN1)
    ctx.use_privatekey_file(str(key))
    client = SSL.Connection(ctx, None)
    client.set_connect_state()
    server = _server(pki, required=True)
    _handshake(client, server)
    chain = peer_chain_der(server)
    assert chain == [leaf.read_bytes()]
    verifier = load_cert_policy(CertPolicy(ca_file=str(pki.ca.cert_path)))
    with pytest.raises(AuthFailed, match="malformed certificate"):
        verifier.verify(chain, pki.now)


@pytest.mark.parametrize("version", VERSIONS)
def test_requested_but_not_sent(pki: Pki, version: int) -> None:
    server, client = _server(pki, required=False), _client(version, None)
    _handshake(client, server)
    assert server.get_peer_certificate() is None
    assert peer_chain_der(server) == []
    verifier = load_cert_policy(CertPolicy(ca_file=str(pki.ca.cert_path)))
    with pytest.raises(AuthFailed, match="no certificate"):
        verifier.verify(peer_chain_der(server), pki.now)


@pytest.mark.parametrize("version", VERSIONS)
def test_required_but_not_sent_fails_the_handshake(pki: Pki, version: int) -> None:
    server, client = _server(pki, required=True), _client(version, None)

    def run() -> None:
        for _ in range(10):
            _step(client)
            _transfer(client, server)
            _step(server)
            _transfer(server, client)

    with pytest.raises(SSL.Error, match="peer did not return a certificate"):
        run()


def test_client_learns_the_acceptable_cas(pki: Pki) -> None:
    server, client = _server(pki, required=False), _client(SSL.TLS1_2_VERSION, None)
    _handshake(client, server)
    names = client.get_client_ca_list()
    assert [name.der() for name in names] == [pki.ca.name.public_bytes()]


def test_unloadable_ca_file(tmp_path: Path) -> None:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    with pytest.raises(ConfigError) as info:
        configure_client_cert_request(ctx, required=False, ca_file=str(tmp_path / "none.pem"))
    assert info.value.key == "ca-cert"


def _config(*methods: str, enable: tuple[str, ...] = (), cisco: bool = False) -> Config:
    return Config(
        source="test.conf",
        auth=tuple(AuthMethod(name=m) for m in methods),
        enable_auth=tuple(AuthMethod(name=m) for m in enable),
        cisco_client_compat=cisco,
    )


@pytest.mark.parametrize(
    ("config", "mode"),
    [
        (_config("plain"), CertRequest.IGNORE),
        (_config("certificate"), CertRequest.REQUIRE),
        (_config("certificate", cisco=True), CertRequest.REQUEST),
        (_config("certificate", "plain"), CertRequest.REQUEST),
        (_config("pam", enable=("certificate",)), CertRequest.REQUEST),
        (_config("certificate", enable=("gssapi",)), CertRequest.REQUEST),
    ],
)
def test_cert_request_mode(config: Config, mode: CertRequest) -> None:
    assert cert_request_mode(config) is mode
