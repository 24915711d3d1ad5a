"""Authentication backends and the rules they share (ocserv-compatibility §4.1, §4.2)."""

from __future__ import annotations

from ocgate.auth._accounting import Counters, SessionAccounting, terminate_cause
from ocgate.auth._base import AuthResult, PasswordBackend, select_group
from ocgate.auth._plain import MAX_PASSWORD_BYTES, MAX_USERNAME_BYTES, PlainBackend
from ocgate.auth._registry import (
    OTP_WINDOW,
    AuthAlternatives,
    AuthBackends,
    LoginContext,
    PasswordOk,
    build_accounting,
    build_auth_backends,
)

__all__ = [
    "MAX_PASSWORD_BYTES",
    "MAX_USERNAME_BYTES",
    "OTP_WINDOW",
    "AuthAlternatives",
    "AuthBackends",
    "AuthResult",
    "Counters",
    "LoginContext",
    "PasswordBackend",
    "PasswordOk",
    "PlainBackend",
    "SessionAccounting",
    "build_accounting",
    "build_auth_backends",
    "select_group",
    "terminate_cause",
]
