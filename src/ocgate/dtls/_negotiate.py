"""Choosing the DTLS mode and suite from the CONNECT request headers (§9.1-§9.3).

Reference: anyconnect-protocol.md §9.

Follows ocserv ``src/worker-http.c`` ``header_value_check``: the token ``PSK-NEGOTIATE`` in
``X-DTLS-CipherSuite`` or ``X-DTLS12-CipherSuite`` selects PSK when enabled. Otherwise legacy
mode needs a valid 96-hex ``X-DTLS-Master-Secret``; the suite comes from ``X-DTLS12-CipherSuite``
when it names one we know (DTLS 1.2 table), else from ``X-DTLS-CipherSuite`` (DTLS 0.9 for the
CBC names, DTLS 1.2 for the ``OC-``/``OC2-`` names). Among the client's names the first one whose
cipher equals the CSTP TLS cipher wins at once; otherwise the highest ocserv priority. Names the
reference lists without an ocserv priority ("—") rank below every prioritised one except
``DES-CBC3-SHA``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ocgate.dtls._association import LegacyMode, PskMode
from ocgate.dtls._suites import CipherSuite, DtlsSuite, ProtocolVersion
from ocgate.errors import LocalProtocolError

__all__ = [
    "DTLS12_CIPHERSUITES",
    "DTLS_CIPHERSUITES",
    "PSK_NEGOTIATE",
    "DtlsOffer",
    "negotiate_dtls",
]

PSK_NEGOTIATE = "PSK-NEGOTIATE"

_C = CipherSuite
_V09, _V12 = ProtocolVersion.DTLS1_BAD_VER, ProtocolVersion.DTLS1_2


def _table(
    version: ProtocolVersion, rows: tuple[tuple[str, CipherSuite, int], ...]
) -> dict[str, tuple[DtlsSuite, int]]:
    return {name: (DtlsSuite(name, version, suite), prio) for name, suite, prio in rows}


DTLS_CIPHERSUITES: dict[str, tuple[DtlsSuite, int]] = {
    **_table(
        _V12,
        (
            ("OC-DTLS1_2-AES256-GCM", _C.TLS_RSA_WITH_AES_256_GCM_SHA384, 90),
            ("OC-DTLS1_2-AES128-GCM", _C.TLS_RSA_WITH_AES_128_GCM_SHA256, 80),
            ("OC2-DTLS1_2-CHACHA20-POLY1305", _C.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, 45),
        ),
    ),
    **_table(
        _V09,
        (
            ("AES256-SHA", _C.TLS_RSA_WITH_AES_256_CBC_SHA, 60),
            ("AES128-SHA", _C.TLS_RSA_WITH_AES_128_CBC_SHA, 50),
            ("DHE-RSA-AES256-SHA", _C.TLS_DHE_RSA_WITH_AES_256_CBC_SHA, 40),
            ("DHE-RSA-AES128-SHA", _C.TLS_DHE_RSA_WITH_AES_128_CBC_SHA, 30),
            ("DES-CBC3-SHA", _C.TLS_RSA_WITH_3DES_EDE_CBC_SHA, 1),
        ),
    ),
}
"""``X-DTLS-CipherSuite`` name → (suite, ocserv priority)."""

DTLS12_CIPHERSUITES: dict[str, tuple[DtlsSuite, int]] = _table(
    _V12,
    (
        ("AES256-GCM-SHA384", _C.TLS_RSA_WITH_AES_256_GCM_SHA384, 90),
        ("ECDHE-RSA-AES256-GCM-SHA384", _C.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, 80),
        ("ECDHE-RSA-AES128-GCM-SHA256", _C.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, 70),
        ("AES128-GCM-SHA256", _C.TLS_RSA_WITH_AES_128_GCM_SHA256, 50),
        ("AES256-SHA", _C.TLS_RSA_WITH_AES_256_CBC_SHA, 40),
        ("AES128-SHA", _C.TLS_RSA_WITH_AES_128_CBC_SHA, 30),
        ("DHE-RSA-AES256-SHA", _C.TLS_DHE_RSA_WITH_AES_256_CBC_SHA, 20),
        ("DHE-RSA-AES128-SHA", _C.TLS_DHE_RSA_WITH_AES_128_CBC_SHA, 10),
    ),
)
"""``X-DTLS12-CipherSuite`` name → (suite, ocserv priority); all DTLS 1.2."""

_HEX_SECRET = re.compile(r"[0-9A-Fa-f]{96}")
_FAMILIES = (
    ("CHACHA20", "CHACHA20-POLY1305"),
    ("AES256GCM", "AES-256-GCM"),
    ("AES128GCM", "AES-128-GCM"),
    ("AES256", "AES-256-CBC"),
    ("AES128", "AES-128-CBC"),
    ("3DES", "3DES-CBC"),
    ("DESCBC3", "3DES-CBC"),
)


@dataclass(frozen=True, slots=True)
class DtlsOffer:
    """What to create associations with, and the CONNECT response headers announcing it.

    :param headers: ``(name, value)`` pairs, names spelled exactly as clients expect (§5.2).
    """

    mode: LegacyMode | PskMode
    headers: tuple[tuple[str, str], ...]


def _cipher_family(tls_cipher: str | None) -> str | None:
    """Map an OpenSSL or IANA cipher name (``ECDHE-RSA-AES256-GCM-SHA384``,
    ``TLS_AES_256_GCM_SHA384``) to the GnuTLS cipher spelling used in :class:`SuiteParams`."""
    if not tls_cipher:
        return None
    squashed = re.sub(r"[-_]", "", tls_cipher.upper())
    for marker, family in _FAMILIES:
        if marker in squashed:
            return family
    return None


def _select(
    value: str, table: Mapping[str, tuple[DtlsSuite, int]], family: str | None
) -> DtlsSuite | None:
    best: tuple[DtlsSuite, int] | None = None
    for token in value.split(":"):
        entry = table.get(token.strip())
        if entry is None:
            continue
        if family is not None and entry[0].params.cipher_name == family:
            return entry[0]  # ocserv: a suite matching the CSTP cipher ends the search.
        if best is None or entry[1] > best[1]:
            best = entry
    return best[0] if best else None


def negotiate_dtls(
    headers: Mapping[str, str],
    *,
    psk_enabled: bool,
    legacy_enabled: bool,
    tls_cipher_hint: str | None,
    random_bytes: Callable[[int], bytes],
    psk: bytes | None = None,
) -> DtlsOffer | None:
    """Pick the DTLS mode for a CONNECT request, or ``None`` for CSTP only.

    :param headers: request headers with lower-cased names.
    :param tls_cipher_hint: the CSTP TLS cipher name (OpenSSL spelling), preferred when offered.
    :param psk: the 32-byte ``EXPORTER-openconnect-psk`` of the CSTP TLS session; required when
        PSK may be chosen.
    """
    dtls = headers.get("x-dtls-ciphersuite")
    dtls12 = headers.get("x-dtls12-ciphersuite")
    tokens = {t.strip() for v in (dtls, dtls12) if v for t in v.split(":")}
    if psk_enabled and PSK_NEGOTIATE in tokens:
        if psk is None:
            raise LocalProtocolError("PSK-NEGOTIATE needs the CSTP exporter key")
        app_id = random_bytes(32)
        return DtlsOffer(
            PskMode(app_id=app_id, psk=psk),
            (("X-DTLS-App-ID", app_id.hex()), ("X-DTLS-CipherSuite", PSK_NEGOTIATE)),
        )
    secret = headers.get("x-dtls-master-secret", "").strip()
    if not legacy_enabled or not _HEX_SECRET.fullmatch(secret):
        return None
    family = _cipher_family(tls_cipher_hint)
    chosen: tuple[str, DtlsSuite | None] = ("X-DTLS12-CipherSuite", None)
    if dtls12:
        chosen = ("X-DTLS12-CipherSuite", _select(dtls12, DTLS12_CIPHERSUITES, family))
    if chosen[1] is None and dtls:
        chosen = ("X-DTLS-CipherSuite", _select(dtls, DTLS_CIPHERSUITES, family))
    header, suite = chosen
    if suite is None:
        return None
    session_id = random_bytes(32)
    mode = LegacyMode(session_id=session_id, master_secret=bytes.fromhex(secret), suite=suite)
    return DtlsOffer(mode, (("X-DTLS-Session-ID", session_id.hex()), (header, suite.name)))
