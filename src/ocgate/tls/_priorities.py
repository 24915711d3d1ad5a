"""Translate a GnuTLS priority string (ocserv's ``tls-priorities``) into an OpenSSL policy.

ocserv hands ``tls-priorities`` to GnuTLS; ocgate terminates TLS with OpenSSL (through pyOpenSSL,
for the RFC 5705 exporter the PSK-DTLS mode needs). This module maps the parts of the GnuTLS grammar
that administrators actually write onto OpenSSL cipher lists, TLS 1.3 suites, groups and protocol
versions.

Theory of operation:

* The keyword (``NORMAL``, ``PERFORMANCE``, ``SECURE128``, …) selects the default set, which is the
  server
  preference of Cisco Secure Client 5.1: TLS 1.3 AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305; TLS
  1.2
  ECDHE-ECDSA/RSA-AES256-GCM-SHA384, then the AES-128-GCM twins, then DHE-RSA-GCM; groups X25519,
  P-256,
  P-384. ``SECURE192``/``SECURE256`` keep only 256-bit ciphers.
* ``-NAME``/``!NAME`` remove and ``+NAME`` adds a cipher (``AES-256-GCM``, ``AES-128-GCM``,
  ``CHACHA20-POLY1305``, ``AES-256-CBC``, ``AES-128-CBC``), key exchange (``ECDHE-RSA``,
  ``ECDHE-ECDSA``,
  ``DHE-RSA``, ``RSA``), protocol version (``VERS-TLS1.2``, ``VERS-TLS1.3``; versions below 1.2 are
  never
  enabled) or group (``GROUP-X25519``, ``GROUP-SECP256R1``, ``GROUP-SECP384R1``, also ``CURVE-…``).
* ``%SERVER_PRECEDENCE`` and ``%COMPAT`` match what ocgate always does; other ``%`` flags, MACs,
  signature and compression names have no OpenSSL counterpart here and produce a warning, never an
  error.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocgate.errors import ConfigError

__all__ = ["TlsPolicy", "translate_priorities"]

_KEYWORDS = frozenset(
    {"NORMAL", "PERFORMANCE", "SECURE128", "SECURE192", "SECURE256", "PFS", "LEGACY", "SECURE"}
    | {"SUITEB128", "SUITEB192", "NONE"}
)

# (cipher, key exchange) -> OpenSSL TLS 1.2 name, in server preference order.
_TLS12_SUITES: tuple[tuple[str, str, str], ...] = (
    ("AES-256-GCM", "ECDHE-ECDSA", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("AES-256-GCM", "ECDHE-RSA", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("AES-128-GCM", "ECDHE-ECDSA", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("AES-128-GCM", "ECDHE-RSA", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("AES-256-GCM", "DHE-RSA", "DHE-RSA-AES256-GCM-SHA384"),
    ("AES-128-GCM", "DHE-RSA", "DHE-RSA-AES128-GCM-SHA256"),
    ("CHACHA20-POLY1305", "ECDHE-ECDSA", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("CHACHA20-POLY1305", "ECDHE-RSA", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("AES-256-CBC", "ECDHE-ECDSA", "ECDHE-ECDSA-AES256-SHA"),
    ("AES-256-CBC", "ECDHE-RSA", "ECDHE-RSA-AES256-SHA"),
    ("AES-128-CBC", "ECDHE-ECDSA", "ECDHE-ECDSA-AES128-SHA"),
    ("AES-128-CBC", "ECDHE-RSA", "ECDHE-RSA-AES128-SHA"),
    ("AES-256-GCM", "RSA", "AES256-GCM-SHA384"),
    ("AES-128-GCM", "RSA", "AES128-GCM-SHA256"),
    ("AES-256-CBC", "RSA", "AES256-SHA"),
    ("AES-128-CBC", "RSA", "AES128-SHA"),
)
_TLS13_SUITES: tuple[tuple[str, str], ...] = (
    ("AES-256-GCM", "TLS_AES_256_GCM_SHA384"),
    ("AES-128-GCM", "TLS_AES_128_GCM_SHA256"),
    ("CHACHA20-POLY1305", "TLS_CHACHA20_POLY1305_SHA256"),
)
_GROUPS: dict[str, str] = {
    "X25519": "X25519",
    "SECP256R1": "P-256",
    "SECP384R1": "P-384",
    "SECP521R1": "P-521",
    "X448": "X448",
}
_DEFAULT_CIPHERS = ("AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305")
_DEFAULT_KX = ("ECDHE-ECDSA", "ECDHE-RSA", "DHE-RSA")
_DEFAULT_GROUPS = ("X25519", "SECP256R1", "SECP384R1")
_ALL_CIPHERS = frozenset(c for c, _, _ in _TLS12_SUITES)
_ALL_KX = frozenset(k for _, k, _ in _TLS12_SUITES)
_IGNORED_FLAGS = frozenset(
    {"%SERVER_PRECEDENCE", "%COMPAT", "%UNSAFE_RENEGOTIATION", "%SAFE_RENEGOTIATION"}
)


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """What the OpenSSL context is configured with."""

    tls12_ciphers: str
    """OpenSSL cipher list for TLS 1.2, in preference order (empty when TLS 1.2 is off)."""
    tls13_ciphersuites: str
    groups: str
    tls12: bool
    tls13: bool
    warnings: tuple[str, ...] = ()


def translate_priorities(priorities: str | None, *, cisco_client_compat: bool = False) -> TlsPolicy:
    """Build the policy for a ``tls-priorities`` value (``None`` = ocserv's default).

    ocserv's default is ``NORMAL:%SERVER_PRECEDENCE:%COMPAT``, with ``:-VERS-TLS1.3`` added when
    ``cisco-client-compat`` is on and the administrator did not set ``tls-priorities`` (old
    AnyConnect on
    iOS/macOS fails on TLS 1.3, ocserv #318).

    :raises ConfigError: the string is empty, names no keyword, or leaves no usable protocol or
    cipher.
    """
    if priorities is None:
        priorities = "NORMAL:%SERVER_PRECEDENCE:%COMPAT"
        if cisco_client_compat:
            priorities += ":-VERS-TLS1.3"
    elements = [e.strip() for e in priorities.split(":") if e.strip()]
    if not elements or elements[0].upper() not in _KEYWORDS:
        raise ConfigError(
            f"priority string must start with a keyword, not {elements[0] if elements else ''!r}",
            key="tls-priorities",
            expected="NORMAL[:%SERVER_PRECEDENCE][:-VERS-TLS1.3][:+NAME|-NAME...]",
        )
    keyword = elements[0].upper()
    ciphers = list(_DEFAULT_CIPHERS)
    if keyword in {"SECURE192", "SECURE256", "SUITEB192"}:
        ciphers = ["AES-256-GCM"]
    kx = list(_DEFAULT_KX)
    groups = list(_DEFAULT_GROUPS)
    versions = {"VERS-TLS1.2": True, "VERS-TLS1.3": True}
    warnings: list[str] = []
    for element in elements[1:]:
        _apply(element, ciphers, kx, groups, versions, warnings)
    return _build(ciphers, kx, groups, versions, warnings)


def _apply(
    element: str,
    ciphers: list[str],
    kx: list[str],
    groups: list[str],
    versions: dict[str, bool],
    warnings: list[str],
) -> None:
    if element.startswith("%"):
        if element.upper() not in _IGNORED_FLAGS:
            warnings.append(f"tls-priorities: {element} has no OpenSSL equivalent; ignored")
        return
    sign, name = element[0], element[1:].upper()
    if sign not in "+-!" or not name:
        raise ConfigError(
            f"bad priority element {element!r}",
            key="tls-priorities",
            expected="+NAME, -NAME, !NAME or %FLAG",
        )
    add = sign == "+"
    if name in versions:
        versions[name] = add
    elif name in {"VERS-ALL", "VERS-TLS-ALL"}:  # GnuTLS: every version at once.
        for version in versions:
            versions[version] = add
    elif name.startswith("VERS-"):
        if add:
            warnings.append(
                f"tls-priorities: {element}: ocgate never enables versions below TLS 1.2"
            )
    elif name in _ALL_CIPHERS:
        _toggle(ciphers, name, add)
    elif name in _ALL_KX:
        _toggle(kx, name, add)
    elif name.startswith(("GROUP-", "CURVE-")) and name.split("-", 1)[1] in _GROUPS:
        _toggle(groups, name.split("-", 1)[1], add)
    elif not add:
        pass  # Removing what is never enabled (ARCFOUR-128, 3DES-CBC, MD5 …) is a no-op.
    else:
        warnings.append(f"tls-priorities: {element} has no OpenSSL equivalent; ignored")


def _toggle(items: list[str], name: str, add: bool) -> None:
    if add and name not in items:
        items.append(name)
    elif not add and name in items:
        items.remove(name)


def _build(
    ciphers: list[str],
    kx: list[str],
    groups: list[str],
    versions: dict[str, bool],
    warnings: list[str],
) -> TlsPolicy:
    tls12 = versions["VERS-TLS1.2"]
    tls13 = versions["VERS-TLS1.3"]
    tls12_list = [n for c, k, n in _TLS12_SUITES if c in ciphers and k in kx] if tls12 else []
    tls13_list = [n for c, n in _TLS13_SUITES if c in ciphers] if tls13 else []
    if not tls12_list:
        tls12 = False
    if not tls13_list:
        tls13 = False
    if not (tls12 or tls13):
        raise ConfigError(
            "the priority string leaves no usable TLS version and cipher",
            key="tls-priorities",
            expected="at least TLS 1.2 or 1.3 with one AEAD cipher",
        )
    if not groups:
        raise ConfigError(
            "the priority string removes every key-exchange group",
            key="tls-priorities",
            expected="at least one of GROUP-X25519, GROUP-SECP256R1, GROUP-SECP384R1",
        )
    return TlsPolicy(
        tls12_ciphers=":".join(tls12_list),
        tls13_ciphersuites=":".join(tls13_list),
        groups=":".join(_GROUPS[g] for g in groups),
        tls12=tls12,
        tls13=tls13,
        warnings=tuple(warnings),
    )
