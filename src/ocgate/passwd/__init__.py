"""The ocserv ``plain`` password file (``ocpasswd`` format): parsing, hashing, ``ocgate passwd``."""

from __future__ import annotations

from ocgate.passwd._file import (
    NO_GROUP,
    PasswdEntry,
    format_passwd,
    load_passwd,
    parse_groups,
    parse_passwd,
    update_passwd_file,
)
from ocgate.passwd._hash import CRYPT_ALPHABET, LOCK_PREFIX, hash_password, verify_password

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocgate.passwd._cli import DEFAULT_PASSWD_FILE, main

__all__ = [
    "CRYPT_ALPHABET",
    "DEFAULT_PASSWD_FILE",
    "LOCK_PREFIX",
    "NO_GROUP",
    "PasswdEntry",
    "format_passwd",
    "hash_password",
    "load_passwd",
    "main",
    "parse_groups",
    "parse_passwd",
    "update_passwd_file",
    "verify_password",
]

_LAZY = {
    "DEFAULT_PASSWD_FILE": "_cli",
    "main": "_cli",
}
"""Loaded on first use (PEP 562): sec-mod verifies passwords without the ``ocgate passwd`` CLI."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
