"""STRAP proofs (issue 13 §6): the construction of openconnect's ``append_strap_verify``.

The end-to-end check against openconnect 9.01's own signatures is
``tests/interop/test_strap.py``; here the rules, with keys made by ``cryptography``.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ocgate.errors import BadStrap, InvalidCookie
from ocgate.gateway import StrapProof, load_strap_pubkey_untrusted, verify_strap

FINISHED = bytes(range(12))  # TLS 1.2 verify_data is 12 bytes.


def _key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, der


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _proof(signer: ec.EllipticCurvePrivateKey, new: bytes | None, current: bytes) -> StrapProof:
    signed = FINISHED + (new if new is not None else current)
    signature = signer.sign(signed, ec.ECDSA(hashes.SHA256()))
    return StrapProof(FINISHED, _b64(signature), _b64(new) if new is not None else None)


def test_a_rotating_connect_signs_the_next_key_with_the_current_one() -> None:
    old_private, old = _key()
    _, new = _key()
    assert verify_strap("required", old, _proof(old_private, new, old)) == new


def test_a_connect_without_a_new_key_signs_its_current_one() -> None:
    private, key = _key()
    assert verify_strap("optional", key, _proof(private, None, key)) == key


def test_a_signature_by_another_key_or_for_another_connection_is_refused() -> None:
    _, key = _key()
    other_private, _ = _key()
    _, new = _key()
    with pytest.raises(InvalidCookie, match="does not verify"):
        verify_strap("optional", key, _proof(other_private, new, key))
    private, key = _key()
    proof = _proof(private, new, key)
    replayed = StrapProof(bytes(12), proof.verify, proof.pubkey)  # another TLS connection
    with pytest.raises(InvalidCookie, match="does not verify"):
        verify_strap("required", key, replayed)


def test_policies_without_a_proof() -> None:
    _, key = _key()
    bare = StrapProof(FINISHED, None, None)
    assert verify_strap("off", key, bare) == key
    assert verify_strap("optional", key, bare) == key
    assert verify_strap("optional", None, bare) is None
    with pytest.raises(InvalidCookie, match="no STRAP signature"):
        verify_strap("required", key, bare)
    with pytest.raises(InvalidCookie, match="no STRAP key at login"):
        verify_strap("required", None, bare)


def test_off_never_looks_at_the_proof() -> None:
    _, key = _key()
    assert verify_strap("off", key, StrapProof(b"", "not base64!", "junk")) == key


@pytest.mark.parametrize(
    ("verify", "pubkey"),
    [("not base64!", None), ("A" * 200, None), (_b64(b"\x30\x00"), "junk"), ("", None)],
)
def test_malformed_headers_are_a_refused_cookie(verify: str, pubkey: str | None) -> None:
    _, key = _key()
    with pytest.raises(InvalidCookie):
        verify_strap("optional", key, StrapProof(FINISHED, verify, pubkey))


def test_no_finished_message_is_refused() -> None:
    private, key = _key()
    proof = _proof(private, None, key)
    with pytest.raises(InvalidCookie, match="Finished"):
        verify_strap("optional", key, StrapProof(b"", proof.verify, proof.pubkey))


def test_the_login_key_must_be_a_p256_spki() -> None:
    _, der = _key()
    assert load_strap_pubkey_untrusted(_b64(der)) == der
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for value in ("", "%%%", _b64(b"\x30\x03\x02\x01\x00"), _b64(p384), "A" * 300):
        with pytest.raises(BadStrap):
            load_strap_pubkey_untrusted(value)
