"""The public surface of ocgate.sso (STYLE rule 10)."""

from __future__ import annotations

import ocgate.sso

EXPECTED = {
    "CORRELATION_FIELDS",
    "FINAL_PATH",
    "MAX_RETURN_BYTES",
    "MAX_RETURN_FIELDS",
    "OIDC_RETURN_PATH",
    "SAML_ACS_PATH",
    "SAML_METADATA_PATH",
    "SAML_SLO_PATH",
    "START_PATH",
    "SsoError",
    "SsoIdentity",
    "SsoProvider",
    "SsoStart",
    "load_sso_provider",
    "preload_sso_modules",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(ocgate.sso.__all__) == EXPECTED


def test_unknown_method_is_a_config_error() -> None:
    import pytest

    from ocgate.errors import ConfigError

    with pytest.raises(ConfigError, match="not a single sign-on method"):
        ocgate.sso.load_sso_provider("kerberos", "/nonexistent", base_url="https://vpn.test")
