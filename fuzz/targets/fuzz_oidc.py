"""OpenID Connect tokens and the browser's return: only ``SsoError`` escapes, forgeries never pass.

The provider is the real ``OidcProvider`` over an in-memory discovery document, JWKS and token
endpoint (the fetch function below). Input: one selector byte, then the bytes.

* bit 0 clear: the bytes are a token as a client sends it (``Authorization: Bearer``) or as the
  token endpoint returns it; the fuzzer has no key, so nothing may be accepted.
* bit 0 set: the bytes are the claims JSON, signed here with the provider's key (the way a
  real provider signs what it is asked to): a token is accepted only if its claims pass every
  rule, checked independently below (issuer, audience, times, nonce, user name).
* bit 1: the token goes through the browser flow (``finish_untrusted``, via the token endpoint,
  with the login's nonce) instead of the bearer mode (``verify_bearer_untrusted``).
* bit 2: the bytes are instead the browser's return request to the gateway, parsed by
  ``_params_untrusted`` (query string or urlencoded form), then handed to ``finish_untrusted``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import _harness
import atheris
from joserfc import jwt
from joserfc.jwk import RSAKey

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.errors import SsoError
    from ocgate.gateway._sso import _params_untrusted
    from ocgate.http import Request
    from ocgate.sso._oidc import load_oidc_provider

ISSUER = "https://idp.fuzz"
NOW = 1_800_000_000.0
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
_TOKEN: list[bytes] = [b""]


def fetch(
    method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes]:
    if url.endswith("/.well-known/openid-configuration"):
        return 200, json.dumps({
            "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
            "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks",
        }).encode()  # fmt: skip
    if url.endswith("/jwks"):
        return 200, json.dumps({"keys": [KEY.as_dict(private=False)]}).encode()
    return 200, json.dumps({"id_token": _TOKEN[0].decode("latin-1")}).encode()


_DIR = Path(tempfile.mkdtemp(prefix="fuzz_oidc"))
(_DIR / "oidc.json").write_text(json.dumps({
    "openid_configuration_url": f"{ISSUER}/.well-known/openid-configuration",
    "user_name_claim": "preferred_username",
    "required_claims": {"aud": "ocgate"},
    "client_id": "ocgate",
}))  # fmt: skip
PROVIDER = load_oidc_provider(
    str(_DIR / "oidc.json"), base_url="https://vpn.fuzz", fetch=fetch,
    random_bytes=lambda n: b"\x01" * n, now=NOW,
)  # fmt: skip
START = PROVIDER.start(login_id="L", return_url="https://vpn.fuzz/r", now=NOW)
NONCE = json.loads(START.pending)["n"]


def _acceptable(claims: Mapping[str, object], browser: bool) -> bool:
    def number(name: str) -> float | None:
        value = claims.get(name)
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    exp, iat, nbf = number("exp"), number("iat"), number("nbf")
    if exp is None or iat is None or exp + 60 <= NOW or iat > NOW + 60:
        return False
    if "nbf" in claims and (nbf is None or nbf > NOW + 60):
        return False
    aud = claims.get("aud")
    if browser and (claims.get("iss") != ISSUER or claims.get("nonce") != NONCE):
        return False
    if aud != "ocgate" and not (isinstance(aud, list) and "ocgate" in aud):
        return False
    if browser and isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != "ocgate":
        return False
    name = claims.get("preferred_username")
    return isinstance(name, str) and 0 < len(name.encode("utf-8", "surrogatepass")) <= 64


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, body = data[0], data[1:]
    if selector & 4:
        _TOKEN[0] = b""  # The token endpoint has nothing valid to give for this return.
        method = "POST" if selector & 8 else "GET"
        request = Request(
            method=method,
            target="/+CSCOE+/sso/oidc/return?" + body.decode("latin-1") if method == "GET" else "/",
            headers=(("content-type", "application/x-www-form-urlencoded"),),
            body=body,
            http_version="1.1",
        )
        try:
            params = _params_untrusted(request)
            PROVIDER.finish_untrusted(method=method, params=params, pending=START.pending, now=NOW)
        except SsoError:
            return
        raise AssertionError("a return without a signed token was accepted")
    claims: object = None
    token = body
    if selector & 1:
        try:
            claims = json.loads(body)
            token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, KEY).encode()  # type: ignore[arg-type]
        except Exception:  # Claims joserfc cannot encode are not a finding of ocgate's.
            return
    _TOKEN[0] = token
    browser = bool(selector & 2)
    try:
        if browser:
            identity = PROVIDER.finish_untrusted(
                method="GET", params={"code": "c", "state": "L"}, pending=START.pending, now=NOW
            )
        else:
            identity = PROVIDER.verify_bearer_untrusted(token.decode("latin-1"), now=NOW)
    except SsoError:
        return
    assert isinstance(claims, dict), "accepted a token the fuzzer could not sign"
    assert _acceptable(claims, browser), f"accepted claims that break a rule: {claims!r}"
    assert identity.username == claims["preferred_username"]


def seeds() -> list[bytes]:
    good = {"iss": ISSUER, "aud": "ocgate", "iat": int(NOW), "exp": int(NOW) + 300,
            "preferred_username": "alice", "nonce": NONCE, "groups": ["a", "b"]}  # fmt: skip
    signed = jwt.encode({"alg": "RS256", "kid": "k1"}, good, KEY).encode()
    return [
        b"\x01" + json.dumps(good).encode(),
        b"\x03" + json.dumps(good).encode(),
        b"\x01" + json.dumps({**good, "exp": int(NOW) - 100}).encode(),
        b"\x00" + signed[:-8] + b"AAAAAAAA",  # A real token with a broken signature.
        b"\x04code=c&state=L",
        b"\x0cerror=access_denied&state=L&error_description=no",
    ]


if __name__ == "__main__":
    _harness.main(test_one_input)
