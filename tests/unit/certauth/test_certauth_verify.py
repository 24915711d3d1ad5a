"""Client-certificate chain verification, revocation and identity extraction."""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.certauth import CertPolicy, CertVerifier, load_cert_policy
from ocgate.errors import AuthFailed, ConfigError
from tests.pki import Pki, issue_cert, make_pki, write_crl

CN = "2.5.4.3"
UID = "0.9.2342.19200300.100.1.1"
OU = "2.5.4.11"
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _verifier(
    pki: Pki,
    *,
    user_oid: str | None = UID,
    group_oid: str | None = OU,
    crl: bool = True,
    ca_file: Path | None = None,
) -> CertVerifier:
    return load_cert_policy(
        CertPolicy(
            ca_file=str(ca_file or pki.ca.cert_path),
            crl_file=str(pki.crl_path) if crl else None,
            user_oid=user_oid,
            group_oid=group_oid,
        )
    )


def _refused(verifier: CertVerifier, chain: list[bytes], now: datetime.datetime) -> str:
    with pytest.raises(AuthFailed) as info:
        verifier.verify(chain, now)
    return str(info.value)


# Acceptance and identities.


def test_uid_identity_and_ou_groups(pki: Pki) -> None:
    identity = _verifier(pki).verify(pki.alice.chain_der, pki.now)
    assert identity.username == "alice"
    assert identity.groups == ("eng", "ops")
    assert identity.serial == pki.alice.serial
    assert identity.fingerprint_sha256 == pki.alice.cert.fingerprint(hashes.SHA256()).hex()
    assert identity.subject == "UID=alice,CN=alice,OU=ops,OU=eng,O=ocgate tests"
    assert identity.group_oid == OU


def test_cn_identity(pki: Pki) -> None:
    identity = _verifier(pki, user_oid=CN).verify(pki.carol.chain_der, pki.now)
    assert identity.username == "carol"


@pytest.mark.parametrize("value", ["SAN(rfc822name)", "san(RFC822Name)"])
def test_rfc822name_identity(pki: Pki, value: str) -> None:
    identity = _verifier(pki, user_oid=value).verify(pki.bob.chain_der, pki.now)
    assert identity.username == "bob@example.com"
    assert identity.groups == ("eng",)


def test_unset_user_oid_is_the_whole_dn(pki: Pki) -> None:
    identity = _verifier(pki, user_oid=None, group_oid=None).verify(pki.bob.chain_der, pki.now)
    assert identity.username == "UID=bob,CN=bob,OU=eng,O=ocgate tests"
    assert identity.groups == ()
    assert identity.group_oid is None


def test_no_extended_key_usage_is_a_client_certificate(pki: Pki) -> None:
    assert _verifier(pki, user_oid=CN).verify(pki.carol.chain_der, pki.now).groups == ()


def test_naive_time_is_utc(pki: Pki) -> None:
    now = pki.now.astimezone(datetime.UTC).replace(tzinfo=None)
    assert _verifier(pki).verify(pki.alice.chain_der, now).username == "alice"


def test_chain_through_a_presented_intermediate(pki: Pki) -> None:
    assert len(pki.dave.chain_der) == 2
    assert _verifier(pki).verify(pki.dave.chain_der, pki.now).username == "dave"


def test_intermediate_in_ca_cert_needs_not_be_presented(pki: Pki, tmp_path: Path) -> None:
    bundle = tmp_path / "cas.pem"
    bundle.write_bytes(pki.ca.cert_path.read_bytes() + pki.intermediate.cert_path.read_bytes())
    verifier = _verifier(pki, ca_file=bundle)
    assert verifier.verify(pki.dave.chain_der[:1], pki.now).username == "dave"


# Refusals.


def test_no_certificate(pki: Pki) -> None:
    assert _refused(_verifier(pki), [], pki.now) == "no certificate"


def test_other_ca(pki: Pki) -> None:
    assert _refused(_verifier(pki), pki.stranger.chain_der, pki.now).startswith(
        "not signed by ca-cert"
    )


def test_missing_intermediate(pki: Pki) -> None:
    reason = _refused(_verifier(pki), pki.dave.chain_der[:1], pki.now)
    assert reason.startswith("not signed by ca-cert")


def test_non_ca_presented_as_intermediate(pki: Pki, tmp_path: Path) -> None:
    """A user certificate cannot issue certificates, even when it chains to ca-cert."""
    forged = x509.CertificateBuilder(
        issuer_name=pki.alice.cert.subject,
        subject_name=x509.Name([x509.NameAttribute(x509.NameOID.USER_ID, "root")]),
        public_key=pki.bob.key.public_key(),
        serial_number=7,
        not_valid_before=pki.now - DAY,
        not_valid_after=pki.now + DAY,
    ).sign(pki.alice.key, hashes.SHA256())
    chain = [forged.public_bytes(Encoding.DER), pki.alice.der]
    assert _refused(_verifier(pki), chain, pki.now).startswith("not signed by ca-cert (")


def test_expired(pki: Pki) -> None:
    assert _refused(_verifier(pki), pki.expired.chain_der, pki.now).startswith("expired (")


def test_not_yet_valid(pki: Pki) -> None:
    reason = _refused(_verifier(pki), pki.not_yet_valid.chain_der, pki.now)
    assert reason.startswith("not yet valid (")


def test_valid_certificate_checked_after_it_expires(pki: Pki) -> None:
    later = pki.alice.cert.not_valid_after_utc + DAY
    assert _refused(_verifier(pki, crl=False), pki.alice.chain_der, later).startswith("expired")


def test_revoked(pki: Pki) -> None:
    reason = _refused(_verifier(pki), pki.revoked.chain_der, pki.now)
    assert reason == f"revoked (serial {pki.revoked.serial:x})"


def test_revoked_is_accepted_without_crl(pki: Pki) -> None:
    assert _verifier(pki, crl=False).verify(pki.revoked.chain_der, pki.now).username == "mallory"


def test_revoked_intermediate(pki: Pki, tmp_path: Path) -> None:
    crl = write_crl(
        pki.ca, tmp_path / "crl.pem", [pki.intermediate.cert.serial_number], now=pki.now
    )
    verifier = load_cert_policy(CertPolicy(ca_file=str(pki.ca.cert_path), crl_file=str(crl)))
    reason = _refused(verifier, pki.dave.chain_der, pki.now)
    assert reason == f"revoked (serial {pki.intermediate.cert.serial_number:x})"


def test_expired_crl_fails_closed(pki: Pki, tmp_path: Path) -> None:
    crl = write_crl(
        pki.ca,
        tmp_path / "old-crl.pem",
        [],
        last_update=pki.now - 10 * DAY,
        next_update=pki.now - DAY,
    )
    verifier = load_cert_policy(CertPolicy(ca_file=str(pki.ca.cert_path), crl_file=str(crl)))
    assert _refused(verifier, pki.alice.chain_der, pki.now).startswith("crl expired (")


def test_crl_of_another_issuer_is_ignored(pki: Pki, tmp_path: Path) -> None:
    crl = write_crl(pki.other_ca, tmp_path / "other.pem", [pki.alice.serial], now=pki.now)
    verifier = load_cert_policy(CertPolicy(ca_file=str(pki.ca.cert_path), crl_file=str(crl)))
    assert verifier.verify(pki.alice.chain_der, pki.now).serial == pki.alice.serial


def test_several_crls_in_one_file(pki: Pki, tmp_path: Path) -> None:
    other = write_crl(pki.other_ca, tmp_path / "other.pem", [], now=pki.now)
    both = tmp_path / "both.pem"
    both.write_bytes(other.read_bytes() + pki.crl_path.read_bytes())
    verifier = load_cert_policy(CertPolicy(ca_file=str(pki.ca.cert_path), crl_file=str(both)))
    assert _refused(verifier, pki.revoked.chain_der, pki.now).startswith("revoked")


@pytest.mark.parametrize(
    ("user_oid", "label"), [(UID, UID), ("SAN(rfc822name)", "SAN(rfc822name)")]
)
def test_missing_identity_attribute(pki: Pki, user_oid: str, label: str) -> None:
    """ocserv #694: a certificate without the configured attribute never authenticates."""
    reason = _refused(_verifier(pki, user_oid=user_oid), pki.carol.chain_der, pki.now)
    assert reason == f"identity attribute {label} missing"


def test_server_certificate_is_not_a_client_certificate(pki: Pki) -> None:
    reason = _refused(_verifier(pki), pki.server_only.chain_der, pki.now)
    assert reason == "not a client certificate (EKU)"


def test_ca_certificate_is_not_a_client_certificate(pki: Pki) -> None:
    chain = [pki.ca.cert.public_bytes(Encoding.DER)]
    assert _refused(_verifier(pki), chain, pki.now) == "not a client certificate (CA)"


def test_unknown_critical_extension_rejects_the_chain(pki: Pki) -> None:
    cert = (
        x509.CertificateBuilder(
            issuer_name=pki.ca.name,
            subject_name=x509.Name([x509.NameAttribute(x509.NameOID.USER_ID, "odd")]),
            public_key=pki.bob.key.public_key(),
            serial_number=8,
            not_valid_before=pki.now - DAY,
            not_valid_after=pki.now + DAY,
        )
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            critical=True,
        )
        .sign(pki.ca.key, hashes.SHA256())
    )
    reason = _refused(_verifier(pki), [cert.public_bytes(Encoding.DER)], pki.now)
    assert reason.startswith("chain rejected (")


def test_control_characters_in_identity(pki: Pki, tmp_path: Path) -> None:
    odd = issue_cert(pki.ca, tmp_path, "odd", uid="al\nice", now=pki.now)
    reason = _refused(_verifier(pki), odd.chain_der, pki.now)
    assert reason == f"identity attribute {UID} is empty or not printable"


def test_fuzz_control_character_in_dn_user_name() -> None:
    """fuzz_certauth: without cert-user-oid the whole DN is the user name, and a CN of
    ``"\x0clice"`` (form feed) passed as one; the leaf is signed by the fuzz target's CA."""
    vectors = Path(__file__).parents[2] / "vectors" / "fuzz"
    verifier = load_cert_policy(CertPolicy(ca_file=str(vectors / "certauth-ca.pem")))
    leaf = (vectors / "certauth-dn-control-character.der").read_bytes()
    now = datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC)
    with pytest.raises(AuthFailed, match="certificate subject is not printable"):
        verifier.verify([leaf], now)


def test_group_values_are_deduplicated_and_cleaned(pki: Pki, tmp_path: Path) -> None:
    odd = issue_cert(pki.ca, tmp_path, "g", uid="gina", ous=("b", "a\x01", "b", "c"), now=pki.now)
    assert _verifier(pki).verify(odd.chain_der, pki.now).groups == ("b", "c")


def test_malformed_certificate(pki: Pki) -> None:
    assert _refused(_verifier(pki), [b"\x30\x03\x02\x01\x00"], pki.now).startswith(
        "malformed certificate"
    )


@pytest.mark.parametrize(
    "vector",
    [
        "certauth-x509-version-18.der",  # cryptography raised InvalidVersion
        "certauth-duplicate-extension.der",  # DuplicateExtension (basicConstraints twice)
        "certauth-san-x400address.der",  # UnsupportedGeneralNameType
    ],
)
def test_fuzz_findings_are_malformed_certificates(pki: Pki, vector: str) -> None:
    """Leaves found by fuzz/targets/fuzz_certauth.py (tests/vectors/fuzz/SOURCES.md): none of
    cryptography's errors for them is a ValueError, so they escaped as exceptions."""
    der = (Path(__file__).parents[2] / "vectors" / "fuzz" / vector).read_bytes()
    for chain in ([der], [pki.alice.der, der]):
        assert _refused(_verifier(pki), chain, pki.now).startswith("malformed certificate")


def test_chain_too_long(pki: Pki) -> None:
    reason = _refused(_verifier(pki), [pki.alice.der] * 11, pki.now)
    assert reason.startswith("certificate chain too long")


# Configuration errors.


def _config_error(**kwargs: str | None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_cert_policy(CertPolicy(**kwargs))  # type: ignore[arg-type]
    return info.value


def test_unreadable_ca_file(tmp_path: Path) -> None:
    assert _config_error(ca_file=str(tmp_path / "missing.pem")).key == "ca-cert"


def test_invalid_ca_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    assert _config_error(ca_file=str(tmp_path / "ca.pem")).key == "ca-cert"


def test_ca_file_with_a_user_certificate(pki: Pki) -> None:
    error = _config_error(ca_file=str(pki.alice.cert_path))
    assert error.key == "ca-cert"
    assert "not a CA certificate" in error.message


def test_unreadable_crl(pki: Pki, tmp_path: Path) -> None:
    error = _config_error(ca_file=str(pki.ca.cert_path), crl_file=str(tmp_path / "none.pem"))
    assert error.key == "crl"


def test_crl_file_without_crl(pki: Pki) -> None:
    error = _config_error(ca_file=str(pki.ca.cert_path), crl_file=str(pki.ca.cert_path))
    assert error.key == "crl"


def test_corrupt_crl(pki: Pki, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    assert _config_error(ca_file=str(pki.ca.cert_path), crl_file=str(bad)).key == "crl"


def test_crl_signed_by_the_wrong_key(pki: Pki, tmp_path: Path) -> None:
    crl = write_crl(pki.ca, tmp_path / "forged.pem", [], signer=pki.other_ca, now=pki.now)
    error = _config_error(ca_file=str(pki.ca.cert_path), crl_file=str(crl))
    assert error.key == "crl"
    assert "not signed" in error.message


@pytest.mark.parametrize(("key", "value"), [("user_oid", "CN"), ("group_oid", "SAN(rfc822name)")])
def test_malformed_oids(pki: Pki, key: str, value: str) -> None:
    error = _config_error(ca_file=str(pki.ca.cert_path), **{key: value})
    assert error.key == key.replace("_", "-").replace("user", "cert-user").replace(
        "group", "cert-group"
    )


# Fuzz: whatever the peer presents, only AuthFailed escapes.


@settings(max_examples=200, deadline=None)
@given(chain=st.lists(st.binary(max_size=300), max_size=12))
def test_fuzz_random_chains(pki: Pki, chain: list[bytes]) -> None:
    verifier = _verifier(pki)
    with pytest.raises(AuthFailed):
        verifier.verify(chain, pki.now)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fuzz_mutated_certificates(pki: Pki, data: st.DataObject) -> None:
    verifier = _verifier(pki)
    der = bytearray(data.draw(st.sampled_from(pki.dave.chain_der + pki.alice.chain_der)))
    for _ in range(data.draw(st.integers(1, 4))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(der)))
    chain = [bytes(der[:cut]), *pki.dave.chain_der[1:]]
    with contextlib.suppress(AuthFailed):
        verifier.verify(chain, pki.now)
