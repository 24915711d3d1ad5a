"""The bearer-token file of the NVM API (``nvm-api-token-file``), read and checked.

This lives outside :mod:`ocgate.nvm.api` so that the configuration can be checked, with the file
and line of a bad token, without the ``ocgate[api]`` extra installed. Tokens never appear in an
error message or a log line.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from typing import Final

from ocgate.errors import ConfigError

__all__ = ["MAX_TOKEN_LENGTH", "MIN_TOKEN_LENGTH", "TOKEN_PATTERN", "check_token", "load_tokens"]

MIN_TOKEN_LENGTH: Final = 16
MAX_TOKEN_LENGTH: Final = 4096
TOKEN_PATTERN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750 §2.1 ``b64token``."""
_KEY: Final = "nvm-api-token-file"
log = logging.getLogger("ocgate.nvm.api")


def check_token(token: str, *, file: str | None = None, line: int | None = None) -> None:
    """Refuse a token outside the RFC 6750 alphabet or shorter than :data:`MIN_TOKEN_LENGTH`.

    :raises ConfigError: naming ``file`` and ``line`` when given, never the token.
    """
    if TOKEN_PATTERN.fullmatch(token) is None or len(token) > MAX_TOKEN_LENGTH:
        raise ConfigError(
            "API token has characters outside the RFC 6750 token alphabet",
            file=file,
            line=line,
            key=_KEY,
            expected="one token per line: letters, digits, -._~+/ and trailing =",
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            "API token is too short",
            file=file,
            line=line,
            key=_KEY,
            expected=f"at least {MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`)",
        )


def load_tokens(path: str) -> tuple[str, ...]:
    """Read the bearer tokens from ``path``, one per line (blank lines and ``#`` comments skipped).

    Warns when the file is readable by group or others.

    :raises ConfigError: unreadable file (no file name set: the caller knows the config line), a
        malformed or short token (``path:line``), or no token at all (``path``).
    """
    try:
        with open(path, encoding="utf-8") as file:
            mode = os.fstat(file.fileno()).st_mode
            text = file.read()
    except OSError as exc:
        raise ConfigError(
            f"cannot read API token file {path}: {exc.strerror or exc.__class__.__name__}",
            key=_KEY,
            expected="a readable file with one token per line",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"cannot read API token file {path}: not UTF-8 text",
            key=_KEY,
            expected="a readable file with one token per line",
        ) from None
    if stat.S_IMODE(mode) & 0o077:
        log.warning("API token file %s is accessible by group or others; chmod 600 it", path)
    tokens: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        check_token(token, file=path, line=number)
        tokens.append(token)
    if not tokens:
        raise ConfigError(
            "API token file holds no token",
            file=path,
            key=_KEY,
            expected="one token per line (e.g. `openssl rand -hex 32`)",
        )
    return tuple(tokens)
