"""Single sign-on (SAML 2.0, OpenID Connect) through the AnyConnect sso-v2 flow.

See :mod:`ocgate.sso._base` for the provider contract and the URL paths.
"""

from __future__ import annotations

import importlib

from ocgate.errors import ConfigError, SsoError
from ocgate.sso._base import (
    CORRELATION_FIELDS,
    FINAL_PATH,
    MAX_RETURN_BYTES,
    MAX_RETURN_FIELDS,
    OIDC_RETURN_PATH,
    SAML_ACS_PATH,
    SAML_METADATA_PATH,
    SAML_SLO_PATH,
    START_PATH,
    SsoIdentity,
    SsoProvider,
    SsoStart,
)

__all__ = [
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
]

SSO_METHODS = ("oidc", "saml")


def preload_sso_modules() -> None:
    """Import the provider modules before sec-mod drops its privileges (children cannot import
    lazily afterwards); a method whose libraries are missing fails later, at its load."""
    for method in SSO_METHODS:
        try:
            importlib.import_module(f"ocgate.sso._{method}")
        except ImportError:
            continue


def load_sso_provider(method: str, config_path: str, *, base_url: str) -> SsoProvider:
    """Build the provider of ``auth = "METHOD[config=FILE]"``.

    :param method: ``oidc`` or ``saml``.
    :param config_path: the method's ``config`` file.
    :param base_url: the gateway's external ``https://host[:port]`` URL.
    :raises ConfigError: unknown method, missing module or a bad provider config.
    """
    if method not in SSO_METHODS:
        raise ConfigError(f"not a single sign-on method: {method!r}", expected="oidc or saml")
    try:
        module = importlib.import_module(f"ocgate.sso._{method}")
    except ImportError as exc:
        raise ConfigError(
            f"the {method!r} method is not available: {exc}", file=config_path, key="auth"
        ) from None
    loader = getattr(module, f"load_{method}_provider", None)
    if loader is None:
        raise ConfigError(f"the {method!r} method is not available", file=config_path, key="auth")
    provider: SsoProvider = loader(config_path, base_url=base_url)
    return provider
