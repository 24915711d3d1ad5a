"""Bearer-token authentication of the NVM API (RFC 6750).

Tokens come from ``nvm-api-token-file``, one per line (blank lines and ``#`` comments ignored).
The verifier keeps only SHA-256 digests of the tokens and compares the digest of a presented token
with every one of them through :func:`hmac.compare_digest`, without stopping at the first match, so
neither the token's length nor which token matched shows in the timing. Tokens never appear in a
``repr``, an error message or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import stat
from collections.abc import Sequence
from typing import Final

from ocgate.errors import AuthFailed, ConfigError

__all__ = ["MIN_TOKEN_LENGTH", "TokenVerifier", "load_tokens", "parse_bearer_untrusted"]

MIN_TOKEN_LENGTH: Final = 16
_MAX_TOKEN_LENGTH: Final = 4096
# RFC 6750 §2.1 b64token.
_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
log = logging.getLogger("ocgate.nvm.api")


def _check_token(token: str, *, file: str | None = None, line: int | None = None) -> None:
    if _B64TOKEN.fullmatch(token) is None or len(token) > _MAX_TOKEN_LENGTH:
        raise ConfigError(
            "API token has characters outside the RFC 6750 token alphabet",
            file=file,
            line=line,
            key="nvm-api-token-file",
            expected="one token per line: letters, digits, -._~+/ and trailing =",
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            "API token is too short",
            file=file,
            line=line,
            key="nvm-api-token-file",
            expected=f"at least {MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`)",
        )


def load_tokens(path: str) -> tuple[str, ...]:
    """Read the bearer tokens from ``path``, one per line.

    Warns when the file is readable by group or others.

    :raises ConfigError: unreadable file, a malformed or short token, or no token at all.
    """
    try:
        with open(path, encoding="utf-8") as file:
            mode = os.fstat(file.fileno()).st_mode
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read API token file: {exc.__class__.__name__}", file=path
        ) from None
    if stat.S_IMODE(mode) & 0o077:
        log.warning("API token file %s is accessible by group or others; chmod 600 it", path)
    tokens: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        _check_token(token, file=path, line=number)
        tokens.append(token)
    if not tokens:
        raise ConfigError("API token file holds no token", file=path, key="nvm-api-token-file")
    return tuple(tokens)


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
    if len(token) > _MAX_TOKEN_LENGTH or _B64TOKEN.fullmatch(token) is None:
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
            _check_token(token)
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
