"""The external-browser token envelope ("AC_ECIES") that openconnect and Cisco clients open.

Theory of operation (openconnect ``hpke.c`` ``handle_external_browser`` and the
``ecdh_compute_secp256r1`` / ``hkdf_sha256_extract_expand`` / ``aes_256_gcm_decrypt`` helpers,
read for this module; checked against live openconnect 9.01 in ``tests/interop/test_sso_oidc.py``):
with ``<sso-v2-browser-mode>external`` the client listens on ``http://localhost:29786`` and the
browser's last redirect is ``GET /api/sso/BLOB?return=FINAL_URL``. ``BLOB`` is base64 of::

    00 01                          version word
    00 01 LEN  server ephemeral P-256 public key (DER SubjectPublicKeyInfo)
    00 02 00 0c  AES-GCM tag, truncated to 12 bytes
    00 03 LEN  ciphertext (the token, which must be alphanumeric)
    00 04 00 0c  the 12-byte IV

The key is HKDF-SHA256 (no salt, info ``AC_ECIES``, 32 bytes) of the ECDH secret between that
ephemeral key and the client's ``X-AnyConnect-STRAP-DH-Pubkey``. Only the client that asked for
the login can open the token, so a token read off the browser's history is useless alone (and it
is single-use and bound to the login anyway).

Sans-IO: the ephemeral key and the IV are arguments (tests replay them).
"""

from __future__ import annotations

import base64
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ocgate.errors import SsoError

__all__ = ["EXTERNAL_LISTENER", "TAG_BYTES", "seal_token"]

EXTERNAL_LISTENER = "http://localhost:29786"
"""Where openconnect and Cisco clients listen for the browser's last redirect."""
TAG_BYTES = 12
_INFO = b"AC_ECIES"
_TLV = struct.Struct("!HH")  # tag, length


def _tlv(tag: int, value: bytes) -> bytes:
    return _TLV.pack(tag, len(value)) + value


def envelope_key(secret: bytes) -> bytes:
    """HKDF-SHA256 extract (no salt) and expand (``AC_ECIES``) of the ECDH secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)


def seal_token(
    token: str,
    client_key_der: bytes,
    *,
    ephemeral: ec.EllipticCurvePrivateKey,
    iv: bytes,
) -> str:
    """The base64 envelope of ``token`` for the client whose STRAP DH key is ``client_key_der``.

    :param token: alphanumeric ASCII (openconnect refuses anything else).
    :param client_key_der: the client's P-256 SubjectPublicKeyInfo (already checked).
    :param ephemeral: a fresh P-256 key, used once.
    :param iv: 12 random bytes.
    :raises SsoError: the token is not alphanumeric or the client key is unusable.
    """
    if not token.isascii() or not token.isalnum() or len(iv) != 12:
        raise SsoError("internal error: the sign-in token cannot be sealed")
    try:
        client = serialization.load_der_public_key(client_key_der)
        if not isinstance(client, ec.EllipticCurvePublicKey):
            raise ValueError("not an EC key")
        secret = ephemeral.exchange(ec.ECDH(), client)
    except ValueError as exc:
        raise SsoError("the client's browser key is unusable") from exc
    sealed = AESGCM(envelope_key(secret)).encrypt(iv, token.encode("ascii"), None)
    ciphertext, tag = sealed[:-16], sealed[-16 : -16 + TAG_BYTES]
    public = ephemeral.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    blob = b"\x00\x01" + _tlv(1, public) + _tlv(2, tag) + _tlv(3, ciphertext) + _tlv(4, iv)
    return base64.b64encode(blob).decode("ascii")
