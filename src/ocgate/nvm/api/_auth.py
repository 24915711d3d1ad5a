"""Bearer-token authentication of the NVM API (RFC 6750).

Tokens come from ``nvm-api-token-file``, one per line (blank lines and ``#`` comments ignored);
:mod:`ocgate.nvm._tokens` reads and checks that file (it is also checked with the configuration).
The verifier keeps only SHA-256 digests of the tokens and compares the digest of a presented token
with every one of them through :func:`hmac.compare_digest`, without stopping at the first match, so
neither the token's length nor which token matched shows in the timing. Tokens never appear in a
``repr``, an error message or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from ocgate.errors import AuthFailed, ConfigError
from ocgate.nvm._tokens import (
    MAX_TOKEN_LENGTH,
    MIN_TOKEN_LENGTH,
    TOKEN_PATTERN,
    check_token,
    load_tokens,
)

__all__ = ["MIN_TOKEN_LENGTH", "TokenVerifier", "load_tokens", "parse_bearer_untrusted"]


def parse_bearer_untrusted(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value.

    :raises AuthFailed: no header, another scheme, or a malformed token.
    """
    if authorization is None:
        raise AuthFailed("no credentials")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthFailed("not a bearer credential")
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH or TOKEN_PATTERN.fullmatch(token) is None:
        raise AuthFailed("malformed bearer token")
    return token


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class TokenVerifier:
    """Checks presented tokens against the configured ones in constant time."""

    __slots__ = ("_digests",)

    def __init__(self, tokens: Sequence[str]) -> None:
        """:raises ConfigError: no tokens, or a malformed or short one."""
        if not tokens:
            raise ConfigError("the NVM API needs at least one token", key="nvm-api-token-file")
        for token in tokens:
            check_token(token)
        self._digests: tuple[bytes, ...] = tuple(_digest(token) for token in tokens)

    def __repr__(self) -> str:
        return f"TokenVerifier(<{len(self._digests)} tokens>)"

    def verify(self, token: str) -> None:
        """:raises AuthFailed: ``token`` is not one of the configured tokens."""
        presented = _digest(token)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        if not matched:
            raise AuthFailed("unknown bearer token")
