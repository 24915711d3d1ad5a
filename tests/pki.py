"""A small test PKI: CAs, server and user certificates and CRLs written as PEM files.

Unit tests (``tests/unit/certauth``) and end-to-end tests (``openconnect --certificate``) share it.
Keys are ECDSA P-256 so generating a whole PKI takes milliseconds. Everything is relative to one
``now`` so tests can verify at a fixed instant.

Typical use::

    pki = make_pki(tmp_path)
    config = f"ca-cert = {pki.ca.cert_path}\\ncrl = {pki.crl_path}\\n"
    openconnect(..., "--certificate", str(pki.alice.cert_path), "--sslkey", str(pki.alice.key_path))

The building blocks (:func:`make_ca`, :func:`issue_cert`, :func:`write_crl`) are public for tests
that need a certificate :func:`make_pki` does not make.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "OID_UID",
    "Ca",
    "IssuedCert",
    "Pki",
    "issue_cert",
    "make_ca",
    "make_pki",
    "write_crl",
]

OID_UID = NameOID.USER_ID
"""``0.9.2342.19200300.100.1.1``, the attribute ocserv's sample config uses as ``cert-user-oid``."""

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A certificate and its key, in memory and as PEM files.

    :ivar cert_path: the certificate, followed by the issuing intermediates if any (what a client
        presents: ``openconnect --certificate``).
    :ivar key_path: the unencrypted PKCS#8 private key (``openconnect --sslkey``).
    :ivar bundle_path: key and certificate chain in one PEM file.
    """

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]
    cert_path: Path
    key_path: Path
    bundle_path: Path

    @property
    def der(self) -> bytes:
        """The certificate in DER."""
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def chain_der(self) -> list[bytes]:
        """Leaf first, then intermediates, in DER: what a TLS client presents."""
        return [c.public_bytes(serialization.Encoding.DER) for c in (self.cert, *self.chain)]

    @property
    def serial(self) -> int:
        return self.cert.serial_number


@dataclass(frozen=True, slots=True)
class Ca:
    """A certificate authority (root or intermediate) that can issue certificates and CRLs."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path
    chain: tuple[x509.Certificate, ...] = ()
    """Certificates above this one, up to but excluding the root (empty for a root)."""

    @property
    def name(self) -> x509.Name:
        return self.cert.subject


@dataclass(frozen=True, slots=True)
class Pki:
    """What :func:`make_pki` writes. Users are issued by :attr:`ca` unless stated.

    :ivar ca: the trusted root (``ca-cert``).
    :ivar other_ca: an unrelated root that nothing trusts.
    :ivar intermediate: a sub-CA signed by :attr:`ca`.
    :ivar server: a server certificate for ``127.0.0.1`` / ``localhost`` signed by :attr:`ca`.
    :ivar crl_path: a CRL of :attr:`ca` listing :attr:`revoked`, valid for 30 days.
    :ivar alice: CN ``alice``, UID ``alice``, OU ``eng`` and ``ops``, email ``alice@example.com``.
    :ivar bob: CN ``bob``, UID ``bob``, OU ``eng``, email ``bob@example.com``.
    :ivar carol: CN ``carol`` only: no UID, no OU, no SAN, no extended key usage.
    :ivar dave: CN/UID ``dave``, OU ``eng``, issued by :attr:`intermediate`.
    :ivar expired: CN/UID ``old``, expired yesterday.
    :ivar not_yet_valid: CN/UID ``future``, valid from tomorrow.
    :ivar revoked: CN/UID ``mallory``, on the CRL.
    :ivar stranger: CN/UID ``alice`` (same identity as alice) issued by :attr:`other_ca`.
    :ivar server_only: CN/UID ``eve`` whose extended key usage is serverAuth only.
    """

    directory: Path
    now: datetime.datetime
    ca: Ca
    other_ca: Ca
    intermediate: Ca
    server: IssuedCert
    crl_path: Path
    alice: IssuedCert
    bob: IssuedCert
    carol: IssuedCert
    dave: IssuedCert
    expired: IssuedCert
    not_yet_valid: IssuedCert
    revoked: IssuedCert
    stranger: IssuedCert
    server_only: IssuedCert


def _is_root(ca: Ca) -> bool:
    return ca.cert.issuer == ca.cert.subject


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(
    directory: Path,
    stem: str,
    *,
    common_name: str | None = None,
    issuer: Ca | None = None,
    now: datetime.datetime | None = None,
) -> Ca:
    """Create a CA, self-signed (a root) or signed by ``issuer`` (an intermediate).

    Writes ``<stem>-cert.pem`` and ``<stem>-key.pem`` into ``directory``.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"ocgate {stem}")])
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - 2 * _DAY)
        .not_valid_after(now + 3650 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    cert = builder.sign(signer_key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{stem}-cert.pem"
    key_path = directory / f"{stem}-key.pem"
    cert_path.write_bytes(_pem(cert))
    key_path.write_bytes(_key_pem(key))
    chain = (issuer.cert, *issuer.chain) if issuer and not _is_root(issuer) else ()
    return Ca(cert=cert, key=key, cert_path=cert_path, key_path=key_path, chain=chain)


def _user_name(common_name: str | None, uid: str | None, ous: Sequence[str]) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ocgate tests")]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou) for ou in ous]
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    if uid is not None:
        attributes.append(x509.NameAttribute(OID_UID, uid))
    return x509.Name(attributes)


def _san(emails: Iterable[str], hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in emails]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_cert(
    ca: Ca,
    directory: Path,
    stem: str,
    *,
    common_name: str | None = None,
    uid: str | None = None,
    ous: Sequence[str] = (),
    emails: Sequence[str] = (),
    hosts: Sequence[str] = (),
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    serial: int | None = None,
    subject: x509.Name | None = None,
    now: datetime.datetime | None = None,
) -> IssuedCert:
    """Issue an end-entity certificate from ``ca`` and write it into ``directory``.

    Writes ``<stem>-cert.pem`` (leaf then ``ca``'s intermediates), ``<stem>-key.pem`` and
    ``<stem>.pem`` (key and chain). With ``subject`` the name attributes are ignored. ``eku=None``
    leaves out the extended key usage extension. ``emails`` become rfc822Name SANs, ``hosts`` IP or
    DNS SANs. Validity defaults to one day before ``now`` until 30 days after.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    key = _new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or _user_name(common_name, uid, ous))
        .issuer_name(ca.name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before or now - _DAY)
        .not_valid_after(not_after or now + 30 * _DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    general_names = _san(emails, hosts)
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    chain = () if _is_root(ca) else (ca.cert, *ca.chain)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{stem}-cert.pem"
    key_path = directory / f"{stem}-key.pem"
    bundle_path = directory / f"{stem}.pem"
    chain_pem = b"".join(_pem(c) for c in (cert, *chain))
    cert_path.write_bytes(chain_pem)
    key_path.write_bytes(_key_pem(key))
    bundle_path.write_bytes(_key_pem(key) + chain_pem)
    return IssuedCert(
        cert=cert,
        key=key,
        chain=chain,
        cert_path=cert_path,
        key_path=key_path,
        bundle_path=bundle_path,
    )


def write_crl(
    ca: Ca,
    path: Path,
    revoked: Iterable[int],
    *,
    last_update: datetime.datetime | None = None,
    next_update: datetime.datetime | None = None,
    signer: Ca | None = None,
    now: datetime.datetime | None = None,
) -> Path:
    """Write a PEM CRL naming ``ca`` as issuer and listing the ``revoked`` serial numbers.

    ``signer`` (default ``ca``) signs it: pass another CA to make a CRL with a bad signature.
    Validity defaults to one day before ``now`` until 30 days after.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    last = last_update or now - _DAY
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.name)
        .last_update(last)
        .next_update(next_update or now + 30 * _DAY)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last).build()
        )
    crl = builder.sign((signer or ca).key, hashes.SHA256())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def make_pki(
    directory: Path,
    *,
    server_hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    now: datetime.datetime | None = None,
) -> Pki:
    """Create the whole test PKI described in :class:`Pki` under ``directory``.

    :param server_hosts: names in the server certificate (IP addresses become IP SANs); the first is
        also its CN.
    :param now: the instant validity periods are relative to (default: the current time).
    """
    now = now or datetime.datetime.now(datetime.UTC)
    ca = make_ca(directory, "ca", common_name="ocgate test CA", now=now)
    other_ca = make_ca(directory, "other-ca", common_name="ocgate other CA", now=now)
    intermediate = make_ca(
        directory, "intermediate", common_name="ocgate intermediate CA", issuer=ca, now=now
    )

    def user(
        stem: str,
        name: str,
        *,
        issuer: Ca = ca,
        ous: Sequence[str] = (),
        emails: Sequence[str] = (),
        eku: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> IssuedCert:
        return issue_cert(
            issuer,
            directory,
            stem,
            common_name=name,
            uid=name,
            ous=ous,
            emails=emails,
            eku=eku,
            not_before=not_before,
            not_after=not_after,
            now=now,
        )

    revoked = user("revoked", "mallory")
    server = issue_cert(
        ca,
        directory,
        "server",
        common_name=server_hosts[0],
        hosts=server_hosts,
        eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
        now=now,
    )
    return Pki(
        directory=directory,
        now=now,
        ca=ca,
        other_ca=other_ca,
        intermediate=intermediate,
        server=server,
        crl_path=write_crl(ca, directory / "crl.pem", [revoked.serial], now=now),
        alice=user("alice", "alice", ous=("eng", "ops"), emails=("alice@example.com",)),
        bob=user("bob", "bob", ous=("eng",), emails=("bob@example.com",)),
        carol=issue_cert(ca, directory, "carol", common_name="carol", eku=None, now=now),
        dave=user("dave", "dave", ous=("eng",), issuer=intermediate),
        expired=user("expired", "old", not_before=now - 30 * _DAY, not_after=now - _DAY),
        not_yet_valid=user("future", "future", not_before=now + _DAY, not_after=now + 30 * _DAY),
        revoked=revoked,
        stranger=user("stranger", "alice", ous=("eng",), issuer=other_ca),
        server_only=user("server-only", "eve", eku=(ExtendedKeyUsageOID.SERVER_AUTH,)),
    )
