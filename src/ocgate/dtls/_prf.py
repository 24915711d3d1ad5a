"""The TLS pseudo-random functions and handshake hashes used by DTLS 0.9 and DTLS 1.2.

* DTLS 0.9 (Cisco's pre-RFC DTLS, OpenSSL ``DTLS1_BAD_VER``) is TLS 1.0 underneath: the PRF is
  ``P_MD5(S1, label + seed) XOR P_SHA1(S2, label + seed)`` over the two halves of the secret
  (RFC 2246 §5), and the Finished hash is ``MD5(messages) || SHA1(messages)`` (RFC 2246 §7.4.9).
* DTLS 1.2 uses the TLS 1.2 PRF ``P_<hash>(secret, label + seed)`` with the suite's hash, SHA-256
  unless the suite says SHA-384 (RFC 5246 §5), and the Finished hash is that same hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

__all__ = ["Prf", "TranscriptHash", "p_hash", "prf_tls10", "prf_tls12", "transcript_hash"]

Prf = Callable[[bytes, bytes, bytes, int], bytes]
"""``prf(secret, label, seed, length) -> bytes``."""
TranscriptHash = Callable[[bytes], bytes]


def p_hash(hash_name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 §5 ``P_hash``: HMAC expansion of ``seed`` to ``length`` bytes."""
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)
        out += hmac.digest(secret, a + seed, hash_name)
    return bytes(out[:length])


def prf_tls10(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """The TLS 1.0 / 1.1 PRF (RFC 2246 §5): MD5 and SHA-1 halves XORed."""
    half = (len(secret) + 1) // 2
    md5 = p_hash("md5", secret[:half], label + seed, length)
    sha = p_hash("sha1", secret[len(secret) - half :], label + seed, length)
    return (int.from_bytes(md5, "big") ^ int.from_bytes(sha, "big")).to_bytes(length, "big")


def prf_tls12(hash_name: str) -> Prf:
    """Return the TLS 1.2 PRF (RFC 5246 §5) over ``hash_name`` (``"sha256"`` or ``"sha384"``)."""

    def prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
        return p_hash(hash_name, secret, label + seed, length)

    return prf


def _md5_sha1(data: bytes) -> bytes:
    return hashlib.md5(data).digest() + hashlib.sha1(data).digest()


def transcript_hash(hash_name: str | None) -> TranscriptHash:
    """Return the Finished hash: ``MD5 || SHA-1`` for ``None`` (TLS 1.0), else ``hash_name``."""
    if hash_name is None:
        return _md5_sha1

    def digest(data: bytes) -> bytes:
        return hashlib.new(hash_name, data).digest()

    return digest
