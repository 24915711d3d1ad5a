"""A self-signed server certificate for the test gateway, and its openconnect pin."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = ["ServerCert", "make_server_cert", "pin_sha256"]


@dataclass(frozen=True, slots=True)
class ServerCert:
    """PEM files on disk and the value for ``openconnect --servercert``."""

    cert_path: Path
    key_path: Path
    pin: str


def pin_sha256(cert: x509.Certificate) -> str:
    """``pin-sha256:<base64 SHA-256 of the SubjectPublicKeyInfo DER>`` as openconnect expects it."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def make_server_cert(directory: Path, host: str, *, rsa_key: bool = False) -> ServerCert:
    """Write a self-signed ECDSA P-256 certificate for ``host`` (an IP) into ``directory``.

    ``rsa_key`` makes it RSA-2048 instead: ocserv offers the Cisco ``ECDHE-RSA-*`` DTLS suites
    only with an RSA key (with an ECDSA key it offers no DTLS to such a client).
    """
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if rsa_key:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / "server-cert.pem"
    key_path = directory / "server-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ServerCert(cert_path=cert_path, key_path=key_path, pin=pin_sha256(cert))
