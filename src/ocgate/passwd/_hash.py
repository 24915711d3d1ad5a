"""crypt(3) password hashing for the ``plain`` password file, through the system's libxcrypt.

Theory of operation: ``ocpasswd`` (ocserv ``src/ocpasswd/ocpasswd.c``) writes SHA-256-crypt
(``$5$``) hashes with a 16-character salt from the crypt alphabet ``./0-9A-Za-z`` and the default
5000 rounds, so the output has no ``rounds=`` field. ocserv verifies with the system ``crypt(3)``,
which on Debian (and every current distribution) is libxcrypt. We call the same library, so a hash
verifies here exactly when it verifies for ocserv: ``crypt_rn(3)`` through :mod:`ctypes` (the stdlib
``crypt`` module left the standard library in Python 3.13). A foreign call releases the GIL, so the
authentication service's hashing threads run beside its event loop instead of taking turns with it,
and the C implementation is faster than a pure-Python one.

Supported schemes: ``$1$`` (MD5-crypt), ``$5$`` (SHA-256-crypt), ``$6$`` (SHA-512-crypt), ``$2a$``,
``$2b$``, ``$2y$`` (bcrypt), ``$y$`` (yescrypt, the default of Debian 12's ``mkpasswd`` and
``passwd``), ``$gy$`` (gost-yescrypt) and ``$7$`` (scrypt). Traditional DES and BSDi crypt are
refused as unsupported: they ignore everything after the 8th character of a password. A leading
``!`` marks a locked account (``ocpasswd -l``).
"""

from __future__ import annotations

import ctypes
import hmac
import secrets
from collections.abc import Callable
from typing import Final

from ocgate.errors import AuthFailed

__all__ = ["CRYPT_ALPHABET", "LOCK_PREFIX", "hash_password", "verify_password"]

#: The crypt(3) "base64" alphabet that salts are drawn from (64 characters).
CRYPT_ALPHABET: Final = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Prefix that ``ocpasswd -l`` puts before a hash to lock the account.
LOCK_PREFIX: Final = "!"

_SALT_LENGTH: Final = 16
_SCHEMES: Final = ("$1$", "$5$", "$6$", "$2a$", "$2b$", "$2y$", "$y$", "$gy$", "$7$")
# sizeof(struct crypt_data) in libxcrypt (<crypt.h>: CRYPT_DATA_INTERNAL_SIZE + output + input).
_CRYPT_DATA_SIZE: Final = 32768


def _load_crypt_rn() -> Callable[[bytes, bytes, ctypes.Array[ctypes.c_char], int], bytes | None]:
    # Loaded at import: the authentication service imports this before it drops privileges and
    # installs its seccomp filter, after which it could not map a new library.
    # libxcrypt's soname (Debian's libcrypt1, priority "required"); not ctypes.util.find_library,
    # which runs ldconfig in a subprocess.
    function = ctypes.CDLL("libcrypt.so.1", use_errno=True).crypt_rn
    function.restype = ctypes.c_char_p
    function.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
    return function


_crypt_rn: Final = _load_crypt_rn()


def _crypt(password: bytes, setting: bytes) -> bytes | None:
    """``crypt_rn(3)``: the hash of ``password`` with ``setting``, or None if the setting is bad."""
    data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
    return _crypt_rn(password, setting, data, _CRYPT_DATA_SIZE)


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
    :raises ValueError: if the password contains a NUL character (crypt(3) cannot represent it)
        or cannot be encoded as UTF-8.
    """
    if "\x00" in password:
        raise ValueError("password must not contain NUL characters")
    hashed = _crypt(password.encode("utf-8"), f"$5${_make_salt(random_bytes)}".encode("ascii"))
    if hashed is None:  # pragma: no cover - libxcrypt always supports $5$ with a valid salt.
        raise ValueError("crypt(3) refused a SHA-256-crypt setting")
    return hashed.decode("ascii")


def verify_password(password: str, hashed: str) -> None:
    """Check ``password`` against a crypt(3) hash from the password file.

    :param password: the clear-text password.
    :param hashed: the stored hash (a scheme of the module docstring; ``!`` prefix = locked).
    :raises AuthFailed: on a wrong password, a locked or empty hash, or an unsupported or malformed
        hash. The message is for the log only.
    """
    if not hashed:
        raise AuthFailed("empty hash")
    if hashed.startswith(LOCK_PREFIX):
        raise AuthFailed("locked")
    if not hashed.startswith(_SCHEMES):
        raise AuthFailed("unsupported hash scheme")
    if not hashed.isascii():
        raise AuthFailed("malformed hash")
    stored = hashed.encode("ascii")
    try:
        candidate = password.encode("utf-8")
    except UnicodeEncodeError as exc:  # A lone surrogate cannot match any stored hash.
        raise AuthFailed("password not hashable") from exc
    if b"\x00" in candidate:
        raise AuthFailed("password not hashable")
    computed = _crypt(candidate, stored)
    # crypt(3) reads only the settings part of ``stored``; a result of another shape means the
    # stored string was not a whole hash (missing or cut checksum, trailing bytes).
    if computed is None or len(computed) != len(stored):
        raise AuthFailed("malformed hash")
    settings = stored.rpartition(b"$")[0]
    if computed.rpartition(b"$")[0] != settings:
        raise AuthFailed("malformed hash")
    if not hmac.compare_digest(computed, stored):
        raise AuthFailed("wrong password")
