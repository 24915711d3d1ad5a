"""OpenID Connect: the browser flow (authorization code + PKCE) and ocserv's bearer mode.

Theory of operation. The ``config`` file is ocserv's OIDC JSON (``doc/README-oidc.md``,
``src/auth/openidconnect.c``): ``openid_configuration_url``, ``user_name_claim`` and
``required_claims`` are required, ``minimum_jwk_refresh_time`` (seconds, default 900) limits how
often an unknown ``kid`` makes sec-mod fetch the JWKS again. With only these keys the method is
ocserv's bearer mode: a client sends ``Authorization: Bearer JWT`` (openconnect
``--token-mode=oidc --token-secret=JWT``) and the JWT is verified against the provider's keys
(:func:`ocgate.sso._jwt.verify_jwt_untrusted`).

The browser flow needs the keys ocgate adds (docs/SSO.md): ``client_id`` (and ``client_secret``
for a confidential client), optionally ``scopes``, ``groups_claim``, ``group_map``,
``redirect_uri``, ``token_endpoint_auth_method``, ``ca_file``, ``allow_http``, ``leeway`` and
``end_session``. :meth:`OidcProvider.start` sends the browser to the authorization endpoint
with ``state`` = the login id, a fresh ``nonce`` and a PKCE S256 challenge (RFC 7636); the
verifier, nonce and redirect URI stay in sec-mod as the login's ``pending`` bytes.
:meth:`OidcProvider.finish_untrusted` takes the returned ``code``, redeems it at the token
endpoint (with the verifier and the client secret, which never leave sec-mod) and verifies the
ID token: signature against the JWKS, ``iss`` = the discovery document's issuer, ``aud`` = the
client id, ``exp``/``iat``/``nbf``, the nonce and the ``required_claims``.

Network I/O (discovery, JWKS, token endpoint) goes through an injected :class:`Fetch`; the
framework calls the provider in a worker thread.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ocgate.errors import ConfigError, SsoError
from ocgate.sso._base import OIDC_RETURN_PATH, SsoIdentity, SsoStart
from ocgate.sso._fetch import Fetch, HttpFetch
from ocgate.sso._jwt import (
    ClaimRules,
    claim_groups,
    claim_text,
    token_kid_untrusted,
    verify_jwt_untrusted,
)

__all__ = ["OidcConfig", "OidcProvider", "load_oidc_config", "load_oidc_provider"]

log = logging.getLogger("ocgate.sso")

MINIMUM_KEY_REFRESH_INTERVAL = 900
"""ocserv's default ``minimum_jwk_refresh_time``."""
_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
MAX_REDIRECT_CHARS = 4000
"""A ``Location`` the worker can carry (IPC header values are at most 4096 characters)."""
_MAX_PARAM = 4096
_ATTRIBUTES = ("sub", "email", "name", "preferred_username")

AuthMethodName = Literal["client_secret_basic", "client_secret_post", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OidcConfig:
    """An ``oidc[config=FILE]`` JSON file (ocserv's keys first, then ocgate's)."""

    source: str
    openid_configuration_url: str
    user_name_claim: str
    required_claims: Mapping[str, object]
    minimum_jwk_refresh_time: float = MINIMUM_KEY_REFRESH_INTERVAL
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    groups_claim: str | None = "groups"
    group_map: Mapping[str, str] = field(default_factory=dict)
    redirect_uri: str | None = None
    token_endpoint_auth_method: AuthMethodName = "client_secret_basic"
    ca_file: str | None = None
    allow_http: bool = False
    leeway: float = 60.0
    end_session: bool = True
    bearer: bool | None = None
    """Accept ``Authorization: Bearer`` JWTs: by default only without ``client_id`` (ocserv's
    bearer mode). With the browser flow configured a bearer token would be a second way in with
    weaker checks (no nonce, any token the provider signed), and the ID token the gateway sends
    back to the provider's logout could be replayed as one; ``"bearer": true`` allows both."""

    @property
    def accepts_bearer(self) -> bool:
        return self.bearer if self.bearer is not None else self.client_id is None


def _line_of(text: str, key: str) -> int | None:
    needle = json.dumps(key)
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    return None


def _fail(path: str, text: str, key: str, message: str, expected: str) -> ConfigError:
    return ConfigError(message, file=path, line=_line_of(text, key), key=key, expected=expected)


def _string(
    path: str, text: str, data: Mapping[str, object], key: str, *, required: bool = False
) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(path, text, key, "missing or not a string", f'"{key}": "..."')
    return value


def _check_url(path: str, text: str, key: str, url: str, allow_http: bool) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise _fail(path, text, key, f"not an https URL: {url!r}",
                    'an https:// URL (http:// only with "allow_http": true)')  # fmt: skip


def _options(path: str, text: str, data: Mapping[str, object]) -> dict[str, object]:
    """ocgate's optional keys, checked."""
    options: dict[str, object] = {}
    for key in ("client_id", "client_secret", "redirect_uri", "ca_file"):
        text_value = _string(path, text, data, key)
        if text_value is not None:
            options[key] = text_value
    if "groups_claim" in data:
        claim = data["groups_claim"]
        if claim is not None and not (isinstance(claim, str) and claim):
            raise _fail(path, text, "groups_claim", "not a string", '"groups_claim": "groups"')
        options["groups_claim"] = claim
    scopes = data.get("scopes", ["openid", "profile", "email"])
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        raise _fail(path, text, "scopes", "not a list of strings", '"scopes": ["openid", ...]')
    if "openid" not in scopes:
        scopes = ["openid", *scopes]
    options["scopes"] = tuple(scopes)
    group_map = data.get("group_map", {})
    if not isinstance(group_map, dict) or not all(
        isinstance(v, str) and v for v in group_map.values()
    ):
        raise _fail(path, text, "group_map", "not an object of strings",
                    '"group_map": {"IdP group": "ocgate group"}')  # fmt: skip
    options["group_map"] = dict(group_map)
    method = data.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in _AUTH_METHODS:
        raise _fail(path, text, "token_endpoint_auth_method", f"unknown method {method!r}",
                    " or ".join(_AUTH_METHODS))  # fmt: skip
    options["token_endpoint_auth_method"] = method
    if "bearer" in data:
        if not isinstance(data["bearer"], bool):
            raise _fail(path, text, "bearer", "not true or false", '"bearer": true')
        options["bearer"] = data["bearer"]
    for key, default in (("allow_http", False), ("end_session", True)):
        flag = data.get(key, default)
        if not isinstance(flag, bool):
            raise _fail(path, text, key, "not true or false", f'"{key}": true')
        options[key] = flag
    for key in ("leeway", "minimum_jwk_refresh_time"):
        if key in data:
            seconds = data[key]
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise _fail(path, text, key, "not a number of seconds", f'"{key}": 60')
            options[key] = float(seconds)
    return options


def load_oidc_config(path: str) -> OidcConfig:
    """Read an ``oidc[config=FILE]`` JSON file.

    :raises ConfigError: unreadable, not JSON, a missing required key or a bad value.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the OIDC config: {exc.strerror}", file=path) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        expected = "a JSON object (ocserv doc/README-oidc.md)"
        raise ConfigError(f"not JSON: {exc}", file=path, line=line, expected=expected) from None
    if not isinstance(data, dict):
        raise ConfigError("not a JSON object", file=path, expected="{...}")
    url = _string(path, text, data, "openid_configuration_url", required=True)
    user_claim = _string(path, text, data, "user_name_claim", required=True)
    required = data.get("required_claims")
    if not isinstance(required, dict):
        raise _fail(path, text, "required_claims", "missing or not an object",
                    '"required_claims": {"aud": "...", "iss": "..."}')  # fmt: skip
    options = _options(path, text, data)
    if url is None or user_claim is None:  # pragma: no cover - required=True above.
        raise ConfigError("missing required keys", file=path)
    _check_url(path, text, "openid_configuration_url", url, bool(options["allow_http"]))
    if "aud" not in required:
        log.warning("event=oidc-config file=%s reason='required_claims has no aud: bearer "
                    "tokens for any client of the provider are accepted'", path)  # fmt: skip
    if options.get("groups_claim", "groups") is not None and not options.get("group_map"):
        log.warning("event=oidc-config file=%s reason='no group_map: every group the provider "
                    "sends is taken as a VPN group name (one a user can create there could "
                    "name a config-per-group file)'", path)  # fmt: skip
    return OidcConfig(
        source=path,
        openid_configuration_url=url,
        user_name_claim=user_claim,
        required_claims=dict(required),
        **options,  # type: ignore[arg-type]
    )


def _json_object(status: int, body: bytes, what: str) -> dict[str, object]:
    if status != 200:
        raise SsoError(f"the identity provider's {what} answered HTTP {status}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SsoError(f"the identity provider's {what} is not JSON") from exc
    if not isinstance(data, dict):
        raise SsoError(f"the identity provider's {what} is not a JSON object")
    return data


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class OidcProvider:
    """The ``oidc`` method of one host (see the module docstring).

    :param config: the loaded config file.
    :param base_url: the gateway's external ``https://host[:port]``.
    :param fetch: the HTTP client (an :class:`~ocgate.sso._fetch.HttpFetch` in sec-mod).
    :param random_bytes: the randomness source.
    :param clock: the wall clock (seconds since the epoch), read when a token arrives.
    """

    name = "oidc"

    def __init__(
        self,
        config: OidcConfig,
        *,
        base_url: str,
        fetch: Fetch,
        random_bytes: Callable[[int], bytes],
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.redirect_uri = config.redirect_uri or base_url.rstrip("/") + OIDC_RETURN_PATH
        self._fetch = fetch
        self._random = random_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._discovery: dict[str, object] = {}
        self._keys: KeySet | None = None
        self._keys_loaded = float("-inf")

    def __repr__(self) -> str:
        return f"OidcProvider({self.config.openid_configuration_url!r})"

    @property
    def browser_flow(self) -> bool:
        """Whether ``client_id`` is configured (else only the bearer mode works)."""
        return self.config.client_id is not None

    def _endpoint(self, name: str) -> str:
        value = self._discovery.get(name)
        if not isinstance(value, str) or not value:
            raise SsoError(f"the identity provider announces no {name}")
        scheme = urllib.parse.urlsplit(value).scheme
        if scheme != "https" and not (self.config.allow_http and scheme == "http"):
            raise SsoError(f"the identity provider's {name} is not https")
        return value

    def load(self, now: float) -> None:
        """Fetch the discovery document and the JWKS (at start, like ocserv).

        :raises ConfigError: the provider cannot be reached or answers nonsense.
        """
        try:
            status, body = self._fetch("GET", self.config.openid_configuration_url)
            self._discovery = _json_object(status, body, "discovery document")
            self._refresh_keys(now)
        except (OSError, SsoError) as exc:
            raise ConfigError(
                f"cannot load the OpenID Connect provider: {exc}",
                file=self.config.source,
                key="openid_configuration_url",
            ) from None

    def _refresh_keys(self, now: float) -> None:
        status, body = self._fetch("GET", self._endpoint("jwks_uri"))
        data = _json_object(status, body, "JWKS")
        try:
            keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise SsoError("the identity provider's JWKS is malformed") from exc
        self._keys, self._keys_loaded = keys, now
        log.info("event=oidc-jwks keys=%d", len(keys.keys))

    def _keys_for(self, token: str, now: float) -> KeySet:
        kid = token_kid_untrusted(token)
        with self._lock:
            keys = self._keys
            known = keys is not None and (kid is None or any(k.kid == kid for k in keys.keys))
            if not known and now - self._keys_loaded >= self.config.minimum_jwk_refresh_time:
                self._keys_loaded = now  # A failed fetch waits as long as a good one: a token
                try:  # with a random kid cannot make every check wait on a slow provider.
                    self._refresh_keys(now)
                except (OSError, SsoError) as exc:
                    log.warning("event=oidc-jwks-refresh-failed reason=%r", str(exc))
            if self._keys is None:
                raise SsoError("the identity provider's keys are not available")
            return self._keys

    def _identity(self, claims: Mapping[str, object], logout_state: str | None) -> SsoIdentity:
        config = self.config
        attributes: dict[str, tuple[str, ...]] = {}
        for name in (*_ATTRIBUTES, config.user_name_claim):
            value = claims.get(name)
            if isinstance(value, str):
                attributes[name] = (value[:256],)
        groups = claim_groups(claims, config.groups_claim, config.group_map)
        if config.groups_claim is not None and groups:
            attributes[config.groups_claim] = groups
        return SsoIdentity(
            username=claim_text(claims, config.user_name_claim),
            groups=groups,
            attributes=attributes,
            logout_state=logout_state,
        )

    # The bearer mode -------------------------------------------------------------------------

    def verify_bearer_untrusted(self, token: str, *, now: float) -> SsoIdentity:
        """Verify an ``Authorization: Bearer`` JWT (ocserv ``oidc_verify_token``).

        :raises SsoError: refused.
        """
        config = self.config
        if not config.accepts_bearer:
            raise SsoError("bearer tokens are not accepted here: sign in with the browser")
        rules = ClaimRules(required_claims=config.required_claims, leeway=config.leeway)
        claims = verify_jwt_untrusted(token, self._keys_for(token, now), rules, now=now)
        if claims.get("iss") != self._issuer():  # Only this provider's tokens (its keys may be
            raise SsoError("the token was issued by another provider")  # shared by tenants).
        return self._identity(claims, None)

    # The browser flow ------------------------------------------------------------------------

    def start(self, *, login_id: str, return_url: str, now: float) -> SsoStart:
        """The authorization request (state = ``login_id``, nonce, PKCE S256)."""
        config = self.config
        if config.client_id is None:
            raise SsoError("browser sign-in is not configured (no client_id)")
        verifier = _b64url(self._random(32))
        nonce = _b64url(self._random(16))
        challenge = create_s256_code_challenge(verifier)
        redirect_uri = config.redirect_uri or return_url
        query = urllib.parse.urlencode({
            "response_type": "code",
            "client_id": config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(config.scopes),
            "state": login_id,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        })  # fmt: skip
        endpoint = self._endpoint("authorization_endpoint")
        joiner = "&" if urllib.parse.urlsplit(endpoint).query else "?"
        pending = json.dumps({"s": login_id, "v": verifier, "n": nonce, "r": redirect_uri})
        return SsoStart(redirect_url=f"{endpoint}{joiner}{query}", pending=pending.encode())

    def finish_untrusted(
        self, *, method: str, params: Mapping[str, str], pending: bytes, now: float
    ) -> SsoIdentity:
        """Redeem the authorization code and verify the ID token (module docstring)."""
        config = self.config
        if config.client_id is None:
            raise SsoError("browser sign-in is not configured (no client_id)")
        try:
            state = json.loads(pending)
            login_id, verifier, nonce, redirect_uri = (
                state["s"], state["v"], state["n"], state["r"]
            )  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise SsoError("the sign-in state is corrupt") from exc
        if params.get("state") != login_id:
            raise SsoError("the sign-in response belongs to another login")
        error = params.get("error")
        if error is not None:
            described = params.get("error_description", "")[:200]
            raise SsoError(f"the identity provider refused the sign-in: {error[:64]} {described}")
        code = params.get("code")
        if not code or len(code) > _MAX_PARAM:
            raise SsoError("the identity provider sent no authorization code")
        id_token = self._redeem_code(code, verifier, redirect_uri)
        # The provider issued the token while we waited for it, after ``now``: check its times
        # against the moment it arrived, or a redemption that crosses a second fails ``iat``.
        now = max(now, self._clock())
        rules = ClaimRules(
            issuer=self._issuer(),
            audience=config.client_id,
            required_claims=config.required_claims,
            leeway=config.leeway,
        )
        claims = verify_jwt_untrusted(
            id_token, self._keys_for(id_token, now), rules, now=now, nonce=nonce
        )
        return self._identity(claims, id_token)

    def _issuer(self) -> str:
        issuer = self._discovery.get("issuer")
        if not isinstance(issuer, str) or not issuer:
            raise SsoError("the identity provider announces no issuer")
        return issuer

    def _redeem_code(self, code: str, verifier: str, redirect_uri: str) -> str:
        config = self.config
        if config.client_id is None:  # pragma: no cover - checked by the caller.
            raise SsoError("browser sign-in is not configured (no client_id)")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        secret = config.client_secret
        if config.token_endpoint_auth_method == "client_secret_basic" and secret is not None:
            pair = f"{urllib.parse.quote_plus(config.client_id)}:{urllib.parse.quote_plus(secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            form["client_id"] = config.client_id
            if config.token_endpoint_auth_method == "client_secret_post" and secret is not None:
                form["client_secret"] = secret
        body = urllib.parse.urlencode(form).encode("ascii")
        try:
            status, answer = self._fetch(
                "POST", self._endpoint("token_endpoint"), headers=headers, body=body
            )
        except OSError as exc:
            log.warning("event=oidc-token-endpoint-unreachable reason=%r", str(exc))
            raise SsoError("the identity provider could not be reached") from exc
        data = _json_object(status if status != 400 else 200, answer, "token endpoint")
        if "error" in data:
            raise SsoError(f"the identity provider refused the code: {str(data['error'])[:64]}")
        id_token = data.get("id_token")
        if not isinstance(id_token, str):
            raise SsoError("the identity provider returned no ID token")
        return id_token

    def metadata(self) -> tuple[str, bytes] | None:
        """No metadata for OpenID Connect."""
        return None

    def logout_url(self, identity: SsoIdentity, *, return_url: str) -> str | None:
        """RP-initiated logout: the ``end_session_endpoint`` with the ID token as a hint."""
        if not self.config.end_session or identity.logout_state is None:
            return None
        try:
            endpoint = self._endpoint("end_session_endpoint")
        except SsoError:
            return None
        params = {
            "id_token_hint": identity.logout_state,
            "post_logout_redirect_uri": return_url,
            "client_id": self.config.client_id or "",
        }
        joiner = "&" if urllib.parse.urlsplit(endpoint).query else "?"
        url = f"{endpoint}{joiner}{urllib.parse.urlencode(params)}"
        if len(url) > MAX_REDIRECT_CHARS:  # A big ID token: the provider then asks the user.
            del params["id_token_hint"]
            url = f"{endpoint}{joiner}{urllib.parse.urlencode(params)}"
        return url


def _wall_clock() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()


def load_oidc_provider(
    config_path: str,
    *,
    base_url: str,
    fetch: Fetch | None = None,
    random_bytes: Callable[[int], bytes] | None = None,
    now: float | None = None,
    clock: Callable[[], float] | None = None,
) -> OidcProvider:
    """Load the config file and the provider's discovery document and keys.

    :raises ConfigError: a bad config file or an unreachable provider.
    """
    config = load_oidc_config(config_path)
    provider = OidcProvider(
        config,
        base_url=base_url,
        fetch=fetch if fetch is not None else HttpFetch(ca_file=config.ca_file),
        random_bytes=random_bytes if random_bytes is not None else os.urandom,
        clock=clock if clock is not None else _wall_clock,
    )
    provider.load(_wall_clock() if now is None else now)
    return provider
