"""Authentication backends and the rules they share (ocserv-compatibility §4.1, §4.2)."""

from __future__ import annotations

from ocgate.auth._base import AuthResult, PasswordBackend, select_group
from ocgate.auth._plain import MAX_PASSWORD_BYTES, MAX_USERNAME_BYTES, PlainBackend

__all__ = [
    "MAX_PASSWORD_BYTES",
    "MAX_USERNAME_BYTES",
    "AuthResult",
    "PasswordBackend",
    "PlainBackend",
    "select_group",
]
