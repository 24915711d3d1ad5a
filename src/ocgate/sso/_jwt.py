"""Verification of OpenID Connect ID tokens and bearer JWTs (sans-IO, time passed in).

Theory of operation. A token is accepted only when every check below passes; each failure raises
:class:`~ocgate.errors.SsoError` with a message safe to show the user (never the token):

1. Shape: at most :data:`MAX_TOKEN_BYTES`, three base64url parts, a JSON header naming an
   asymmetric algorithm of :data:`ALGORITHMS` (``none`` and HMAC are refused, so a public key can
   never be used as an HMAC secret).
2. Signature, against the provider's JWKS (the key named by ``kid``; joserfc does the JWS work).
3. Times, with ``leeway`` seconds of clock skew: ``exp`` and ``iat`` are required (ocserv
   ``oidc_verify_lifetime``); ``nbf``, when present, must have passed. ocserv also requires
   ``nbf``; ID tokens from most providers have none, so ocgate checks it only when present.
4. Issuer and audience when the rules name them (the browser flow always does): ``aud`` must be or
   contain the client id, and a token for several audiences must name it as ``azp``
   (OpenID Connect Core §3.1.3.7).
5. ``nonce`` equal to the one the login sent (browser flow).
6. ``required_claims``: each must equal the configured JSON value (ocserv
   ``oidc_verify_required_claims``); a required string ``aud`` also matches an ``aud`` list that
   contains it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ocgate.errors import SsoError

__all__ = [
    "ALGORITHMS",
    "MAX_TOKEN_BYTES",
    "ClaimRules",
    "claim_groups",
    "claim_text",
    "token_kid_untrusted",
    "verify_jwt_untrusted",
]

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
MAX_TOKEN_BYTES = 16 * 1024
MAX_NAME_BYTES = 64
"""ocserv ``MAX_USERNAME_SIZE``; groups get the same cap."""
MAX_GROUPS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRules:
    """What a token must say besides its signature.

    :param issuer: the ``iss`` required, or ``None`` (bearer mode checks it through
        ``required_claims``, as ocserv does).
    :param audience: the client id ``aud`` must contain, or ``None``.
    :param required_claims: claims that must equal these JSON values.
    :param leeway: seconds of clock skew allowed.
    """

    issuer: str | None = None
    audience: str | None = None
    required_claims: Mapping[str, object] = field(default_factory=dict)
    leeway: float = 60.0


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _header_untrusted(token: str) -> dict[str, object]:
    if len(token) > MAX_TOKEN_BYTES or not token.isascii():
        raise SsoError("the token is too long or not ASCII")
    parts = token.split(".")
    if len(parts) != 3:
        raise SsoError("the token is not a signed JWT")
    try:
        header = json.loads(_b64url(parts[0]))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SsoError("the token header is malformed") from exc
    if not isinstance(header, dict):
        raise SsoError("the token header is malformed")
    if header.get("alg") not in ALGORITHMS:
        raise SsoError("the token's signature algorithm is not accepted")
    return header


def token_kid_untrusted(token: str) -> str | None:
    """The ``kid`` of a token's header (``None`` when absent).

    :raises SsoError: not a JWT, or an algorithm outside :data:`ALGORITHMS`.
    """
    kid = _header_untrusted(token).get("kid")
    return kid if isinstance(kid, str) else None


def _number(claims: Mapping[str, object], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise SsoError(f"the token has no {name!r} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SsoError(f"the token's {name!r} claim is not a number")
    return float(value)


def _check_times(claims: Mapping[str, object], now: float, leeway: float) -> None:
    exp = _number(claims, "exp", required=True)
    iat = _number(claims, "iat", required=True)
    nbf = _number(claims, "nbf", required=False)
    if exp is not None and now >= exp + leeway:
        raise SsoError("the token has expired")
    if iat is not None and iat > now + leeway:
        raise SsoError("the token was issued in the future")
    if nbf is not None and nbf > now + leeway:
        raise SsoError("the token is not valid yet")


def _check_audience(claims: Mapping[str, object], audience: str) -> None:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        raise SsoError("the token is for another audience")
    if len(audiences) > 1 and claims.get("azp") != audience:
        raise SsoError("the token is for another authorized party")


def _check_required(claims: Mapping[str, object], required: Mapping[str, object]) -> None:
    for name, expected in required.items():
        value = claims.get(name)
        if value == expected:
            continue
        in_list = isinstance(expected, str) and isinstance(value, list) and expected in value
        if name == "aud" and in_list:
            continue
        raise SsoError(f"the token does not carry the required {name!r} claim")


def verify_jwt_untrusted(
    token: str, keys: KeySet, rules: ClaimRules, *, now: float, nonce: str | None = None
) -> dict[str, object]:
    """Verify ``token`` and return its claims.

    :param keys: the provider's JWKS.
    :param nonce: the nonce the login sent (browser flow), else ``None``.
    :raises SsoError: any check failed (see the module docstring).
    """
    _header_untrusted(token)
    try:
        decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
    except JoseError as exc:
        raise SsoError(f"the token's signature does not verify ({exc.error})") from exc
    except (ValueError, TypeError, KeyError, UnicodeError, RecursionError) as exc:
        raise SsoError("the token is malformed") from exc
    claims = decoded.claims
    if not isinstance(claims, dict):  # pragma: no cover - joserfc returns a dict.
        raise SsoError("the token's claims are malformed")
    _check_times(claims, now, rules.leeway)
    if rules.issuer is not None and claims.get("iss") != rules.issuer:
        raise SsoError("the token is from another issuer")
    if rules.audience is not None:
        _check_audience(claims, rules.audience)
    if nonce is not None:
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise SsoError("the token belongs to another sign-in (nonce mismatch)")
    _check_required(claims, rules.required_claims)
    return claims


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise SsoError(f"the {what} is missing or not a string")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise SsoError(f"the {what} is longer than {MAX_NAME_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise SsoError(f"the {what} holds control characters")
    return value


def claim_text(claims: Mapping[str, object], name: str) -> str:
    """The user name claim ``name``: a non-empty string of at most 64 bytes.

    :raises SsoError: missing, not a string, too long or with control characters.
    """
    return _name(claims.get(name), f"{name!r} claim")


def claim_groups(
    claims: Mapping[str, object], name: str | None, group_map: Mapping[str, str]
) -> tuple[str, ...]:
    """The groups of claim ``name`` (a string or a list of strings), mapped by ``group_map``.

    With a map, only mapped values count (an IdP group id becomes an ocgate group name); without
    one, the values are the groups. Order is kept, duplicates dropped.

    :raises SsoError: a malformed claim.
    """
    if name is None or name not in claims:
        return ()
    value = claims[name]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or len(values) > 4 * MAX_GROUPS:
        raise SsoError(f"the {name!r} claim is not a list of strings")
    groups: list[str] = []
    for item in values:
        if not isinstance(item, str):
            raise SsoError(f"the {name!r} claim is not a list of strings")
        mapped = group_map.get(item) if group_map else item
        if mapped is not None and mapped not in groups:
            groups.append(_name(mapped, "group"))
    return tuple(groups[:MAX_GROUPS])
