"""OpenID Connect (ocgate.sso._oidc, ocgate.sso._jwt) against an in-memory provider.

The provider's discovery document, JWKS and token endpoint are served by ``FakeIdp`` through the
injected fetch function; its tokens are signed with joserfc by the test, so each negative test
changes exactly one claim or byte. The real provider (node-oidc-provider) is in
tests/interop/test_sso_oidc.py.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from ocgate.errors import ConfigError, SsoError
from ocgate.sso._oidc import OidcProvider, load_oidc_config, load_oidc_provider

ISSUER = "https://idp.test"
NOW = 1_800_000_000.0


class FakeIdp:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.codes: dict[str, dict[str, object]] = {}
        self.requests: list[tuple[str, str, Mapping[str, str], bytes | None]] = []

    def token(
        self, claims: dict[str, object], *, key: RSAKey | None = None, kid: str = "k1"
    ) -> str:
        base = {"iss": ISSUER, "aud": "ocgate", "sub": "u1", "iat": int(NOW), "exp": int(NOW) + 300}
        base.update(claims)
        return jwt.encode({"alg": "RS256", "kid": kid}, base, key or self.key)

    def __call__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, bytes]:
        self.requests.append((method, url, headers or {}, body))
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return 200, json.dumps({
                "issuer": ISSUER,
                "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token",
                "jwks_uri": f"{ISSUER}/jwks",
                "end_session_endpoint": f"{ISSUER}/session/end",
            }).encode()  # fmt: skip
        if url == f"{ISSUER}/jwks":
            return 200, json.dumps({"keys": [self.key.as_dict(private=False)]}).encode()
        if url == f"{ISSUER}/token":
            form = dict(urllib.parse.parse_qsl((body or b"").decode()))
            claims = self.codes.pop(form.get("code", ""), None)
            if claims is None:
                return 400, b'{"error": "invalid_grant"}'
            return 200, json.dumps(
                {"id_token": self.token(claims), "token_type": "Bearer"}
            ).encode()
        return 404, b""


def write_config(tmp_path: Path, **extra: object) -> str:
    config: dict[str, object] = {
        "openid_configuration_url": f"{ISSUER}/.well-known/openid-configuration",
        "user_name_claim": "preferred_username",
        "required_claims": {"aud": "ocgate", "iss": ISSUER},
        "client_id": "ocgate",
        "client_secret": "s3cret",
    }
    config.update(extra)
    path = tmp_path / "oidc.json"
    path.write_text(json.dumps(config, indent=2))
    return str(path)


@pytest.fixture
def idp() -> FakeIdp:
    return FakeIdp()


@pytest.fixture
def provider(tmp_path: Path, idp: FakeIdp) -> OidcProvider:
    return load_oidc_provider(
        write_config(tmp_path, group_map={"vpn-staff": "staff"}, bearer=True),
        base_url="https://vpn.test",
        fetch=idp,
        random_bytes=lambda n: b"\x07" * n,
        now=NOW,
    )


# The bearer mode (ocserv's keys) -------------------------------------------------------------


def test_bearer_accepts_a_good_token(provider: OidcProvider, idp: FakeIdp) -> None:
    token = idp.token({"preferred_username": "alice", "groups": ["vpn-staff", "other"]})
    identity = provider.verify_bearer_untrusted(token, now=NOW)
    assert identity.username == "alice"
    assert identity.groups == ("staff",)  # group_map keeps only mapped groups.


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(NOW) - 120}, "expired"),
        ({"aud": "someone-else"}, "required 'aud'"),
        ({"iss": "https://evil.test"}, "required 'iss'"),
        ({"iat": int(NOW) + 3600}, "issued in the future"),
        ({"nbf": int(NOW) + 3600}, "not valid yet"),
        ({"exp": None}, "no 'exp'"),
        ({}, "'preferred_username' claim is missing"),
        ({"preferred_username": "x" * 65}, "longer than 64"),
    ],
)
def test_bearer_refusals(
    provider: OidcProvider, idp: FakeIdp, claims: dict[str, object], message: str
) -> None:
    full: dict[str, object] = (
        {"preferred_username": "alice"} if "preferred_username" not in claims else {}
    )
    full.update(claims)
    if claims == {}:
        full = {}
    token = idp.token({k: v for k, v in full.items() if v is not None})
    if claims.get("exp", 0) is None:
        payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        payload.pop("exp")
        token = jwt.encode({"alg": "RS256", "kid": "k1"}, payload, idp.key)
    with pytest.raises(SsoError, match=message):
        provider.verify_bearer_untrusted(token, now=NOW)


def test_bearer_tampered_signature(provider: OidcProvider, idp: FakeIdp) -> None:
    header, payload, signature = idp.token({"preferred_username": "alice"}).split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["preferred_username"] = "admin"
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(SsoError, match="signature does not verify"):
        provider.verify_bearer_untrusted(f"{header}.{body}.{signature}", now=NOW)


def test_bearer_alg_none_and_hmac_refused(provider: OidcProvider) -> None:
    for alg in ("none", "HS256"):
        header = base64.urlsafe_b64encode(json.dumps({"alg": alg}).encode()).decode().rstrip("=")
        with pytest.raises(SsoError, match="algorithm is not accepted"):
            provider.verify_bearer_untrusted(f"{header}.e30.", now=NOW)


def test_unknown_kid_refreshes_keys_at_most_every_minimum_time(
    provider: OidcProvider, idp: FakeIdp
) -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    token = idp.token({"preferred_username": "alice", "exp": int(NOW) + 3000}, key=other, kid="k2")
    fetched = len(idp.requests)
    with pytest.raises(SsoError):
        provider.verify_bearer_untrusted(token, now=NOW + 10)
    assert len(idp.requests) == fetched  # 900 s have not passed since the load.
    with pytest.raises(SsoError):
        provider.verify_bearer_untrusted(token, now=NOW + 1000)
    assert len(idp.requests) == fetched + 1
    idp.key = other  # The provider rotated its key: the next refresh finds it.
    assert provider.verify_bearer_untrusted(token, now=NOW + 2000).username == "alice"


def test_bearer_is_off_when_the_browser_flow_is_configured(tmp_path: Path, idp: FakeIdp) -> None:
    # A config with client_id (the browser flow) does not take bearer tokens unless told to: an
    # ID token the gateway hands the provider's logout must not be a way in.
    browser = load_oidc_provider(
        write_config(tmp_path), base_url="https://vpn.test", fetch=idp, now=NOW
    )
    token = idp.token({"preferred_username": "alice"})
    with pytest.raises(SsoError, match="sign in with the browser"):
        browser.verify_bearer_untrusted(token, now=NOW)


def test_bearer_tokens_of_another_issuer_are_refused(tmp_path: Path, idp: FakeIdp) -> None:
    # ocserv's bearer config (no client_id) without iss in required_claims: the discovered
    # issuer is required anyway (a provider's keys may sign for several tenants).
    path = write_config(tmp_path, required_claims={"aud": "ocgate"})
    data = json.loads(Path(path).read_text())
    del data["client_id"], data["client_secret"]
    Path(path).write_text(json.dumps(data))
    bearer = load_oidc_provider(path, base_url="https://vpn.test", fetch=idp, now=NOW)
    assert (
        bearer.verify_bearer_untrusted(idp.token({"preferred_username": "alice"}), now=NOW).username
        == "alice"
    )
    other = idp.token({"preferred_username": "alice", "iss": "https://evil.test"})
    with pytest.raises(SsoError, match="another provider"):
        bearer.verify_bearer_untrusted(other, now=NOW)


# The browser flow ------------------------------------------------------------------------------


def browser_login(
    provider: OidcProvider, idp: FakeIdp, claims: dict[str, object]
) -> tuple[dict[str, str], bytes]:
    start = provider.start(
        login_id="L1", return_url="https://vpn.test/+CSCOE+/sso/oidc/return", now=NOW
    )
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.redirect_url).query))
    assert start.redirect_url.startswith(f"{ISSUER}/auth?")
    nonce = query["nonce"]
    idp.codes["c1"] = {"preferred_username": "alice", "nonce": nonce, **claims}
    return query, start.pending


def test_start_sends_pkce_state_and_nonce(provider: OidcProvider, idp: FakeIdp) -> None:
    query, pending = browser_login(provider, idp, {})
    assert query["state"] == "L1"
    assert query["code_challenge_method"] == "S256"
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == "https://vpn.test/+CSCOE+/sso/oidc/return"
    assert "openid" in query["scope"].split()
    assert b"s3cret" not in pending


def test_finish_redeems_the_code(provider: OidcProvider, idp: FakeIdp) -> None:
    _query, pending = browser_login(provider, idp, {"groups": "vpn-staff"})
    identity = provider.finish_untrusted(
        method="GET", params={"code": "c1", "state": "L1"}, pending=pending, now=NOW
    )
    assert identity.username == "alice"
    assert identity.groups == ("staff",)
    assert identity.logout_state is not None
    _method, _url, headers, body = idp.requests[-1]
    assert headers["Authorization"].startswith("Basic ")
    assert b"code_verifier=" in (body or b"")
    logout = provider.logout_url(identity, return_url="https://vpn.test/bye")
    assert logout is not None
    assert logout.startswith(f"{ISSUER}/session/end?id_token_hint=")


@pytest.mark.parametrize(
    ("params", "claims", "message"),
    [
        ({"code": "c1", "state": "L2"}, {}, "another login"),
        ({"error": "access_denied", "state": "L1"}, {}, "refused the sign-in: access_denied"),
        ({"state": "L1"}, {}, "no authorization code"),
        ({"code": "c9", "state": "L1"}, {}, "refused the code"),
        ({"code": "c1", "state": "L1"}, {"nonce": "other"}, "nonce mismatch"),
        ({"code": "c1", "state": "L1"}, {"aud": "other-client"}, "another audience"),
        ({"code": "c1", "state": "L1"}, {"aud": ["ocgate", "x"]}, "authorized party"),
    ],
)
def test_finish_refusals(
    provider: OidcProvider,
    idp: FakeIdp,
    params: dict[str, str],
    claims: dict[str, object],
    message: str,
) -> None:
    _query, pending = browser_login(provider, idp, claims)
    with pytest.raises(SsoError, match=message):
        provider.finish_untrusted(method="GET", params=params, pending=pending, now=NOW)


def test_finish_checks_times_when_the_token_arrived(tmp_path: Path, idp: FakeIdp) -> None:
    # Found in CI: the provider issued the token in the second after ``now`` (its ``iat`` is that
    # second) and, with ``leeway = 0``, the token was refused as "issued in the future".
    clock = [NOW]

    def slow_idp(method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        if url == f"{ISSUER}/token":
            clock[0] += 1.5
        return idp(method, url, **kwargs)

    provider = load_oidc_provider(
        write_config(tmp_path, leeway=0),
        base_url="https://vpn.test",
        fetch=slow_idp,
        now=NOW,
        clock=lambda: clock[0],
    )
    _query, pending = browser_login(provider, idp, {"iat": int(NOW) + 1})
    identity = provider.finish_untrusted(
        method="GET", params={"code": "c1", "state": "L1"}, pending=pending, now=NOW
    )
    assert identity.username == "alice"


def test_finish_with_corrupt_pending(provider: OidcProvider) -> None:
    with pytest.raises(SsoError, match="corrupt"):
        provider.finish_untrusted(method="GET", params={}, pending=b"{", now=NOW)


# The config file -------------------------------------------------------------------------------


def test_ocserv_config_alone_is_bearer_only(tmp_path: Path) -> None:
    path = tmp_path / "ocserv-oidc.json"
    path.write_text(json.dumps({
        "openid_configuration_url": "https://login.example/.well-known/openid-configuration",
        "user_name_claim": "upn",
        "required_claims": {"aud": "x", "iss": "y"},
        "minimum_jwk_refresh_time": 60,
    }))  # fmt: skip
    config = load_oidc_config(str(path))
    assert config.client_id is None
    assert config.minimum_jwk_refresh_time == 60
    assert config.client_secret is None


def test_client_secret_is_not_in_repr(tmp_path: Path) -> None:
    assert "s3cret" not in repr(load_oidc_config(write_config(tmp_path)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{\n "user_name_claim": "sub",\n "required_claims": {}\n}', "openid_configuration_url"),
        ("{\n", "not JSON"),
        (
            '{\n "openid_configuration_url": "http://idp/x",\n "user_name_claim": "sub",\n'
            ' "required_claims": {}\n}',
            "oidc.json:2: openid_configuration_url: not an https URL",
        ),
        (
            '{\n "openid_configuration_url": "https://idp/x",\n "user_name_claim": "sub",\n'
            ' "required_claims": {},\n "scopes": "openid"\n}',
            "oidc.json:5: scopes: not a list of strings",
        ),
    ],
)
def test_config_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "oidc.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_oidc_config(str(path))


def test_unreachable_provider_fails_at_load(tmp_path: Path) -> None:
    def down(*_args: object, **_kwargs: object) -> tuple[int, bytes]:
        raise OSError("connection refused")

    with pytest.raises(ConfigError, match="cannot load the OpenID Connect provider"):
        load_oidc_provider(write_config(tmp_path), base_url="https://vpn.test", fetch=down, now=NOW)


def test_logout_url_drops_a_hint_too_long_to_forward(provider: OidcProvider) -> None:
    from ocgate.sso import SsoIdentity

    url = provider.logout_url(
        SsoIdentity(username="alice", logout_state="x" * 5000), return_url="https://vpn.test/bye"
    )
    assert url is not None
    assert "id_token_hint" not in url
    assert len(url) < 4000
