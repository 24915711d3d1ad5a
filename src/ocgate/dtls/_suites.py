"""Cipher suites and record protection on ``cryptography`` primitives.

Theory of operation. A suite fixes the bulk cipher, the record MAC and (for DTLS 1.2) the PRF
hash; the key exchange named in a suite never runs here (legacy mode resumes a session, PSK mode
is plain PSK), so it only shows up in the description. Record protection follows:

* CBC suites (DTLS 0.9 and DTLS 1.2 ``*-SHA``): ``IV || E(plaintext || HMAC-SHA1 || padding)``
  with a fresh explicit IV per record (RFC 4346 §6.2.3.2, as OpenSSL's ``DTLS1_BAD_VER``); the MAC
  covers ``epoch||seq || type || version || length || plaintext`` (RFC 6347 §4.1.2.1). On receive
  the padding and the MAC are both checked before one constant-time verdict; a Lucky13-grade
  timing defence is beyond pure Python (noted in the module docs, not hidden).
* AES-GCM (RFC 5288): nonce = 4-byte implicit salt || 8-byte explicit nonce, which we set to
  ``epoch||seq`` and send in front of the ciphertext.
* ChaCha20-Poly1305 (RFC 7905): nonce = 12-byte IV XOR ``epoch||seq`` (left-padded), nothing sent.
* The AEAD additional data is ``epoch||seq || type || version || plaintext length``.

Key block (RFC 5246 §6.3): client MAC key, server MAC key, client key, server key, client IV,
server IV, in that order; the IVs are only used by the AEAD suites.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ocgate.dtls._prf import Prf, TranscriptHash, prf_tls10, prf_tls12, transcript_hash
from ocgate.errors import BadRecordMac

__all__ = [
    "SUITE_PARAMS",
    "BulkCipher",
    "CipherSuite",
    "DtlsSuite",
    "KeyBlock",
    "ProtocolVersion",
    "RecordProtection",
    "SuiteParams",
    "derive_key_block",
    "derive_protections",
    "protections",
]


class ProtocolVersion(IntEnum):
    """Record / hello versions (RFC 6347 §4.1; OpenSSL ``DTLS1_BAD_VER`` for Cisco DTLS 0.9)."""

    DTLS1_BAD_VER = 0x0100
    DTLS1_0 = 0xFEFF
    DTLS1_2 = 0xFEFD


class CipherSuite(IntEnum):
    """IANA TLS cipher suite registry values used by AnyConnect DTLS (anyconnect-protocol.md §9)."""

    TLS_RSA_WITH_3DES_EDE_CBC_SHA = 0x000A
    TLS_RSA_WITH_AES_128_CBC_SHA = 0x002F
    TLS_DHE_RSA_WITH_AES_128_CBC_SHA = 0x0033
    TLS_RSA_WITH_AES_256_CBC_SHA = 0x0035
    TLS_DHE_RSA_WITH_AES_256_CBC_SHA = 0x0039
    TLS_RSA_WITH_AES_128_GCM_SHA256 = 0x009C
    TLS_RSA_WITH_AES_256_GCM_SHA384 = 0x009D
    TLS_PSK_WITH_AES_128_GCM_SHA256 = 0x00A8
    TLS_PSK_WITH_AES_256_GCM_SHA384 = 0x00A9
    TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 = 0xC02F
    TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 = 0xC030
    TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 = 0xCCAB


class BulkCipher(Enum):
    AES_CBC = "AES-CBC"
    DES3_CBC = "3DES-CBC"
    AES_GCM = "AES-GCM"
    CHACHA20_POLY1305 = "CHACHA20-POLY1305"


@dataclass(frozen=True, slots=True)
class SuiteParams:
    """What a suite means for the record layer and the PRF.

    :param kx: key exchange as openconnect prints it (``RSA``, ``DHE-RSA``, ``ECDHE-RSA``, ``PSK``).
    :param cipher_name: GnuTLS spelling, e.g. ``AES-256-GCM``.
    :param prf_hash: TLS 1.2 PRF / Finished hash.
    """

    kx: str
    bulk: BulkCipher
    key_len: int
    cipher_name: str
    prf_hash: str = "sha256"

    @property
    def mac_key_len(self) -> int:
        return 20 if self.bulk in _CBC else 0

    @property
    def fixed_iv_len(self) -> int:
        return {BulkCipher.AES_GCM: 4, BulkCipher.CHACHA20_POLY1305: 12}.get(self.bulk, 0)

    @property
    def record_overhead(self) -> int:
        """Record header + explicit IV/nonce + MAC/tag + worst-case minimal padding."""
        return (
            13
            + {
                BulkCipher.AES_CBC: 16 + 20 + 16,
                BulkCipher.DES3_CBC: 8 + 20 + 8,
                BulkCipher.AES_GCM: 8 + 16,
                BulkCipher.CHACHA20_POLY1305: 16,
            }[self.bulk]
        )


_CBC = (BulkCipher.AES_CBC, BulkCipher.DES3_CBC)
_S = CipherSuite
_AES_CBC, _GCM = BulkCipher.AES_CBC, BulkCipher.AES_GCM
SUITE_PARAMS: dict[CipherSuite, SuiteParams] = {
    _S.TLS_RSA_WITH_3DES_EDE_CBC_SHA: SuiteParams("RSA", BulkCipher.DES3_CBC, 24, "3DES-CBC"),
    _S.TLS_RSA_WITH_AES_128_CBC_SHA: SuiteParams("RSA", _AES_CBC, 16, "AES-128-CBC"),
    _S.TLS_DHE_RSA_WITH_AES_128_CBC_SHA: SuiteParams("DHE-RSA", _AES_CBC, 16, "AES-128-CBC"),
    _S.TLS_RSA_WITH_AES_256_CBC_SHA: SuiteParams("RSA", _AES_CBC, 32, "AES-256-CBC"),
    _S.TLS_DHE_RSA_WITH_AES_256_CBC_SHA: SuiteParams("DHE-RSA", _AES_CBC, 32, "AES-256-CBC"),
    _S.TLS_RSA_WITH_AES_128_GCM_SHA256: SuiteParams("RSA", _GCM, 16, "AES-128-GCM"),
    _S.TLS_RSA_WITH_AES_256_GCM_SHA384: SuiteParams("RSA", _GCM, 32, "AES-256-GCM", "sha384"),
    _S.TLS_PSK_WITH_AES_128_GCM_SHA256: SuiteParams("PSK", _GCM, 16, "AES-128-GCM"),
    _S.TLS_PSK_WITH_AES_256_GCM_SHA384: SuiteParams("PSK", _GCM, 32, "AES-256-GCM", "sha384"),
    _S.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: SuiteParams("ECDHE-RSA", _GCM, 16, "AES-128-GCM"),
    _S.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: SuiteParams(
        "ECDHE-RSA", _GCM, 32, "AES-256-GCM", "sha384"
    ),
    _S.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256: SuiteParams(
        "PSK", BulkCipher.CHACHA20_POLY1305, 32, "CHACHA20-POLY1305"
    ),
}


@dataclass(frozen=True, slots=True)
class DtlsSuite:
    """A negotiated (protocol version, cipher suite) pair, named as in the CONNECT headers.

    :param name: the ``X-DTLS-CipherSuite`` / ``X-DTLS12-CipherSuite`` value, e.g. ``AES256-SHA``.
    """

    name: str
    version: ProtocolVersion
    cipher_suite: CipherSuite

    @property
    def params(self) -> SuiteParams:
        return SUITE_PARAMS[self.cipher_suite]

    @property
    def prf(self) -> Prf:
        if self.version == ProtocolVersion.DTLS1_BAD_VER:
            return prf_tls10
        return prf_tls12(self.params.prf_hash)

    @property
    def transcript_hash(self) -> TranscriptHash:
        if self.version == ProtocolVersion.DTLS1_BAD_VER:
            return transcript_hash(None)
        return transcript_hash(self.params.prf_hash)

    @property
    def description(self) -> str:
        """openconnect/GnuTLS ``(DTLS1.2)-(PSK)-(AES-256-GCM)``; CBC suites add ``-(SHA1)``."""
        version = "DTLS0.9" if self.version == ProtocolVersion.DTLS1_BAD_VER else "DTLS1.2"
        params = self.params
        text = f"({version})-({params.kx})-({params.cipher_name})"
        return text + "-(SHA1)" if params.bulk in _CBC else text


class RecordProtection(Protocol):
    """One direction's record cipher; ``epoch_seq`` is the 64-bit ``epoch << 48 | seq``."""

    def seal(self, epoch_seq: int, content_type: int, version: int, plaintext: bytes) -> bytes: ...

    def open(self, epoch_seq: int, content_type: int, version: int, fragment: bytes) -> bytes: ...


# Pseudo-header the record MAC / AEAD additional data covers (RFC 6347 §4.1.2.1, RFC 5246 §6.2.3):
#   epoch (2) | sequence_number (6) | type (1) | version (2) | plaintext length (2)
_PSEUDO_HEADER = struct.Struct("!QBHH")
_MAC_LEN = 20


class _CbcSha1:
    def __init__(
        self,
        cipher: Callable[[bytes], Cipher[modes.CBC]],
        block: int,
        mac_key: bytes,
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self._cipher = cipher
        self._block = block
        self._mac_key = mac_key
        self._random_bytes = random_bytes

    def _mac(self, epoch_seq: int, content_type: int, version: int, data: bytes) -> bytes:
        header = _PSEUDO_HEADER.pack(epoch_seq, content_type, version, len(data))
        return hmac.digest(self._mac_key, header + data, "sha1")

    def seal(self, epoch_seq: int, content_type: int, version: int, plaintext: bytes) -> bytes:
        block = self._block
        pad = block - 1 - (len(plaintext) + _MAC_LEN) % block
        data = plaintext + self._mac(epoch_seq, content_type, version, plaintext)
        data += bytes([pad]) * (pad + 1)
        iv = self._random_bytes(block)
        encryptor = self._cipher(iv).encryptor()
        return iv + encryptor.update(data) + encryptor.finalize()

    def open(self, epoch_seq: int, content_type: int, version: int, fragment: bytes) -> bytes:
        block = self._block
        size = len(fragment) - block
        if size < _MAC_LEN + 1 or size % block:
            raise BadRecordMac("bad CBC record length")
        decryptor = self._cipher(fragment[:block]).decryptor()
        data = decryptor.update(fragment[block:]) + decryptor.finalize()
        pad = data[-1]
        # Check the padding and the MAC, then decide once: one error for both (no padding oracle).
        pad_fits = pad + 1 + _MAC_LEN <= len(data)
        pad_len = pad if pad_fits else 0
        pad_ok = hmac.compare_digest(data[-1 - pad_len :], bytes([pad]) * (pad_len + 1))
        end = len(data) - 1 - pad_len - _MAC_LEN
        plaintext = data[:end]
        expected = self._mac(epoch_seq, content_type, version, plaintext)
        mac_ok = hmac.compare_digest(data[end : end + _MAC_LEN], expected)
        if not (mac_ok & pad_ok & pad_fits):
            raise BadRecordMac()
        return plaintext


class _AesGcm:
    def __init__(self, key: bytes, salt: bytes) -> None:
        self._aead = AESGCM(key)
        self._salt = salt

    def seal(self, epoch_seq: int, content_type: int, version: int, plaintext: bytes) -> bytes:
        explicit = epoch_seq.to_bytes(8, "big")
        aad = _PSEUDO_HEADER.pack(epoch_seq, content_type, version, len(plaintext))
        return explicit + self._aead.encrypt(self._salt + explicit, plaintext, aad)

    def open(self, epoch_seq: int, content_type: int, version: int, fragment: bytes) -> bytes:
        if len(fragment) < 8 + 16:
            raise BadRecordMac("short GCM record")
        aad = _PSEUDO_HEADER.pack(epoch_seq, content_type, version, len(fragment) - 24)
        try:
            return self._aead.decrypt(self._salt + fragment[:8], fragment[8:], aad)
        except InvalidTag:
            raise BadRecordMac() from None


class _ChaCha20Poly1305:
    def __init__(self, key: bytes, iv: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._iv = int.from_bytes(iv, "big")

    def seal(self, epoch_seq: int, content_type: int, version: int, plaintext: bytes) -> bytes:
        nonce = (self._iv ^ epoch_seq).to_bytes(12, "big")
        aad = _PSEUDO_HEADER.pack(epoch_seq, content_type, version, len(plaintext))
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, epoch_seq: int, content_type: int, version: int, fragment: bytes) -> bytes:
        if len(fragment) < 16:
            raise BadRecordMac("short ChaCha20-Poly1305 record")
        nonce = (self._iv ^ epoch_seq).to_bytes(12, "big")
        aad = _PSEUDO_HEADER.pack(epoch_seq, content_type, version, len(fragment) - 16)
        try:
            return self._aead.decrypt(nonce, fragment, aad)
        except InvalidTag:
            raise BadRecordMac() from None


def _protection(
    params: SuiteParams, mac_key: bytes, key: bytes, iv: bytes, random_bytes: Callable[[int], bytes]
) -> RecordProtection:
    if params.bulk is BulkCipher.AES_GCM:
        return _AesGcm(key, iv)
    if params.bulk is BulkCipher.CHACHA20_POLY1305:
        return _ChaCha20Poly1305(key, iv)
    if params.bulk is BulkCipher.AES_CBC:
        aes = algorithms.AES(key)
        return _CbcSha1(lambda iv: Cipher(aes, modes.CBC(iv)), 16, mac_key, random_bytes)
    des3 = TripleDES(key)
    return _CbcSha1(lambda iv: Cipher(des3, modes.CBC(iv)), 8, mac_key, random_bytes)


@dataclass(frozen=True, slots=True)
class KeyBlock:
    """The RFC 5246 §6.3 key block of one association, split per direction.

    ``read_*`` protect what the client writes (the server reads), ``write_*`` what the server
    writes. Secret: never logged, not in the ``repr``.
    """

    read_mac: bytes = field(repr=False)
    write_mac: bytes = field(repr=False)
    read_key: bytes = field(repr=False)
    write_key: bytes = field(repr=False)
    read_iv: bytes = field(repr=False)
    write_iv: bytes = field(repr=False)

    def swapped(self) -> KeyBlock:
        """The same keys seen from the client (for tests and benchmarks that play the client)."""
        return KeyBlock(
            self.write_mac,
            self.read_mac,
            self.write_key,
            self.read_key,
            self.write_iv,
            self.read_iv,
        )


def derive_key_block(
    suite: DtlsSuite, master_secret: bytes, client_random: bytes, server_random: bytes
) -> KeyBlock:
    """Return the server's view of the RFC 5246 §6.3 key block."""
    params = suite.params
    mac, key, iv = params.mac_key_len, params.key_len, params.fixed_iv_len
    seed = server_random + client_random
    block = suite.prf(master_secret, b"key expansion", seed, 2 * (mac + key + iv))
    parts: list[bytes] = []
    offset = 0
    for size in (mac, mac, key, key, iv, iv):
        parts.append(block[offset : offset + size])
        offset += size
    return KeyBlock(*parts)


def protections(
    suite: DtlsSuite, keys: KeyBlock, random_bytes: Callable[[int], bytes]
) -> tuple[RecordProtection, RecordProtection]:
    """Return ``(read, write)`` protections of ``keys`` (read = what the client writes)."""
    params = suite.params
    return (
        _protection(params, keys.read_mac, keys.read_key, keys.read_iv, random_bytes),
        _protection(params, keys.write_mac, keys.write_key, keys.write_iv, random_bytes),
    )


def derive_protections(
    suite: DtlsSuite,
    master_secret: bytes,
    client_random: bytes,
    server_random: bytes,
    random_bytes: Callable[[int], bytes],
) -> tuple[RecordProtection, RecordProtection]:
    """Return ``(client_write, server_write)`` from the RFC 5246 §6.3 key block."""
    keys = derive_key_block(suite, master_secret, client_random, server_random)
    return protections(suite, keys, random_bytes)
