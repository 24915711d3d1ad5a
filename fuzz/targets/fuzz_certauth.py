"""Client certificate chains: ``CertVerifier.verify`` (``_parse_chain_untrusted``, path building,
revocation, identity extraction) raises only ``AuthFailed``.

The target holds the CA's key (the "test key"): in signing mode it takes the fuzzed bytes as the
leaf's ``TBSCertificate`` and signs it with the CA, so the fuzzer reaches everything that
follows a valid signature (validity, key usage, extension policies, the CRL, the identity
attributes) instead of stopping at the signature. Input: a selector byte (bit 0: signing mode;
bits 1-2: the ``cert-user-oid`` of the verifier; bit 3: append the CA as a presented
intermediate), then the TBSCertificate or, without signing, the leaf's DER.

Oracle: only ``AuthFailed``; an accepted certificate was signed by the CA, is valid now, not
revoked, and its user name is non-empty text without control characters (the rule of
ocgate/certauth/_identity.py).
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from pathlib import Path

import _harness
import atheris
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.certauth import CertPolicy, CertVerifier, load_cert_policy
    from ocgate.errors import AuthFailed

NOW = datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC)
CA_KEY = ec.derive_private_key(0xC0FFEE, ec.SECP256R1())
LEAF_KEY = ec.derive_private_key(0xA11CE, ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocgate fuzz CA")])
REVOKED_SERIAL = 0x0BAD
# ecdsa-with-SHA256 (RFC 5758 §3.2) as a DER AlgorithmIdentifier.
_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def _ca() -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(CA_NAME)
        .issuer_name(CA_NAME)
        .public_key(CA_KEY.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(CA_KEY.public_key()), False)
        .sign(CA_KEY, hashes.SHA256())
    )


CA = _ca()
CA_DER = CA.public_bytes(serialization.Encoding.DER)


def _verifiers() -> list[CertVerifier]:
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(CA_NAME)
        .last_update(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
        .next_update(datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(REVOKED_SERIAL)
            .revocation_date(datetime.datetime(2024, 2, 1, tzinfo=datetime.UTC))
            .build()
        )
        .sign(CA_KEY, hashes.SHA256())
    )
    directory = Path(tempfile.mkdtemp(prefix="ocgate-fuzz-"))
    try:
        (directory / "ca.pem").write_bytes(CA.public_bytes(serialization.Encoding.PEM))
        (directory / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return [
            load_cert_policy(
                CertPolicy(
                    ca_file=str(directory / "ca.pem"),
                    crl_file=str(directory / "crl.pem"),
                    user_oid=user_oid,
                    group_oid="2.5.4.11",
                )
            )
            for user_oid in (None, "0.9.2342.19200300.100.1.1", "SAN(rfc822name)", "2.5.4.3")
        ]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


VERIFIERS = _verifiers()


def _der_length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _der_length(len(value)) + value


def sign_tbs(tbs: bytes) -> bytes:
    """A Certificate (RFC 5280 §4.1) of ``tbs`` signed by the CA, whatever ``tbs`` holds."""
    signature = CA_KEY.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _tlv(0x30, tbs + _ECDSA_SHA256 + _tlv(0x03, b"\x00" + signature))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, body = data[0], data[1:]
    leaf = sign_tbs(body) if selector & 1 else body
    chain = [leaf, CA_DER] if selector & 8 else [leaf]
    verifier = VERIFIERS[selector >> 1 & 3]
    try:
        identity = verifier.verify(chain, NOW)
    except AuthFailed:
        return
    cert = x509.load_der_x509_certificate(leaf)
    cert.verify_directly_issued_by(CA)  # Raises if the CA never signed it.
    assert cert.not_valid_before_utc <= NOW <= cert.not_valid_after_utc
    assert cert.serial_number != REVOKED_SERIAL, "a revoked certificate was accepted"
    assert identity.username, "an empty user name"
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in identity.username), "control character"


def _leaf_tbs(serial: int, names: list[x509.NameAttribute], *, email: bool, ca: bool) -> bytes:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(CA_NAME)
        .public_key(LEAF_KEY.public_key())
        .serial_number(serial)
        .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(CA_KEY.public_key()), False
        )
    )
    if email:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("alice@example.com")]), critical=False
        )
    return builder.sign(CA_KEY, hashes.SHA256()).tbs_certificate_bytes


def seeds() -> list[bytes]:
    """Leaves like the test PKI's (tests/pki.py): UID, CN, OU groups, an e-mail SAN, a CA, a
    revoked serial; plus a real signed certificate for the unsigned mode."""
    alice = [
        x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
        x509.NameAttribute(NameOID.USER_ID, "alice"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "eng"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ops"),
    ]
    carol = [x509.NameAttribute(NameOID.COMMON_NAME, "carol")]
    good = _leaf_tbs(0x1234, alice, email=True, ca=False)
    out = [bytes((1 | 2 * oid,)) + good for oid in range(4)]
    out.append(b"\x09" + _leaf_tbs(0x1235, carol, email=False, ca=False))
    out.append(b"\x03" + _leaf_tbs(REVOKED_SERIAL, alice, email=False, ca=False))
    out.append(b"\x01" + _leaf_tbs(0x1236, alice, email=False, ca=True))
    out.append(b"\x00" + sign_tbs(good))
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
