"""Record framing, the replay window and record protection (RFC 6347 §4.1, RFC 5288, RFC 7905)."""

from __future__ import annotations

import hmac
import random
import struct
import time

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ocgate.dtls import DTLS12_CIPHERSUITES, DTLS_CIPHERSUITES, ContentType, ReplayWindow
from ocgate.dtls._prf import prf_tls10, prf_tls12
from ocgate.dtls._record import encode_record, records_untrusted
from ocgate.dtls._suites import derive_protections
from ocgate.errors import BadRecord, BadRecordMac, LocalProtocolError

MASTER = bytes(range(48))
CLIENT_RANDOM = bytes(range(32))
SERVER_RANDOM = bytes(range(32, 64))
EPOCH_SEQ = 1 << 48 | 0x0102030405


def test_records_roundtrip_and_split() -> None:
    one = encode_record(ContentType.handshake, 0xFEFD, 5, b"abc")
    two = encode_record(ContentType.application_data, 0x0100, 1 << 48 | 7, b"")
    assert one == bytes.fromhex("16fefd0000000000000005") + b"\x00\x03abc"
    records = list(records_untrusted(one + two))
    assert [(r.content_type, r.version, r.epoch, r.fragment) for r in records] == [
        (22, 0xFEFD, 0, b"abc"),
        (23, 0x0100, 1, b""),
    ]


@pytest.mark.parametrize(
    "datagram",
    [b"\x16\xfe\xfd", b"\x16\xfe\xfd" + bytes(8) + b"\x00\x05ab", b"\x63\xfe\xfd" + bytes(10),
     b"\x16\x03\x03" + bytes(10)],
)  # fmt: skip
def test_bad_records(datagram: bytes) -> None:
    with pytest.raises(BadRecord):
        list(records_untrusted(datagram))


def test_encode_record_refuses_oversize() -> None:
    with pytest.raises(LocalProtocolError):
        encode_record(23, 0xFEFD, 0, bytes(2**14 + 2049))


def test_replay_window_follows_openssl_bad_dtls_test() -> None:
    """The record sequence of OpenSSL test/bad_dtls_test.c ``tests[]`` (DROP = replay/stale)."""
    sequence = [
        (1, 0), (3, 0), (2, 0), (0x1234, 0), (0x1230, 0), (0x1235, 0), (0xFFFF, 0), (0x10001, 0),
        (0xFFFE, 0), (0x10000, 0), (0x10001, 1), (0xFF, 1), (0x100000, 0), (0x800000, 0),
        (0x7FFFE1, 0), (0xFFFFFF, 0), (0x1000000, 0), (0xFFFFFE, 0), (0xFFFFFF, 1),
        (0x1000010, 0), (0xFFFFFD, 0), (0x1000011, 0), (0x12, 1), (0x1000012, 0),
        (0x1FFFFFF, 0), (0x2000000, 0), (0x1FF00FE, 1), (0x2000001, 0), (0x20FFFFF, 0),
        (0x2105500, 0), (0x20FFFFE, 1), (0x21054FF, 0), (0x211FFFF, 0), (0x2110000, 1),
        (0x2120000, 0),
    ]  # fmt: skip
    window = ReplayWindow()
    for seq, drop in sequence:
        if drop:
            with pytest.raises(BadRecord):
                window.check(seq)
        else:
            window.check(seq)
            window.mark(seq)


def test_replay_window_edges() -> None:
    window = ReplayWindow()
    window.check(0)
    window.mark(0)
    window.mark(100)
    window.check(37)  # 63 behind: inside the window, never seen.
    with pytest.raises(BadRecord):
        window.check(36)  # 64 behind: too old.
    with pytest.raises(BadRecord):
        window.check(100)


def _key_block(suite_name: str, table: str = "dtls") -> tuple[bytes, object]:
    suite = (DTLS12_CIPHERSUITES if table == "dtls12" else DTLS_CIPHERSUITES)[suite_name][0]
    prf = prf_tls10 if suite.version == 0x0100 else prf_tls12(suite.params.prf_hash)
    return prf(MASTER, b"key expansion", SERVER_RANDOM + CLIENT_RANDOM, 200), suite


def test_gcm_record_matches_rfc5288_assembly() -> None:
    block, suite = _key_block("AES256-GCM-SHA384", "dtls12")
    _, server = derive_protections(suite, MASTER, CLIENT_RANDOM, SERVER_RANDOM, random.randbytes)  # type: ignore[arg-type]
    key, salt = block[32:64], block[64 + 4 : 64 + 8]  # client key, server key, client iv, server iv
    sealed = server.seal(EPOCH_SEQ, 23, 0xFEFD, b"payload")
    explicit = EPOCH_SEQ.to_bytes(8, "big")
    aad = struct.pack("!QBHH", EPOCH_SEQ, 23, 0xFEFD, 7)
    assert sealed == explicit + AESGCM(key).encrypt(salt + explicit, b"payload", aad)
    assert server.open(EPOCH_SEQ, 23, 0xFEFD, sealed) == b"payload"
    with pytest.raises(BadRecordMac):
        server.open(EPOCH_SEQ + 1, 23, 0xFEFD, sealed)
    with pytest.raises(BadRecordMac):
        server.open(EPOCH_SEQ, 23, 0xFEFD, sealed[:20])


def test_chacha_record_matches_rfc7905_assembly() -> None:
    block, suite = _key_block("OC2-DTLS1_2-CHACHA20-POLY1305")
    _, server = derive_protections(suite, MASTER, CLIENT_RANDOM, SERVER_RANDOM, random.randbytes)  # type: ignore[arg-type]
    key, iv = block[32:64], block[64 + 12 : 64 + 24]
    nonce = (int.from_bytes(iv, "big") ^ EPOCH_SEQ).to_bytes(12, "big")
    aad = struct.pack("!QBHH", EPOCH_SEQ, 23, 0xFEFD, 3)
    sealed = server.seal(EPOCH_SEQ, 23, 0xFEFD, b"abc")
    assert sealed == ChaCha20Poly1305(key).encrypt(nonce, b"abc", aad)
    assert server.open(EPOCH_SEQ, 23, 0xFEFD, sealed) == b"abc"
    with pytest.raises(BadRecordMac):
        server.open(EPOCH_SEQ, 23, 0xFEFD, sealed[:10])
    with pytest.raises(BadRecordMac):
        server.open(EPOCH_SEQ, 22, 0xFEFD, sealed)


def test_cbc_record_matches_openssl_bad_dtls_layout() -> None:
    """IV || AES-CBC(data || HMAC-SHA1(epoch||seq||type||version||len||data) || padding)."""
    block, suite = _key_block("AES128-SHA")
    iv = bytes(range(16))
    _, server = derive_protections(suite, MASTER, CLIENT_RANDOM, SERVER_RANDOM, lambda n: iv)  # type: ignore[arg-type]
    mac_key, key = block[20:40], block[40 + 16 : 40 + 32]  # server MAC key, server write key
    data = b"twelve bytes"
    mac = hmac.digest(
        mac_key, struct.pack("!QBHH", EPOCH_SEQ, 23, 0x0100, len(data)) + data, "sha1"
    )
    pad = 15 - (len(data) + 20) % 16
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    expected = iv + encryptor.update(data + mac + bytes([pad]) * (pad + 1)) + encryptor.finalize()
    sealed = server.seal(EPOCH_SEQ, 23, 0x0100, data)
    assert sealed == expected
    assert server.open(EPOCH_SEQ, 23, 0x0100, sealed) == data


def _cbc_ciphertext(suite_name: str, plaintext_after_iv: bytes) -> tuple[object, bytes]:
    block, suite = _key_block(suite_name)
    _, server = derive_protections(suite, MASTER, CLIENT_RANDOM, SERVER_RANDOM, random.randbytes)  # type: ignore[arg-type]
    key, iv = block[40 + 16 : 40 + 32], bytes(16)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return server, iv + encryptor.update(plaintext_after_iv) + encryptor.finalize()


@pytest.mark.parametrize(
    "inner",
    [
        bytes(31) + b"\x00",  # Padding fine, MAC wrong.
        bytes(31) + b"\x40",  # Padding length longer than the record.
        bytes(28) + b"\x01\x02\x03\x03",  # Padding bytes inconsistent.
        bytes(15) + b"\x00",  # Too short for a MAC.
        bytes(17),  # Not a whole number of blocks.
    ],
)
def test_cbc_errors_are_all_bad_record_mac(inner: bytes) -> None:
    server, fragment = _cbc_ciphertext("AES128-SHA", inner.ljust(-(-len(inner) // 16) * 16, b"\0"))
    if len(inner) % 16:
        fragment = fragment[:-3]
    with pytest.raises(BadRecordMac):
        server.open(EPOCH_SEQ, 23, 0x0100, fragment)  # type: ignore[attr-defined]


def test_3des_roundtrip_with_variable_padding() -> None:
    _, suite = _key_block("DES-CBC3-SHA")
    client, server = derive_protections(
        suite, MASTER, CLIENT_RANDOM, SERVER_RANDOM, random.randbytes
    )  # type: ignore[arg-type]
    for size in range(0, 20):
        sealed = server.seal(EPOCH_SEQ, 23, 0x0100, bytes(size))
        assert (len(sealed) - 8) % 8 == 0
        assert server.open(EPOCH_SEQ, 23, 0x0100, sealed) == bytes(size)
    with pytest.raises(BadRecordMac):
        client.open(EPOCH_SEQ, 23, 0x0100, server.seal(EPOCH_SEQ, 23, 0x0100, b"x"))


def test_replay_window_survives_a_sequence_number_far_ahead() -> None:
    # Issue "hostile peers": 2**40 ahead used to shift the bitmap by the distance (gigabytes).
    window = ReplayWindow()
    window.mark(5)
    started = time.perf_counter()
    window.mark(2**47)
    assert time.perf_counter() - started < 0.1
    with pytest.raises(BadRecord):
        window.check(2**47)  # a replay of the far record
    with pytest.raises(BadRecord):
        window.check(5)  # now far behind the window
    window.check(2**47 - 1)  # inside the new window, not seen yet
    window.mark(2**47 - 1)
    with pytest.raises(BadRecord):
        window.check(2**47 - 1)
