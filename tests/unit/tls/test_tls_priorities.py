"""GnuTLS priority strings (ocserv ``tls-priorities``) translated to an OpenSSL policy."""

from __future__ import annotations

import pytest

from ocgate.errors import ConfigError
from ocgate.tls import translate_priorities


def test_default_matches_cisco_secure_client_preference() -> None:
    policy = translate_priorities(None)
    assert policy.tls12
    assert policy.tls13
    assert policy.tls13_ciphersuites == (
        "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
    )
    suites = policy.tls12_ciphers.split(":")
    assert suites[:4] == [
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ]
    assert suites.index("DHE-RSA-AES256-GCM-SHA384") > suites.index("ECDHE-RSA-AES128-GCM-SHA256")
    assert policy.groups == "X25519:P-256:P-384"
    assert policy.warnings == ()


def test_cisco_client_compat_drops_tls13_unless_priorities_are_set() -> None:
    assert not translate_priorities(None, cisco_client_compat=True).tls13
    assert translate_priorities("NORMAL", cisco_client_compat=True).tls13


def test_ocserv_sample_string() -> None:
    policy = translate_priorities(
        "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1"
    )
    assert policy.tls12
    assert policy.tls13
    assert policy.warnings == ()


@pytest.mark.parametrize(
    ("priorities", "tls12", "tls13"),
    [
        ("NORMAL:-VERS-ALL:+VERS-TLS1.2", True, False),
        ("NORMAL:-VERS-TLS-ALL:+VERS-TLS1.3", False, True),
        ("NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", True, True),
        ("NORMAL:-VERS-TLS1.3:+VERS-ALL", True, True),
    ],
)
def test_vers_all_names_every_version(priorities: str, tls12: bool, tls13: bool) -> None:
    # GnuTLS's -VERS-ALL removes every version; the ones added after it are the only ones left
    # (ocgate once ignored it, so "-VERS-ALL:+VERS-TLS1.2" still offered TLS 1.3).
    policy = translate_priorities(priorities)
    assert (policy.tls12, policy.tls13) == (tls12, tls13)
    assert policy.warnings == ()


def test_removing_tls13_and_a_cipher() -> None:
    policy = translate_priorities("NORMAL:-VERS-TLS1.3:-AES-128-GCM:-RSA:-ARCFOUR-128")
    assert not policy.tls13
    assert policy.tls13_ciphersuites == ""
    assert "AES128" not in policy.tls12_ciphers


def test_secure256_keeps_only_256_bit() -> None:
    policy = translate_priorities("SECURE256")
    assert "AES128" not in policy.tls12_ciphers
    assert policy.tls13_ciphersuites == "TLS_AES_256_GCM_SHA384"


def test_adding_cbc_and_a_group() -> None:
    policy = translate_priorities("NORMAL:+AES-256-CBC:+GROUP-SECP521R1")
    assert "ECDHE-RSA-AES256-SHA" in policy.tls12_ciphers
    assert policy.groups.endswith("P-521")


def test_unknown_additions_warn_but_do_not_fail() -> None:
    policy = translate_priorities("NORMAL:+SIGN-ALL:%NO_TICKETS:+VERS-TLS1.0")
    assert len(policy.warnings) == 3


@pytest.mark.parametrize(
    "priorities",
    [
        "",
        "BOGUS:+AES-128-GCM",
        "NORMAL:AES-128-GCM",
        "NORMAL:-VERS-TLS1.2:-VERS-TLS1.3",
        "NORMAL:-",
    ],
)
def test_errors_name_the_key(priorities: str) -> None:
    with pytest.raises(ConfigError, match="tls-priorities"):
        translate_priorities(priorities)


def test_removing_every_group_is_an_error() -> None:
    with pytest.raises(ConfigError, match="group"):
        translate_priorities("NORMAL:-GROUP-X25519:-GROUP-SECP256R1:-GROUP-SECP384R1")
