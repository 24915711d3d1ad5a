"""One-time passwords for ``auth = "plain[passwd=FILE,otp=OTPFILE]"``: the liboath users file,
code verification with replay protection, and ``ocgate otp`` (enrollment with QR codes)."""

from __future__ import annotations

from ocgate.otp._cli import DEFAULT_OTP_FILE, main
from ocgate.otp._usersfile import (
    OtpEntry,
    OtpKind,
    UsersFile,
    load_users_file,
    parse_users_file,
)
from ocgate.otp._verify import DEFAULT_HOTP_LOOKAHEAD, OtpVerifier, generate_otp

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
