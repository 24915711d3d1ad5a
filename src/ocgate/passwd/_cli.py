"""``ocgate passwd``: an ocpasswd-compatible password file editor.

Follows ocserv ``src/ocpasswd/ocpasswd.c``. Usage:
``ocgate passwd [-c FILE] [-g GROUPS] [-d | -l | -u] USERNAME``.

Without ``-d``/``-l``/``-u`` it sets the password: on a TTY it prompts twice, otherwise it reads one
line from stdin. Setting a password without ``-g`` rewrites the groups to none (``*``), exactly like
ocpasswd. Exit status 0 on success, 1 on failure.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Final, NoReturn, TextIO

from ocgate._version import __version__
from ocgate.errors import ConfigError, OcgateError
from ocgate.passwd._file import PasswdEntry, parse_groups, update_passwd_file
from ocgate.passwd._hash import LOCK_PREFIX, hash_password

__all__ = ["DEFAULT_PASSWD_FILE", "main"]

#: ocpasswd's default password file.
DEFAULT_PASSWD_FILE: Final = "/etc/ocserv/ocpasswd"
PROG: Final = "ocgate passwd"
# ocserv limits (src/vpn.h MAX_USERNAME_SIZE / MAX_PASSWORD_SIZE): longer values can never log in.
_MAX_FIELD_BYTES: Final = 64

# Indirection so tests can stand in for the terminal prompt.
_getpass = getpass.getpass


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        add_help=False,
        description="Add, change, lock, unlock or delete a user of an ocserv/ocgate password file.",
    )
    parser.add_argument("-c", "--passwd", metavar="FILE", default=DEFAULT_PASSWD_FILE)
    parser.add_argument("-g", "--groupname", metavar="GROUPS", default=None)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("-d", "--delete", action="store_true", help="delete the user")
    action.add_argument("-l", "--lock", action="store_true", help="lock the user")
    action.add_argument("-u", "--unlock", action="store_true", help="unlock the user")
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    parser.add_argument("-v", "--version", action="store_true", help="show the version and exit")
    parser.add_argument("username", nargs="?", metavar="USERNAME")
    return parser


class _Io:
    """The three streams of one invocation."""

    __slots__ = ("stderr", "stdin", "stdout")

    def __init__(self, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr


def _check_length(value: str, what: str) -> None:
    if len(value.encode("utf-8", "surrogatepass")) > _MAX_FIELD_BYTES:
        raise ConfigError(f"{what} is longer than {_MAX_FIELD_BYTES} bytes")


def _read_password(io: _Io) -> str:
    if io.stdin.isatty():
        first = _getpass("Enter password: ", stream=io.stderr)
        second = _getpass("Re-enter password: ", stream=io.stderr)
        if first != second:
            raise ConfigError("Passwords do not match")
        password = first
    else:
        password = io.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise ConfigError("Please specify a password")
    if "\x00" in password:
        raise ConfigError("the password must not contain NUL characters")
    _check_length(password, "the password")
    return password


def _set_password(path: str, username: str, groups: str | None, io: _Io) -> None:
    _check_length(username, "the username")
    group_list = parse_groups(groups) if groups is not None else ()
    PasswdEntry(username, group_list)  # validate the user and groups before prompting
    hashed = hash_password(_read_password(io))
    update_passwd_file(path, username, lambda _old: PasswdEntry(username, group_list, hashed))


def _require(entry: PasswdEntry | None, username: str, path: str) -> PasswdEntry:
    if entry is None:
        raise ConfigError(f"user '{username}' was not found in {path}")
    return entry


def _delete(path: str, username: str) -> None:
    def fn(entry: PasswdEntry | None) -> None:
        _require(entry, username, path)

    update_passwd_file(path, username, fn)


def _lock(path: str, username: str) -> None:
    def fn(entry: PasswdEntry | None) -> PasswdEntry:
        found = _require(entry, username, path)
        if found.locked:
            return found
        return PasswdEntry(found.username, found.groups, LOCK_PREFIX + found.hash)

    update_passwd_file(path, username, fn)


def _unlock(path: str, username: str) -> None:
    def fn(entry: PasswdEntry | None) -> PasswdEntry:
        found = _require(entry, username, path)
        return PasswdEntry(found.username, found.groups, found.hash.removeprefix(LOCK_PREFIX))

    update_passwd_file(path, username, fn)


def _run(args: argparse.Namespace, io: _Io) -> None:
    path: str = args.passwd
    username: str = args.username
    if args.delete:
        _delete(path, username)
    elif args.lock:
        _lock(path, username)
    elif args.unlock:
        _unlock(path, username)
    else:
        _set_password(path, username, args.groupname, io)


def main(
    argv: list[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``ocgate passwd``; returns the exit status (0 success, 1 failure).

    :param argv: the arguments after the subcommand name (default ``sys.argv[1:]``).
    :param stdin: where the password is read from (default ``sys.stdin``).
    :param stdout: where help and version go (default ``sys.stdout``).
    :param stderr: where prompts and errors go (default ``sys.stderr``).
    """
    io = _Io(stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr)
    parser = _build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except _UsageError as exc:
        io.stderr.write(f"{parser.format_usage()}{PROG}: error: {exc}\n")
        return 1
    if args.help:
        io.stdout.write(parser.format_help())
        return 0
    if args.version:
        io.stdout.write(f"{PROG} (ocgate) {__version__}\n")
        return 0
    if args.username is None:
        io.stderr.write(f"{parser.format_usage()}{PROG}: error: no username was specified\n")
        return 1
    try:
        _run(args, io)
    except OcgateError as exc:
        io.stderr.write(f"{exc}\n")
        return 1
    except OSError as exc:
        io.stderr.write(f"{PROG}: {exc.filename or args.passwd}: {exc.strerror}\n")
        return 1
    except (EOFError, KeyboardInterrupt):
        io.stderr.write("\n")
        return 1
    return 0
