"""The console API's bearer tokens (``admin-token-file``): ``TOKEN [admin|readonly]`` per line.

Read by the supervisor; the console process receives only SHA-256 digests of the tokens with
their roles, so a disclosure of the console's memory does not disclose a usable token list.
Blank lines and ``#`` comments are skipped; a token follows the NVM API's rules (RFC 6750
``b64token``, at least 16 characters). Tokens never appear in an error or a log line.
"""

from __future__ import annotations

from typing import cast

from ocgate.console._auth import token_digest
from ocgate.console._backend import Role
from ocgate.errors import ConfigError
from ocgate.nvm._tokens import check_token

__all__ = ["load_admin_tokens", "token_digest"]

_EXPECTED = "one token per line, optionally followed by admin or readonly (default: readonly)"


def load_admin_tokens(path: str) -> dict[bytes, Role]:
    """:raises ConfigError: unreadable file or a bad line (file:line, never the token)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=path, key="admin-token-file") from None
    tokens: dict[bytes, Role] = {}
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        words = text.split()
        if len(words) > 2 or (len(words) == 2 and words[1] not in ("admin", "readonly")):
            raise ConfigError(
                "malformed token line", file=path, line=number, key="admin-token-file",
                expected=_EXPECTED,
            )  # fmt: skip
        try:
            check_token(words[0], file=path, line=number)
        except ConfigError as exc:
            raise ConfigError(
                exc.message, file=path, line=number, key="admin-token-file", expected=exc.expected
            ) from None
        tokens[token_digest(words[0])] = cast(Role, words[1] if len(words) == 2 else "readonly")
    return tokens
