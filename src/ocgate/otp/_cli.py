"""``ocgate otp``: enroll, remove, list and test users of the OTP users file (``plain[otp=FILE]``).

Usage::

    ocgate otp enroll USER [--hotp] [--digits 6|7|8] [--period 30|60] [-f FILE] [--issuer NAME]
                           [--png FILE] [--force]
    ocgate otp remove USER [-f FILE]
    ocgate otp verify USER CODE [-f FILE] [--window N]
    ocgate otp list [-f FILE]

``enroll`` prints the ``otpauth://`` URI, a QR code made of text and the base32 secret for
``openconnect --token-mode=totp|hotp --token-secret=base32:…``. ``verify`` consumes the code
exactly like a login. ``list`` never prints secrets. Exit status 0 on success, 1 on failure, 2 on
usage errors.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import secrets
import sys
import time  # noqa: TID251 -- the CLI is an adapter: it reads the clock for ``verify``.
from collections.abc import Callable, Sequence
from typing import Final, NoReturn, TextIO

import pyotp
import qrcode  # type: ignore[import-untyped]
import qrcode.image.pure  # type: ignore[import-untyped]

from ocgate.errors import AuthFailed, ConfigError, OcgateError
from ocgate.otp._usersfile import (
    OtpEntry,
    OtpKind,
    UsersFile,
    locked_users_file,
    make_type,
    read_users_file,
    write_users_file,
)
from ocgate.otp._verify import OtpVerifier

__all__ = ["DEFAULT_OTP_FILE", "main"]

#: Where ocserv's documentation puts the users file.
DEFAULT_OTP_FILE: Final = "/etc/ocserv/users.oath"
PROG: Final = "ocgate otp"
_SECRET_BYTES: Final = 20  # RFC 4226 section 4 R6 recommends 160 bits


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


def _add_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", default=DEFAULT_OTP_FILE, metavar="OTPFILE")


def _build_parser() -> _Parser:
    parser = _Parser(prog=PROG, description="Manage the OTP users file (liboath format).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    enroll = sub.add_parser("enroll", help="create a secret for a user and show its QR code")
    enroll.add_argument("user")
    enroll.add_argument("--hotp", action="store_true", help="counter-based instead of time-based")
    enroll.add_argument("--digits", type=int, choices=(6, 7, 8), default=6)
    enroll.add_argument("--period", type=int, choices=(30, 60), default=30)
    enroll.add_argument("--issuer", default="ocgate")
    enroll.add_argument("--png", metavar="FILE", help="also write the QR code as a PNG image")
    enroll.add_argument("--force", action="store_true", help="replace an existing user")
    _add_file(enroll)
    remove = sub.add_parser("remove", help="delete every line of a user")
    remove.add_argument("user")
    _add_file(remove)
    verify = sub.add_parser("verify", help="check (and consume) a code like a login")
    verify.add_argument("user")
    verify.add_argument("code")
    verify.add_argument("--window", type=int, default=1, help="TOTP steps accepted either side")
    _add_file(verify)
    listing = sub.add_parser("list", help="show users and token types (never secrets)")
    _add_file(listing)
    return parser


def _check_username(user: str) -> None:
    if not user or user.startswith("#") or any(c.isspace() or not c.isprintable() for c in user):
        raise ConfigError(f"invalid user name {user!r}", expected="one printable word")


def _update(path: str, fn: Callable[[UsersFile], UsersFile]) -> None:
    """Apply ``fn`` to the file under its lock and write the result atomically."""
    with locked_users_file(path):
        try:
            users = read_users_file(path)[0]
        except FileNotFoundError:
            users = UsersFile(path)
        write_users_file(path, fn(users).render())


def _provisioning_uri(args: argparse.Namespace, b32: str) -> str:
    otp: pyotp.OTP
    if args.hotp:
        otp = pyotp.HOTP(b32, digits=args.digits, issuer=args.issuer, initial_count=0)
    else:
        otp = pyotp.TOTP(b32, digits=args.digits, interval=args.period, issuer=args.issuer)
    return otp.provisioning_uri(name=args.user, issuer_name=args.issuer)


def _enroll(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _check_username(args.user)
    kind = OtpKind.HOTP if args.hotp else OtpKind.TOTP
    key = secrets.token_bytes(_SECRET_BYTES)
    entry = OtpEntry(
        type=make_type(kind, digits=args.digits, period=args.period),
        username=args.user,
        hexkey=key.hex(),
        counter=0 if args.hotp else None,
    )

    def fn(users: UsersFile) -> UsersFile:
        if users.entries_for(args.user) and not args.force:
            raise ConfigError(f"user {args.user!r} already exists in {args.file} (use --force)")
        return users.with_user(entry)

    # Build every output first, so nothing but I/O can fail after the user is written.
    b32 = base64.b32encode(key).decode("ascii").rstrip("=")
    uri = _provisioning_uri(args, b32)
    qr = qrcode.QRCode(border=2)
    qr.add_data(uri)
    qr.make(fit=True)
    picture = io.StringIO()
    qr.print_ascii(out=picture, invert=True)  # text blocks: works when stdout is not a TTY
    png = io.BytesIO()
    qr.make_image(image_factory=qrcode.image.pure.PyPNGImage).save(png)
    _update(args.file, fn)

    out.write(f"Enrolled {args.user} ({entry.type}) in {args.file}\n\n")
    if args.png:
        # The image holds the secret: create it readable by the owner only.
        fd = os.open(args.png, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(png.getvalue())
        out.write(f"QR code written to {args.png}\n\n")
    try:
        out.write(picture.getvalue())
    except UnicodeEncodeError:
        out.write("(no QR code: the output is not UTF-8; use --png)\n")
    mode = "hotp" if args.hotp else "totp"
    token = f"base32:{b32},0" if args.hotp else f"base32:{b32}"
    out.write(f"\n{uri}\n\nSecret (base32): {b32}\n")
    out.write(f"openconnect: --token-mode={mode} --token-secret={token}\n")
    if args.digits != 6 or (not args.hotp and args.period != 30):
        err.write("warning: openconnect's soft token only makes 6-digit codes with 30 s steps\n")
    return 0


def _remove(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    def fn(users: UsersFile) -> UsersFile:
        if not users.entries_for(args.user):
            raise ConfigError(f"user {args.user!r} was not found in {args.file}")
        return users.without_user(args.user)

    _update(args.file, fn)
    out.write(f"Removed {args.user} from {args.file}\n")
    return 0


def _verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    verifier = OtpVerifier(args.file, window=args.window)
    try:
        verifier.verify(args.user, args.code, time.time())
    except AuthFailed as exc:
        err.write(f"{PROG}: refused: {exc}\n")
        return 1
    out.write("OK\n")
    return 0


def _describe(entry: OtpEntry) -> str:
    if entry.period is None:
        return f"HOTP, {entry.digits} digits, next counter {entry.counter or 0}"
    return f"TOTP, {entry.digits} digits, {entry.period} s"


def _list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with locked_users_file(args.file):
        try:
            users = read_users_file(args.file)[0]
        except FileNotFoundError:
            raise ConfigError("no such file", file=args.file) from None
    for entry in users.entries:
        out.write(f"{entry.username}\t{entry.type}\t{_describe(entry)}\n")
    return 0


_COMMANDS: Final[dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]]] = {
    "enroll": _enroll,
    "remove": _remove,
    "verify": _verify,
    "list": _list,
}


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``ocgate otp`` with ``argv`` (without the program name); return the exit status."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    parser = _build_parser()
    try:
        with contextlib.redirect_stdout(out):  # argparse prints --help to sys.stdout
            args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as exc:
        err.write(f"{parser.format_usage()}{exc}\n")
        return 2
    except SystemExit as exc:  # --help printed by argparse
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return _COMMANDS[args.command](args, out, err)
    except (OcgateError, OSError) as exc:
        err.write(f"{PROG}: {exc}\n")
        return 1
