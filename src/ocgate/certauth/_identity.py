"""Who a client certificate names, and the rules binding it to a typed user and a chosen group.

Theory of operation (ocserv-compatibility §4.1, §9; ocserv ``src/sec-mod-auth.c``
``check_cert_user_group_status`` and ``check_group``):

* ``cert-user-oid`` picks the user name: a DN attribute by OID (``2.5.4.3`` CN,
  ``0.9.2342.19200300.100.1.1`` UID), or ``SAN(rfc822name)`` for the first e-mail subject
  alternative name. Unset, the user name is the whole subject DN as an RFC 4514 string.
* A configured attribute that the certificate lacks (or that is empty or holds control characters)
  refuses the login; so does a subject DN with control characters when it is the user name.
  There is no fallback to another attribute: ocserv #694 accepted a certificate without the
  configured SAN plus any valid password.
* With certificate + password, the typed user must equal the certificate user, always (ocserv only
  compared when ``cert-user-oid`` was set). An empty typed user means "the certificate's user".
* ``cert-group-oid`` lists the certificate's groups: every value of that DN attribute, in
  certificate order. A requested group must be one of them; without a request the first is taken
  (ocserv does the same), so a certificate with one group never needs a prompt.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography import x509

from ocgate.errors import AuthFailed, ConfigError

__all__ = [
    "SAN_RFC822NAME",
    "CertIdentity",
    "DnAttribute",
    "SanRfc822Name",
    "UserSource",
    "check_cert_group",
    "check_cert_user",
    "identity_from_certificate",
    "parse_group_oid",
    "parse_user_oid",
]

SAN_RFC822NAME = "SAN(rfc822name)"
"""The ``cert-user-oid`` value that selects the first rfc822Name subject alternative name."""


@dataclass(frozen=True, slots=True)
class DnAttribute:
    """Take the user name from the first subject attribute with this OID."""

    oid: x509.ObjectIdentifier

    def __str__(self) -> str:
        return self.oid.dotted_string


@dataclass(frozen=True, slots=True)
class SanRfc822Name:
    """Take the user name from the first rfc822Name (e-mail) subject alternative name."""

    def __str__(self) -> str:
        return SAN_RFC822NAME


UserSource = DnAttribute | SanRfc822Name | None
"""Where the user name comes from; ``None`` means the whole subject DN (RFC 4514)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertIdentity:
    """The identity a verified client certificate carries.

    :param username: the user name chosen by ``cert-user-oid``.
    :param groups: every ``cert-group-oid`` value, in certificate order (empty when unset).
    :param subject: the subject DN as an RFC 4514 string (for logs).
    :param serial: the certificate serial number.
    :param fingerprint_sha256: lower-case hex SHA-256 of the certificate DER.
    :param group_oid: the ``cert-group-oid`` the groups were read with; ``None`` means groups are
        not bound to the certificate and :func:`check_cert_group` does not restrict the choice.
    """

    username: str
    groups: tuple[str, ...]
    subject: str
    serial: int
    fingerprint_sha256: str
    group_oid: str | None = None


def _parse_oid(value: str, key: str, expected: str) -> x509.ObjectIdentifier:
    try:
        return x509.ObjectIdentifier(value.strip())
    except ValueError:
        raise ConfigError(f"not an OID: {value!r}", key=key, expected=expected) from None


def parse_user_oid(value: str | None) -> UserSource:
    """Parse a ``cert-user-oid`` value.

    :raises ConfigError: the value is neither a dotted OID nor ``SAN(rfc822name)``.
    """
    if value is None:
        return None
    if value.strip().lower() == SAN_RFC822NAME.lower():
        return SanRfc822Name()
    expected = f"a dotted OID such as 0.9.2342.19200300.100.1.1, or {SAN_RFC822NAME}"
    return DnAttribute(_parse_oid(value, "cert-user-oid", expected))


def parse_group_oid(value: str | None) -> x509.ObjectIdentifier | None:
    """Parse a ``cert-group-oid`` value (a DN attribute OID such as ``2.5.4.11``, OU).

    :raises ConfigError: the value is not a dotted OID.
    """
    if value is None:
        return None
    return _parse_oid(value, "cert-group-oid", "a dotted OID such as 2.5.4.11")


def _is_clean(value: str) -> bool:
    return bool(value) and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def _dn_values(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str | bytes]:
    return [attribute.value for attribute in name.get_attributes_for_oid(oid)]


def _san_emails(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return san.value.get_values_for_type(x509.RFC822Name)


def _username(cert: x509.Certificate, source: UserSource) -> str:
    if source is None:
        subject = cert.subject.rfc4514_string()
        if not subject:
            raise AuthFailed("certificate has an empty subject")
        # RFC 4514 escapes no control characters; the subject is the user name, so the rule for
        # attributes holds for it too (found by fuzz/targets/fuzz_certauth.py).
        if not _is_clean(subject):
            raise AuthFailed("certificate subject is not printable")
        return subject
    values: list[str | bytes] = (
        list(_san_emails(cert))
        if isinstance(source, SanRfc822Name)
        else _dn_values(cert.subject, source.oid)
    )
    if not values:
        raise AuthFailed(f"identity attribute {source} missing")
    value = values[0]
    if not isinstance(value, str) or not _is_clean(value):
        raise AuthFailed(f"identity attribute {source} is empty or not printable")
    return value


def _groups(cert: x509.Certificate, group_oid: x509.ObjectIdentifier | None) -> tuple[str, ...]:
    if group_oid is None:
        return ()
    groups: list[str] = []
    for value in _dn_values(cert.subject, group_oid):
        # Non-text or control-character values are not usable group names (they would end up in
        # file names and scripts); they are skipped rather than refusing the whole certificate.
        if isinstance(value, str) and _is_clean(value) and value not in groups:
            groups.append(value)
    return tuple(groups)


def identity_from_certificate(
    cert: x509.Certificate,
    user_source: UserSource,
    group_oid: x509.ObjectIdentifier | None,
    fingerprint_sha256: str,
) -> CertIdentity:
    """Read the identity out of a certificate that has already been verified.

    :raises AuthFailed: the configured identity attribute is missing, empty or not printable.
    """
    return CertIdentity(
        username=_username(cert, user_source),
        groups=_groups(cert, group_oid),
        subject=cert.subject.rfc4514_string(),
        serial=cert.serial_number,
        fingerprint_sha256=fingerprint_sha256,
        group_oid=None if group_oid is None else group_oid.dotted_string,
    )


def check_cert_user(identity: CertIdentity, typed_username: str | None) -> None:
    """Certificate + password: the typed user must be the certificate's user (ocserv #694).

    ``None`` or an empty string means the client typed no user name; the caller then uses
    ``identity.username``.

    :raises AuthFailed: the typed user differs from the certificate user.
    """
    if not typed_username:
        return
    if not hmac.compare_digest(identity.username.encode(), typed_username.encode()):
        raise AuthFailed(
            f"certificate is for user {identity.username!r}, not for {typed_username!r}"
        )


def check_cert_group(identity: CertIdentity, requested_group: str | None) -> str | None:
    """Choose the group under ``cert-group-oid``: it must be one of the certificate's groups.

    Without ``cert-group-oid`` (``identity.group_oid is None``) the request is returned unchanged.
    Without a request the certificate's first group is chosen (``None`` if it has none), so a
    certificate with a single group never needs a prompt.

    :raises AuthFailed: the requested group is not in the certificate.
    """
    if identity.group_oid is None:
        return requested_group
    if not requested_group:
        return identity.groups[0] if identity.groups else None
    if requested_group not in identity.groups:
        raise AuthFailed(
            f"group {requested_group!r} is not among the certificate's groups {identity.groups!r}"
        )
    return requested_group
