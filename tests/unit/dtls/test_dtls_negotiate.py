"""negotiate_dtls: §9.1-§9.3 mode and suite selection, as ocserv does it."""

from __future__ import annotations

import pytest

from ocgate.dtls import (
    DTLS12_CIPHERSUITES,
    DTLS_CIPHERSUITES,
    LegacyMode,
    ProtocolVersion,
    PskMode,
    negotiate_dtls,
)
from ocgate.errors import LocalProtocolError

SECRET = "AB" * 48
OC_DTLS = (
    "PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM:OC2-DTLS1_2-CHACHA20-POLY1305:OC-DTLS1_2-AES128-GCM:"
    "DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:AES256-SHA:AES128-SHA"
)
OC_DTLS12 = (
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-GCM-SHA256:"
    "DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:AES256-SHA:AES128-SHA"
)


def counter(n: int) -> bytes:
    return bytes(range(n))


def negotiate(
    headers: dict[str, str], *, psk: bool = True, legacy: bool = True, hint: str | None = None
):  # type: ignore[no-untyped-def]
    return negotiate_dtls(
        headers,
        psk_enabled=psk,
        legacy_enabled=legacy,
        tls_cipher_hint=hint,
        random_bytes=counter,
        psk=b"P" * 32,
    )


def test_psk_negotiate_wins_when_enabled() -> None:
    offer = negotiate({"x-dtls-ciphersuite": OC_DTLS, "x-dtls-master-secret": SECRET})
    assert offer is not None
    assert isinstance(offer.mode, PskMode)
    assert offer.mode.app_id == counter(32)
    assert offer.headers == (
        ("X-DTLS-App-ID", counter(32).hex()),
        ("X-DTLS-CipherSuite", "PSK-NEGOTIATE"),
    )
    assert "PPPP" not in repr(offer)
    in12 = negotiate({"x-dtls12-ciphersuite": "PSK-NEGOTIATE"})
    assert in12 is not None
    assert isinstance(in12.mode, PskMode)


def test_psk_needs_the_exporter_key() -> None:
    with pytest.raises(LocalProtocolError):
        negotiate_dtls(
            {"x-dtls-ciphersuite": "PSK-NEGOTIATE"},
            psk_enabled=True,
            legacy_enabled=True,
            tls_cipher_hint=None,
            random_bytes=counter,
        )


def test_legacy_prefers_the_dtls12_header() -> None:
    headers = {
        "x-dtls-ciphersuite": OC_DTLS,
        "x-dtls12-ciphersuite": OC_DTLS12,
        "x-dtls-master-secret": SECRET,
    }
    offer = negotiate(headers, psk=False)
    assert offer is not None
    assert isinstance(offer.mode, LegacyMode)
    assert offer.mode.suite == DTLS12_CIPHERSUITES["AES256-GCM-SHA384"][0]
    assert offer.mode.master_secret == bytes.fromhex(SECRET)
    assert offer.mode.session_id == counter(32)
    assert offer.headers == (
        ("X-DTLS-Session-ID", counter(32).hex()),
        ("X-DTLS12-CipherSuite", "AES256-GCM-SHA384"),
    )
    assert SECRET.lower() not in repr(offer).lower()


@pytest.mark.parametrize(
    ("dtls", "dtls12", "hint", "expected"),
    [
        (OC_DTLS, None, None, ("X-DTLS-CipherSuite", "OC-DTLS1_2-AES256-GCM")),
        ("AES128-SHA:AES256-SHA", None, None, ("X-DTLS-CipherSuite", "AES256-SHA")),
        ("AES256-SHA:AES128-SHA", None, "AES128-SHA", ("X-DTLS-CipherSuite", "AES128-SHA")),
        (OC_DTLS, None, "TLS_AES_128_GCM_SHA256", ("X-DTLS-CipherSuite", "OC-DTLS1_2-AES128-GCM")),
        ("DES-CBC3-SHA", None, None, ("X-DTLS-CipherSuite", "DES-CBC3-SHA")),
        ("DHE-RSA-AES128-SHA:OC2-DTLS1_2-CHACHA20-POLY1305", None, None,
         ("X-DTLS-CipherSuite", "OC2-DTLS1_2-CHACHA20-POLY1305")),
        (None, "AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256", None,
         ("X-DTLS12-CipherSuite", "ECDHE-RSA-AES128-GCM-SHA256")),
        (None, OC_DTLS12, "ECDHE-RSA-AES128-GCM-SHA256",
         ("X-DTLS12-CipherSuite", "ECDHE-RSA-AES128-GCM-SHA256")),
        (None, "AES128-SHA", None, ("X-DTLS12-CipherSuite", "AES128-SHA")),
        ("AES256-SHA", "UNKNOWN-NAME", None, ("X-DTLS-CipherSuite", "AES256-SHA")),
    ],
)  # fmt: skip
def test_legacy_suite_priority(
    dtls: str | None, dtls12: str | None, hint: str | None, expected: tuple[str, str]
) -> None:
    headers = {"x-dtls-master-secret": SECRET}
    if dtls:
        headers["x-dtls-ciphersuite"] = dtls
    if dtls12:
        headers["x-dtls12-ciphersuite"] = dtls12
    offer = negotiate(headers, psk=False, hint=hint)
    assert offer is not None
    assert offer.headers[1] == expected
    assert isinstance(offer.mode, LegacyMode)
    table = DTLS12_CIPHERSUITES if expected[0] == "X-DTLS12-CipherSuite" else DTLS_CIPHERSUITES
    assert offer.mode.suite == table[expected[1]][0]


def test_versions_follow_the_tables() -> None:
    assert DTLS_CIPHERSUITES["AES256-SHA"][0].version is ProtocolVersion.DTLS1_BAD_VER
    assert DTLS12_CIPHERSUITES["AES256-SHA"][0].version is ProtocolVersion.DTLS1_2
    assert DTLS_CIPHERSUITES["OC-DTLS1_2-AES256-GCM"][0].version is ProtocolVersion.DTLS1_2


@pytest.mark.parametrize(
    "headers",
    [
        {"x-dtls-ciphersuite": "AES256-SHA"},  # No master secret.
        {"x-dtls-ciphersuite": "AES256-SHA", "x-dtls-master-secret": "AB" * 47},
        {"x-dtls-ciphersuite": "AES256-SHA", "x-dtls-master-secret": "ZZ" * 48},
        {"x-dtls-ciphersuite": "aes256-sha", "x-dtls-master-secret": SECRET},  # Case-sensitive.
        {"x-dtls-ciphersuite": "PSK-NEGOTIATE", "x-dtls-master-secret": SECRET},
        {"x-dtls-master-secret": SECRET},
        {},
    ],
)
def test_nothing_acceptable_means_cstp_only(headers: dict[str, str]) -> None:
    assert negotiate(headers, psk=False) is None


def test_disabled_modes() -> None:
    headers = {"x-dtls-ciphersuite": OC_DTLS, "x-dtls-master-secret": SECRET}
    assert negotiate(headers, psk=False, legacy=False) is None
    offer = negotiate(headers, psk=False)
    assert offer is not None
    assert isinstance(offer.mode, LegacyMode)
