"""STRAP: the session cookie bound to a key only the client holds.

openconnect ≥ 9 and Cisco Secure Client make an ECDSA P-256 key pair per login and send its public
half on every login request (``X-AnyConnect-STRAP-Pubkey``, base64 DER SubjectPublicKeyInfo). On
CONNECT they prove they still hold it, bound to that TLS connection (openconnect ``gnutls.c``
``append_strap_verify`` and ``cstp.c``, read for this module; checked against live openconnect 9.01
in ``tests/interop/test_strap.py``):

* ``X-AnyConnect-STRAP-Pubkey`` carries a *new* public key (the key rotates on every CONNECT), and
* ``X-AnyConnect-STRAP-Verify`` carries a base64 DER ECDSA-SHA256 signature, made with the
  *previous* key, over the client's TLS ``Finished`` message of this connection (its
  ``verify_data``, which the server knows as ``SSL_get_peer_finished``) followed by the DER of the
  new public key. Without a new key, the signed bytes end with the current key's DER.

A cookie stolen from a log, a proxy or a crash dump is then useless without the private key, and a
signature cannot be replayed on another TLS connection. ocserv ignores STRAP; ``strap`` (an ocgate
key) chooses: ``off`` (ocserv's behaviour, the default), ``optional`` (a signature that is sent must
verify; a client that sends none is let in) or ``required`` (a CONNECT without a valid signature,
or for a session whose login presented no key, is refused like a bad cookie).

Sans-IO: bytes in, the key to keep out, or :class:`~ocgate.errors.InvalidCookie`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ocgate.errors import BadStrap, InvalidCookie

__all__ = [
    "STRAP_PUBKEY",
    "STRAP_VERIFY",
    "StrapProof",
    "load_strap_pubkey_untrusted",
    "verify_strap",
]

STRAP_PUBKEY = "x-anyconnect-strap-pubkey"
STRAP_VERIFY = "x-anyconnect-strap-verify"
_MAX_KEY_B64 = 256  # A P-256 SPKI is 91 bytes: 124 base64 characters.
_MAX_SIGNATURE_B64 = 128  # A DER ECDSA P-256 signature is at most 72 bytes.
_MAX_FINISHED = 64  # verify_data: 12 bytes up to TLS 1.2, a hash length (≤ 48) in TLS 1.3.


def _b64_untrusted(value: str, limit: int, what: str) -> bytes:
    if not value or len(value) > limit:
        raise BadStrap(f"{what}: {len(value)} base64 characters")
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadStrap(f"{what}: not base64") from exc


def load_strap_pubkey_untrusted(value: str) -> bytes:
    """The DER SubjectPublicKeyInfo of an ``X-AnyConnect-STRAP-Pubkey`` value (a P-256 key).

    :raises BadStrap: not base64, not a DER public key, or not on P-256.
    """
    der = _b64_untrusted(value, _MAX_KEY_B64, "STRAP public key")
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadStrap("STRAP public key: not a DER public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadStrap("STRAP public key: not an ECDSA P-256 key")
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True, slots=True)
class StrapProof:
    """What a CONNECT carries: its headers (raw, untrusted) and the TLS connection's binding.

    :param finished: the client's ``Finished`` verify_data of this TLS connection.
    """

    finished: bytes
    verify: str | None
    pubkey: str | None


def verify_strap(policy: str, key: bytes | None, proof: StrapProof) -> bytes | None:
    """Check a CONNECT's STRAP proof against the session's ``key``; return the key to keep.

    :param policy: ``off``, ``optional`` or ``required`` (the ``strap`` key).
    :param key: the session's current public key (DER), ``None`` if its login presented none.
    :returns: the key the session keeps for its next CONNECT (the new one after a rotation).
    :raises InvalidCookie: the signature does not verify, or ``required`` and there is none.
    """
    if policy == "off":
        return key
    if key is None or proof.verify is None:
        if policy == "required":
            missing = "no STRAP key at login" if key is None else "no STRAP signature"
            raise InvalidCookie(f"cookie refused: {missing} (strap = required)")
        return key
    try:
        signature = _b64_untrusted(proof.verify, _MAX_SIGNATURE_B64, "STRAP signature")
        new_key = load_strap_pubkey_untrusted(proof.pubkey) if proof.pubkey else None
    except BadStrap as exc:
        raise InvalidCookie(f"cookie refused: {exc}") from exc
    if not 0 < len(proof.finished) <= _MAX_FINISHED:
        raise InvalidCookie("cookie refused: no TLS Finished message to bind the STRAP proof to")
    signed = proof.finished + (new_key if new_key is not None else key)
    public = serialization.load_der_public_key(key)
    assert isinstance(public, ec.EllipticCurvePublicKey)  # load_strap_pubkey_untrusted made it.
    try:
        public.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise InvalidCookie("cookie refused: STRAP signature does not verify") from None
    return new_key if new_key is not None else key
