"""The ocserv ``plain`` password file (``ocpasswd`` format): parsing, hashing, ``ocgate passwd``."""

from __future__ import annotations

from ocgate.passwd._cli import DEFAULT_PASSWD_FILE, main
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
