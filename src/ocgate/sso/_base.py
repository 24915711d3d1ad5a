"""The single sign-on provider interface shared by OpenID Connect and SAML 2.0.

README-contract (for provider modules: ``_oidc.py``, ``_saml.py``)
------------------------------------------------------------------
A provider is a sans-IO object built once in sec-mod from its ``config=FILE``
(:func:`ocgate.sso.load_sso_provider`). It holds the secrets (client secret, SP key) and verifies
what the browser brings back; workers never see it. The framework calls it in this order:

1. :meth:`SsoProvider.start` when a client asks for an SSO login. ``login_id`` is a fresh,
   unguessable URL-safe string (128 bits) that names this login. The provider returns the IdP URL
   the browser goes to and the ``pending`` bytes the framework keeps (with the login, for a few
   minutes) until the browser returns. The provider MUST make the browser's return carry
   ``login_id`` back: as ``state`` (OpenID Connect) or as ``RelayState`` (SAML); the framework
   finds the pending login by that field (:data:`CORRELATION_FIELDS`) and never by anything else.
2. :meth:`SsoProvider.finish_untrusted` with the browser's return request (query string for GET,
   form fields for POST, at most :data:`MAX_RETURN_FIELDS` fields and :data:`MAX_RETURN_BYTES`
   bytes in all) and the ``pending`` bytes of that login. It verifies everything (signatures,
   issuer, audience, recipient, times, InResponseTo / state / nonce) and returns the identity, or
   raises :class:`~ocgate.errors.SsoError` with a message that is safe to show the user. It must
   raise nothing else for any input (the fuzz targets check this).
3. :meth:`SsoProvider.logout_url` when the VPN session ends by the user's logout.

The framework (:mod:`ocgate.gateway._sso`) calls :meth:`~SsoProvider.start` and
:meth:`~SsoProvider.finish_untrusted` in a worker thread of sec-mod, so they may block (an OIDC
token endpoint, ``xmlsec1``); they must be thread-safe. Redirect URLs longer than 4000
characters are refused (``Location`` headers cross the IPC channel).

URL paths served by the gateway (``base_url`` is the external ``https://host[:port]``)
-------------------------------------------------------------------------------------
* ``{base_url}/+CSCOE+/sso/start?login=LOGIN_ID`` - the ``<sso-v2-login>`` URL the client opens;
  answers with a 302 to :attr:`SsoStart.redirect_url`.
* ``{base_url}/+CSCOE+/sso/oidc/return`` - OpenID Connect ``redirect_uri`` (GET, ``code`` and
  ``state`` in the query) (:data:`OIDC_RETURN_PATH`).
* ``{base_url}/+CSCOE+/saml/acs`` - SAML assertion consumer service, HTTP-POST binding (the browser
  POSTs ``SAMLResponse`` and ``RelayState`` as an urlencoded form) (:data:`SAML_ACS_PATH`).
* ``{base_url}/+CSCOE+/saml/metadata`` - SP metadata from :meth:`SsoProvider.metadata`
  (:data:`SAML_METADATA_PATH`).
* ``{base_url}/+CSCOE+/saml/slo`` - SAML single logout return (:data:`SAML_SLO_PATH`); the
  gateway shows a "logged out" page there.
* ``{base_url}/+CSCOE+/sso/final`` - the ``<sso-v2-login-final>`` URL (embedded browser mode):
  the return endpoint redirects here with the token cookie set (:data:`FINAL_PATH`).

The ``return_url`` given to :meth:`SsoProvider.start` is the provider's own return URL above
(``OIDC_RETURN_PATH`` or ``SAML_ACS_PATH`` under ``base_url``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ocgate.errors import SsoError

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
]

START_PATH = "/+CSCOE+/sso/start"
OIDC_RETURN_PATH = "/+CSCOE+/sso/oidc/return"
SAML_ACS_PATH = "/+CSCOE+/saml/acs"
SAML_METADATA_PATH = "/+CSCOE+/saml/metadata"
SAML_SLO_PATH = "/+CSCOE+/saml/slo"
FINAL_PATH = "/+CSCOE+/sso/final"

CORRELATION_FIELDS = ("state", "RelayState")
"""Return-request fields that carry ``login_id`` back (OpenID Connect, SAML)."""

MAX_RETURN_FIELDS = 16
MAX_RETURN_BYTES = 256 * 1024
"""Limits on the browser's return request the worker forwards (a signed SAML response with
certificates fits comfortably)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SsoIdentity:
    """A user the identity provider vouched for.

    :param username: the VPN username (from the configured claim / attribute).
    :param groups: the groups the user may select (after the configured group mapping).
    :param attributes: the raw claims / attributes, for logs and connect scripts.
    :param logout_state: what the provider needs to log the user out later (SAML NameID and
        SessionIndex, OIDC ID token hint); never logged.
    """

    username: str
    groups: tuple[str, ...] = ()
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    logout_state: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SsoStart:
    """Where a login starts.

    :param redirect_url: where the browser goes next (the IdP).
    :param pending: opaque state sec-mod keeps for this login until the browser returns.
    """

    redirect_url: str
    pending: bytes = field(repr=False)


class SsoProvider(Protocol):
    """An SSO method (``oidc`` or ``saml``) as sec-mod uses it; see the module docstring."""

    name: str

    def start(self, *, login_id: str, return_url: str, now: float) -> SsoStart:
        """Begin a login; ``now`` is the wall clock (seconds since the epoch)."""
        ...

    def finish_untrusted(
        self, *, method: str, params: Mapping[str, str], pending: bytes, now: float
    ) -> SsoIdentity:
        """Verify the browser's return request.

        :param method: ``GET`` or ``POST``.
        :param params: the query (GET) or form (POST) fields.
        :param pending: what :meth:`start` returned for this login.
        :raises SsoError: refused; the message is safe to show the client.
        """
        ...

    def metadata(self) -> tuple[str, bytes] | None:
        """``(content type, body)`` served at the metadata URL (SAML SP metadata), or ``None``."""
        ...

    def logout_url(self, identity: SsoIdentity, *, return_url: str) -> str | None:
        """The provider's logout URL for ``identity`` (returning to ``return_url``), or ``None``."""
        ...
