"""One-time passwords for ``auth = "plain[passwd=FILE,otp=OTPFILE]"``: the liboath users file,
code verification with replay protection, and ``ocgate otp`` (enrollment with QR codes)."""

from __future__ import annotations

from ocgate.otp._usersfile import (
    OtpEntry,
    OtpKind,
    UsersFile,
    load_users_file,
    parse_users_file,
)
from ocgate.otp._verify import DEFAULT_HOTP_LOOKAHEAD, OtpVerifier, generate_otp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocgate.otp._cli import DEFAULT_OTP_FILE, main

__all__ = [
    "DEFAULT_HOTP_LOOKAHEAD",
    "DEFAULT_OTP_FILE",
    "OtpEntry",
    "OtpKind",
    "OtpVerifier",
    "UsersFile",
    "generate_otp",
    "load_users_file",
    "main",
    "parse_users_file",
]

_LAZY = {
    "DEFAULT_OTP_FILE": "_cli",
    "main": "_cli",
}
"""Loaded on first use (PEP 562): sec-mod verifies codes without the enrollment CLI (QR codes)."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
