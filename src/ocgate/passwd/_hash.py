"""crypt(3)-compatible password hashing for the ``plain`` password file.

Theory of operation: ``ocpasswd`` (ocserv ``src/ocpasswd/ocpasswd.c``) writes SHA-256-crypt
(``$5$``) hashes with a 16-character salt from the crypt alphabet ``./0-9A-Za-z`` and the default
5000 rounds, so the output has no ``rounds=`` field. ocserv verifies with the system ``crypt(3)``.
We do both with passlib's pure implementations (never the stdlib ``crypt`` module, which left the
standard library in Python 3.13).

Supported schemes for verification: ``$1$`` (MD5-crypt), ``$5$`` (SHA-256-crypt), ``$6$``
(SHA-512-crypt). bcrypt (``$2b$``) and yescrypt (``$y$``) need extra native packages in passlib and
are refused as unsupported. A leading ``!`` marks a locked account (``ocpasswd -l``).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Any, Final

import passlib.hash

from ocgate.errors import AuthFailed

__all__ = ["CRYPT_ALPHABET", "LOCK_PREFIX", "hash_password", "verify_password"]

#: The crypt(3) "base64" alphabet that salts are drawn from (64 characters).
CRYPT_ALPHABET: Final = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Prefix that ``ocpasswd -l`` puts before a hash to lock the account.
LOCK_PREFIX: Final = "!"

_SALT_LENGTH: Final = 16
# SHA-crypt default rounds (Drepper, SHA-crypt.txt); with it the hash carries no "rounds=" field.
_DEFAULT_ROUNDS: Final = 5000

# Modular Crypt Format identifier -> passlib handler (untyped: passlib ships no stubs).
_SCHEMES: Final[dict[str, Any]] = {
    "$1$": passlib.hash.md5_crypt,
    "$5$": passlib.hash.sha256_crypt,
    "$6$": passlib.hash.sha512_crypt,
}


def _make_salt(random_bytes: Callable[[int], bytes]) -> str:
    # 256 is a multiple of 64, so taking the low six bits of each byte is unbiased.
    raw = random_bytes(_SALT_LENGTH)
    if len(raw) != _SALT_LENGTH:
        raise ValueError("random_bytes returned the wrong number of bytes")
    return "".join(CRYPT_ALPHABET[b & 0x3F] for b in raw)


def hash_password(
    password: str, *, random_bytes: Callable[[int], bytes] = secrets.token_bytes
) -> str:
    """Hash a password the way ``ocpasswd`` does: ``$5$<16-char salt>$<43-char checksum>``.

    :param password: the clear-text password (UTF-8 encoded for hashing; must not contain NUL).
    :param random_bytes: source of randomness for the salt.
    :raises ValueError: if the password contains a NUL character (crypt(3) cannot represent it).
    """
    if "\x00" in password:
        raise ValueError("password must not contain NUL characters")
    handler = passlib.hash.sha256_crypt.using(salt=_make_salt(random_bytes), rounds=_DEFAULT_ROUNDS)
    return str(handler.hash(password))


def _scheme_of(hashed: str) -> Any:
    for prefix, handler in _SCHEMES.items():
        if hashed.startswith(prefix):
            return handler
    raise AuthFailed("unsupported hash scheme")


def verify_password(password: str, hashed: str) -> None:
    """Check ``password`` against a crypt(3) hash from the password file.

    :param password: the clear-text password.
    :param hashed: the stored hash (``$1$``, ``$5$`` or ``$6$``; ``!`` prefix = locked).
    :raises AuthFailed: on a wrong password, a locked or empty hash, or an unsupported or malformed
        hash. The message is for the log only.
    """
    if not hashed:
        raise AuthFailed("empty hash")
    if hashed.startswith(LOCK_PREFIX):
        raise AuthFailed("locked")
    handler = _scheme_of(hashed)
    try:
        parsed = handler.from_string(hashed)
    except (ValueError, TypeError) as exc:
        raise AuthFailed("malformed hash") from exc
    expected = parsed.checksum
    if not isinstance(expected, str):
        raise AuthFailed("malformed hash")
    settings: dict[str, object] = {"salt": parsed.salt}
    if hasattr(parsed, "rounds"):
        settings["rounds"] = parsed.rounds
    try:
        candidate = str(handler.using(**settings).hash(password))
    except (ValueError, TypeError) as exc:
        # NUL characters, lone surrogates: no stored hash can match such a password.
        raise AuthFailed("password not hashable") from exc
    actual = candidate.rpartition("$")[2]
    if not hmac.compare_digest(actual.encode("ascii"), expected.encode("ascii")):
        raise AuthFailed("wrong password")
