"""Known-answer tests with written provenance (tests/vectors/dtls/SOURCES.md; STYLE rule 12)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ocgate.dtls import (
    DTLS12_CIPHERSUITES,
    DTLS_CIPHERSUITES,
    AssociationClosed,
    DataReceived,
    DtlsAssociation,
    HandshakeCompleted,
    LegacyMode,
    PskMode,
    peek_client_hello_untrusted,
)
from ocgate.dtls._prf import prf_tls10, prf_tls12

VECTORS = Path(__file__).parents[2] / "vectors" / "dtls"
PRF = json.loads((VECTORS / "prf.json").read_text())
TRANSCRIPTS = json.loads((VECTORS / "gnutls_transcripts.json").read_text())


@pytest.mark.parametrize("vector", PRF["tls12"], ids=lambda v: v["hash"])
def test_tls12_prf(vector: dict[str, str]) -> None:
    out = prf_tls12(vector["hash"])(
        bytes.fromhex(vector["secret"]),
        vector["label"].encode(),
        bytes.fromhex(vector["seed"]),
        len(vector["output"]) // 2,
    )
    assert out.hex() == vector["output"]


@pytest.mark.parametrize("vector", PRF["tls10"], ids=lambda v: v["label"])
def test_tls10_prf(vector: dict[str, str]) -> None:
    out = prf_tls10(
        bytes.fromhex(vector["secret"]),
        vector["label"].encode(),
        bytes.fromhex(vector["seed"]),
        len(vector["output"]) // 2,
    )
    assert out.hex() == vector["output"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_tls10_prf_against_openssl_kdf_live() -> None:
    secret, seed = bytes(range(7, 55)), bytes(range(64))
    result = subprocess.run(
        ["openssl", "kdf", "-keylen", "72", "-kdfopt", "digest:MD5-SHA1",
         "-kdfopt", f"hexsecret:{secret.hex()}",
         "-kdfopt", f"hexseed:{(b'master secret' + seed).hex()}",
         "TLS1-PRF"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    expected = result.stdout.strip().replace(":", "").lower()
    assert prf_tls10(secret, b"master secret", seed, 72).hex() == expected


def _mode(case: dict[str, Any]) -> LegacyMode | PskMode:
    if "suite" not in case:
        return PskMode(
            app_id=bytes.fromhex(TRANSCRIPTS["app_id"]), psk=bytes.fromhex(TRANSCRIPTS["psk"])
        )
    table = DTLS12_CIPHERSUITES if case["table"] == "dtls12" else DTLS_CIPHERSUITES
    return LegacyMode(
        session_id=bytes.fromhex(TRANSCRIPTS["session_id"]),
        master_secret=bytes.fromhex(TRANSCRIPTS["master_secret"]),
        suite=table[case["suite"]][0],
    )


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS["cases"]))
def test_gnutls_client_transcript_replays(name: str) -> None:
    """A real GnuTLS client's datagrams (Finished, records) verify against our key schedule."""
    case = TRANSCRIPTS["cases"][name]
    mode = _mode(case)
    server = DtlsAssociation(
        mode=mode, now=0.0, random_bytes=random.Random(TRANSCRIPTS["server_random_seed"]).randbytes
    )
    for i, datagram in enumerate(case["client_datagrams"]):
        server.receive_datagram(bytes.fromhex(datagram), 0.01 * i)
    events = list(iter(server.next_event, None))
    assert events[0] == HandshakeCompleted(server.cipher_description or "")
    assert DataReceived([TRANSCRIPTS["message"].encode()]) in events
    assert all(not isinstance(e, AssociationClosed) or "close_notify" in e.reason for e in events)
    if "DHE" not in case.get("suite", ""):
        assert server.cipher_description == case["gnutls_description"]


def test_peek_gnutls_client_hellos() -> None:
    legacy = TRANSCRIPTS["cases"]["dtls09-aes256"]["client_datagrams"][0]
    info = peek_client_hello_untrusted(bytes.fromhex(legacy))
    assert info is not None
    assert info.record_version == info.client_version == 0x0100
    assert info.session_id.hex() == TRANSCRIPTS["session_id"]
    assert info.lookup_id == info.session_id
    assert info.cipher_suites == (0x0035,)
    assert info.cookie == b""
    assert info.hello.offers_renegotiation_info
    first, second = TRANSCRIPTS["cases"]["psk"]["client_datagrams"][:2]
    cookieless = peek_client_hello_untrusted(bytes.fromhex(first))
    with_cookie = peek_client_hello_untrusted(bytes.fromhex(second))
    assert cookieless is not None
    assert with_cookie is not None
    assert cookieless.record_version in (0xFEFF, 0xFEFD)  # 0xFEFF when DTLS 1.0 is enabled too.
    assert cookieless.client_version == 0xFEFD
    assert cookieless.session_id.hex() == TRANSCRIPTS["app_id"] == with_cookie.lookup_id.hex()
    assert cookieless.app_id is None
    assert with_cookie.message_seq == 1
    assert len(with_cookie.cookie) == 32
    assert cookieless.cipher_suites[0] == 0x00A9
