"""The external-browser envelope (ocgate.sso._seal) opened the way openconnect ``hpke.c`` does.

The opener below is written from openconnect 9.01 ``hpke.c`` (TLV walk, ECDH, HKDF-SHA256 with
no salt and info ``AC_ECIES``, AES-256-GCM with a 12-byte tag), independently of the sealer; the
interop test (tests/interop/test_sso_oidc.py) checks the same envelope against openconnect itself.
"""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ocgate.errors import SsoError
from ocgate.sso._seal import seal_token


def open_like_openconnect(blob_b64: str, client: ec.EllipticCurvePrivateKey) -> str:
    blob = base64.b64decode(blob_b64)
    assert blob[:2] == b"\x00\x01"
    pos, tags = 2, {}
    while pos < len(blob):
        tag, length = struct.unpack_from("!HH", blob, pos)
        assert 1 <= tag <= 4
        assert tag not in tags
        tags[tag] = blob[pos + 4 : pos + 4 + length]
        pos += 4 + length
    assert len(tags[2]) == 12
    assert len(tags[4]) == 12
    server = serialization.load_der_public_key(tags[1])
    assert isinstance(server, ec.EllipticCurvePublicKey)
    secret = client.exchange(ec.ECDH(), server)
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"AC_ECIES").derive(secret)
    decryptor = Cipher(
        algorithms.AES(key), modes.GCM(tags[4], tags[2], min_tag_length=12)
    ).decryptor()
    token = decryptor.update(tags[3]) + decryptor.finalize()
    assert token.isalnum()
    return token.decode()


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_round_trip() -> None:
    client = ec.generate_private_key(ec.SECP256R1())
    blob = seal_token(
        "abc123", spki(client), ephemeral=ec.generate_private_key(ec.SECP256R1()), iv=b"\x01" * 12
    )
    assert open_like_openconnect(blob, client) == "abc123"


def test_layout_matches_openconnects_example() -> None:
    # hpke.c's example: pubkey TLV (91 bytes) at 0x0008, tag at 0x0065, ciphertext at 0x0075.
    client = ec.generate_private_key(ec.SECP256R1())
    blob = base64.b64decode(
        seal_token("x" * 23, spki(client), ephemeral=ec.generate_private_key(ec.SECP256R1()),
                   iv=bytes(12))
    )  # fmt: skip
    assert blob[:8] == b"\x00\x01\x00\x01\x00\x5b\x30\x59"
    assert blob[0x61:0x65] == b"\x00\x02\x00\x0c"
    assert blob[0x71:0x75] == b"\x00\x03\x00\x17"


def test_another_key_cannot_open() -> None:
    client, thief = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    blob = seal_token("tok", spki(client), ephemeral=ec.generate_private_key(ec.SECP256R1()),
                      iv=bytes(12))  # fmt: skip
    with pytest.raises(InvalidTag):
        open_like_openconnect(blob, thief)


@pytest.mark.parametrize("token", ["", "not-alnum", "tök"])
def test_refuses_tokens_openconnect_cannot_take(token: str) -> None:
    client = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SsoError):
        seal_token(token, spki(client), ephemeral=client, iv=bytes(12))


def test_bad_client_key() -> None:
    with pytest.raises(SsoError, match="unusable"):
        seal_token("abc", b"\x30\x00", ephemeral=ec.generate_private_key(ec.SECP256R1()),
                   iv=bytes(12))  # fmt: skip
