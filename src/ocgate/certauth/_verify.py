"""Client-certificate verification with ``ca-cert`` and ``crl`` (ocserv-compatibility §4.1, §4.4).

Theory of operation:

* The TLS layer accepts any client certificate (see :mod:`ocgate.certauth._tls`); the verdict is
  given here so that every refusal has a precise, log-only reason.
* :meth:`CertVerifier.verify` first checks the leaf itself, in this order, for the reasons an
  administrator most needs: signed by none of ``ca-cert`` (nor a presented intermediate), expired,
  not yet valid, a CA certificate, an extended key usage without clientAuth.
* Then ``cryptography.x509.verification`` builds and checks the path (signatures, validity of every
  certificate, basic constraints, path length, name constraints, unknown critical extensions,
  signature algorithms and key sizes). Its WebPKI extension defaults are too strict for user
  certificates issued by private CAs (they demand a subjectAltName and an authorityKeyIdentifier on
  the leaf, a keyUsage and a critical basicConstraints on CAs), so relaxed extension policies are
  used: a CA needs basicConstraints with cA set and, if it has a keyUsage, keyCertSign; a leaf may
  carry any extension, but a basicConstraints must not assert cA and an extended key usage must
  allow clientAuth (or anyExtendedKeyUsage).
* Revocation: for each certificate of the verified chain, every CRL named after and signed by its
  issuer is consulted. A listed serial refuses the certificate. An expired CRL (``nextUpdate`` in
  the past) refuses every certificate of that issuer: GnuTLS, and so ocserv, treat superseded
  revocation data as a failure too, and failing open would silently re-admit revoked users once the
  administrator forgets to refresh the CRL. A certificate whose issuer has no CRL is not checked.
* Every certificate in ``ca-cert`` is a trust anchor; each must be a CA (basicConstraints cA).
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ocgate.certauth._identity import (
    CertIdentity,
    UserSource,
    identity_from_certificate,
    parse_group_oid,
    parse_user_oid,
)
from ocgate.errors import AuthFailed, ConfigError

__all__ = ["MAX_CHAIN_LENGTH", "CertPolicy", "CertVerifier", "load_cert_policy"]

MAX_CHAIN_LENGTH = 10
"""Most certificates accepted in a presented chain (leaf included)."""

_MAX_DEPTH = 8
_CLIENT_EKUS = frozenset(
    {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
)
_CRL_PEM = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertPolicy:
    """The configuration of certificate authentication, as written in ocserv.conf.

    :param ca_file: ``ca-cert``, PEM file of the trusted CAs.
    :param crl_file: ``crl``, PEM file of one or more CRLs, or ``None``.
    :param user_oid: ``cert-user-oid`` (a dotted OID or ``SAN(rfc822name)``); ``None``: the DN.
    :param group_oid: ``cert-group-oid`` (a dotted OID such as ``2.5.4.11``), or ``None``.
    """

    ca_file: str
    crl_file: str | None = None
    user_oid: str | None = None
    group_oid: str | None = None


# Extension policies (see the module docstring for why not the WebPKI defaults).


def _ca_basic_constraints(
    _policy: Policy, _cert: x509.Certificate, bc: x509.BasicConstraints
) -> None:
    if not bc.ca:
        raise ValueError("basicConstraints.cA is not asserted")


def _ca_key_usage(_policy: Policy, _cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("keyUsage lacks keyCertSign")


def _ee_basic_constraints(
    _policy: Policy, _cert: x509.Certificate, bc: x509.BasicConstraints | None
) -> None:
    if bc is not None and bc.ca:
        raise ValueError("a client certificate must not be a CA")


def _ee_eku(_policy: Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
    if eku is not None and not _CLIENT_EKUS.intersection(eku):
        raise ValueError("extended key usage does not allow clientAuth")


def _ca_policy() -> ExtensionPolicy:
    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ca_basic_constraints)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
    )


def _ee_policy() -> ExtensionPolicy:
    return (
        ExtensionPolicy.permit_all()
        .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ee_basic_constraints)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _ee_eku)
    )


# Peer input.


# What cryptography raises for malformed DER besides ValueError (none of them is one); found by
# fuzz/targets/fuzz_certauth.py: a version field other than v1-v3, an extension present twice, a
# subject alternative name of a type it cannot represent (x400Address, ediPartyName).
_X509_PARSE_ERRORS = (x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def _parse_chain_untrusted(chain: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
    """Parse the DER certificates a client presented; only :class:`AuthFailed` escapes."""
    if not chain:
        raise AuthFailed("no certificate")
    if len(chain) > MAX_CHAIN_LENGTH:
        raise AuthFailed(f"certificate chain too long ({len(chain)} certificates)")
    certs: list[x509.Certificate] = []
    for der in chain:
        try:
            cert = x509.load_der_x509_certificate(bytes(der))
            # Extensions and names are decoded lazily; decode them now so a malformed one fails
            # here and not in the middle of a check.
            _ = (cert.extensions, cert.subject.rfc4514_string(), cert.issuer.rfc4514_string())
        except (ValueError, TypeError, UnsupportedAlgorithm, *_X509_PARSE_ERRORS) as exc:
            raise AuthFailed(f"malformed certificate ({exc})") from None
        certs.append(cert)
    return tuple(certs)


def _utc(now: datetime.datetime) -> datetime.datetime:
    if now.tzinfo is None:
        return now.replace(tzinfo=datetime.UTC)
    return now.astimezone(datetime.UTC)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


@dataclass(frozen=True, slots=True)
class CertVerifier:
    """Verifies client certificate chains and reads their identity. Build with
    :func:`load_cert_policy`.
    """

    ca_certs: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...]
    user_source: UserSource
    group_oid: x509.ObjectIdentifier | None
    _store: Store = field(repr=False, compare=False)

    def verify(self, chain: Sequence[bytes], now: datetime.datetime) -> CertIdentity:
        """Verify a presented chain and return the identity of its leaf.

        :param chain: DER certificates as presented in the TLS handshake, leaf first (untrusted).
        :param now: the validation time (naive values are taken as UTC).
        :raises AuthFailed: with a log-only reason, e.g. ``no certificate``, ``not signed by
            ca-cert``, ``expired``, ``not yet valid``, ``revoked (serial …)``,
            ``identity attribute <oid> missing``, ``not a client certificate (EKU)``.
        """
        now = _utc(now)
        certs = _parse_chain_untrusted(chain)
        leaf, presented = certs[0], certs[1:]
        self._check_leaf(leaf, presented, now)
        verified = self._build_path(leaf, presented, now)
        self._check_revocation(verified, now)
        fingerprint = hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()
        return identity_from_certificate(leaf, self.user_source, self.group_oid, fingerprint)

    def _check_leaf(
        self, leaf: x509.Certificate, presented: Sequence[x509.Certificate], now: datetime.datetime
    ) -> None:
        if not any(_issued_by(leaf, c) for c in (*self.ca_certs, *presented)):
            raise AuthFailed(f"not signed by ca-cert (issuer {leaf.issuer.rfc4514_string()})")
        if now > leaf.not_valid_after_utc:
            raise AuthFailed(f"expired (not after {leaf.not_valid_after_utc.isoformat()})")
        if now < leaf.not_valid_before_utc:
            raise AuthFailed(f"not yet valid (not before {leaf.not_valid_before_utc.isoformat()})")
        bc = _extension(leaf, x509.BasicConstraints)
        if isinstance(bc, x509.BasicConstraints) and bc.ca:
            raise AuthFailed("not a client certificate (CA)")
        eku = _extension(leaf, x509.ExtendedKeyUsage)
        if isinstance(eku, x509.ExtendedKeyUsage) and not _CLIENT_EKUS.intersection(eku):
            raise AuthFailed("not a client certificate (EKU)")

    def _build_path(
        self, leaf: x509.Certificate, presented: Sequence[x509.Certificate], now: datetime.datetime
    ) -> list[x509.Certificate]:
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(now)
            .max_chain_depth(_MAX_DEPTH)
            .extension_policies(ca_policy=_ca_policy(), ee_policy=_ee_policy())
            .build_client_verifier()
        )
        try:
            return verifier.verify(leaf, list(presented)).chain
        except (VerificationError, ValueError) as exc:
            if any(_issued_by(leaf, ca) for ca in self.ca_certs):
                raise AuthFailed(f"chain rejected ({exc})") from None
            raise AuthFailed(f"not signed by ca-cert ({exc})") from None

    def _check_revocation(self, chain: Sequence[x509.Certificate], now: datetime.datetime) -> None:
        for cert, issuer in itertools.pairwise(chain):
            for crl in self.crls:
                if crl.issuer != issuer.subject or not _crl_signed_by(crl, issuer):
                    continue
                next_update = crl.next_update_utc
                if next_update is not None and now > next_update:
                    raise AuthFailed(
                        f"crl expired (issuer {issuer.subject.rfc4514_string()},"
                        f" next update {next_update.isoformat()})"
                    )
                if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                    raise AuthFailed(f"revoked (serial {cert.serial_number:x})")


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


# Loading.


def _read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", key=key) from None


def _load_ca_certs(path: str) -> tuple[x509.Certificate, ...]:
    try:
        certs = x509.load_pem_x509_certificates(_read(path, "ca-cert"))
    except ValueError:
        raise ConfigError(
            f"no valid certificate in {path}", key="ca-cert", expected="PEM certificates"
        ) from None
    for cert in certs:
        bc = _extension(cert, x509.BasicConstraints)
        if not (isinstance(bc, x509.BasicConstraints) and bc.ca):
            raise ConfigError(
                f"{cert.subject.rfc4514_string()} in {path} is not a CA certificate",
                key="ca-cert",
                expected="CA certificates (basicConstraints cA:TRUE)",
            )
    return tuple(certs)


def _load_crls(
    path: str, ca_certs: Sequence[x509.Certificate]
) -> tuple[x509.CertificateRevocationList, ...]:
    blocks = _CRL_PEM.findall(_read(path, "crl"))
    if not blocks:
        raise ConfigError(f"no CRL in {path}", key="crl", expected="PEM X509 CRLs")
    crls: list[x509.CertificateRevocationList] = []
    for block in blocks:
        try:
            crl = x509.load_pem_x509_crl(block)
        except ValueError:
            raise ConfigError(
                f"invalid CRL in {path}", key="crl", expected="PEM X509 CRLs"
            ) from None
        issuers = [ca for ca in ca_certs if ca.subject == crl.issuer]
        # A CRL of an intermediate that clients present (not in ca-cert) can only be checked at
        # use time; a CRL naming a ca-cert CA must be signed by it.
        if issuers and not any(_crl_signed_by(crl, ca) for ca in issuers):
            raise ConfigError(
                f"CRL of {crl.issuer.rfc4514_string()} in {path} is not signed by that CA",
                key="crl",
            )
        crls.append(crl)
    return tuple(crls)


def load_cert_policy(policy: CertPolicy) -> CertVerifier:
    """Load the CA certificates and CRLs of ``policy`` and parse its OIDs.

    Call again on reload (SIGHUP) to pick up changed files.

    :raises ConfigError: a file is unreadable or invalid, or an OID is malformed; the error names
        the key (``ca-cert``, ``crl``, ``cert-user-oid``, ``cert-group-oid``).
    """
    user_source = parse_user_oid(policy.user_oid)
    group_oid = parse_group_oid(policy.group_oid)
    ca_certs = _load_ca_certs(policy.ca_file)
    crls = _load_crls(policy.crl_file, ca_certs) if policy.crl_file is not None else ()
    return CertVerifier(ca_certs, crls, user_source, group_oid, Store(list(ca_certs)))
