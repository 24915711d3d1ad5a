"""The OATH "UsersFile" that ocserv's ``plain[otp=FILE]`` reads through liboath.

Theory of operation
-------------------
One token per line, whitespace-separated (liboath ``usersfile.c``)::

    TYPE USER PIN HEXKEY [COUNTER [LASTOTP [TIME]]]

* ``TYPE`` is exactly one of liboath's ``parse_type`` spellings: ``HOTP``, ``HOTP/E``, ``HOTP/E/6``,
  ``HOTP/E/7``, ``HOTP/E/8`` (event based) or ``HOTP/T30``, ``HOTP/T60`` with an optional ``/6``,
  ``/7`` or ``/8`` (time based, 30 s or 60 s steps). The digit count defaults to 6.
* ``PIN`` is ``-`` for none, ``+`` for "verified elsewhere", or a static password. ocserv passes
  ``passwd=NULL`` to ``oath_authenticate_usersfile()``, so ocserv never checks it (see ``_verify``).
* ``HEXKEY`` is the shared secret in hex.
* ``COUNTER`` (the "moving factor"): for HOTP the first counter to try. For TOTP liboath keeps a
  meaningless running sum here; ocgate stores the last accepted time step instead, which liboath
  ignores when validating, so the file stays usable by ocserv.
* ``LASTOTP`` is the last accepted code and ``TIME`` its local time, ``%Y-%m-%dT%H:%M:%SL``.

Lines that liboath would skip because their first token is not ``HOTP…`` (blank lines, ``#``
comments, mod-authn-otp ``MOTP`` entries) are kept verbatim and ignored. A line whose type starts
with ``HOTP`` but is malformed is a :class:`~ocgate.errors.ConfigError` naming the file and line:
liboath would silently skip it and lock the user out, which is worse. Tokens after ``TIME`` are
kept.

Writing follows liboath's ``update_usersfile``, made crash-safe: callers hold an exclusive
``flock`` on the sidecar ``FILE.ocgate.lock`` (never deleted, so every process locks the same
inode). Not ``FILE.lock``: liboath 2.6 creates that name with ``O_EXCL`` as its lock and fails
every login while it exists, so a permanent ``FILE.lock`` would break ocserv on the same file. The
new text goes to a temporary file in the same directory with the old file's mode and owner, it is
fsynced, renamed over the old file with ``os.replace`` and the directory is fsynced. A crash at
any point leaves either the old or the new file, never a mix.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from ocgate.errors import ConfigError

__all__ = [
    "LOCK_SUFFIX",
    "TIME_FORMAT",
    "OtpEntry",
    "OtpKind",
    "UsersFile",
    "format_time",
    "load_users_file",
    "locked_users_file",
    "make_type",
    "parse_users_file",
    "read_users_file",
    "write_users_file",
]

#: liboath ``TIME_FORMAT_STRING`` (local time).
TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SL"
#: Sidecar lock file name suffix (not liboath's ``.lock``, see the module docstring).
LOCK_SUFFIX: Final = ".ocgate.lock"
_EXPECTED: Final = "TYPE USER PIN HEXKEY [COUNTER [LASTOTP [TIME]]]"
_MAX_KEY_BYTES: Final = 64
_MAX_COUNTER: Final = 2**64 - 1
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_DIGITS: Final = frozenset("0123456789")
_TOTP_STEPS: Final = ("30", "60")
_DIGIT_SUFFIXES: Final = {"": 6, "/6": 6, "/7": 7, "/8": 8}


class OtpKind(enum.Enum):
    """Event-based (RFC 4226) or time-based (RFC 6238) one-time passwords."""

    HOTP = "hotp"
    TOTP = "totp"


def _parse_type(token: str) -> tuple[int, int | None] | None:
    """Return ``(digits, period)`` for a liboath type token, ``None`` if liboath rejects it.

    ``period`` is ``None`` for HOTP. Follows liboath ``usersfile.c`` ``parse_type``.
    """
    if token in ("HOTP", "HOTP/E"):
        return 6, None
    if token.startswith("HOTP/E/"):
        digits = _DIGIT_SUFFIXES.get(token[6:])
        return None if digits is None else (digits, None)
    for step in _TOTP_STEPS:
        prefix = f"HOTP/T{step}"
        if token.startswith(prefix):
            digits = _DIGIT_SUFFIXES.get(token[len(prefix) :])
            return None if digits is None else (digits, int(step))
    return None


def make_type(kind: OtpKind, *, digits: int = 6, period: int = 30) -> str:
    """Return the liboath type token for a new entry (6 digits are written without a suffix)."""
    suffix = "" if digits == 6 else f"/{digits}"
    if kind is OtpKind.HOTP:
        token = "HOTP" if digits == 6 else f"HOTP/E{suffix}"
    else:
        token = f"HOTP/T{period}{suffix}"
    if _parse_type(token) is None:
        raise ConfigError(
            f"liboath has no token type {token!r}",
            expected="digits 6, 7 or 8; period 30 or 60",
        )
    return token


@dataclass(frozen=True, slots=True, kw_only=True)
class OtpEntry:
    """One user line of the users file.

    :param type: the liboath type token, kept verbatim (``HOTP/T30``, ``HOTP/E/8``…).
    :param username: the user name.
    :param pin: ``-`` (none), ``+`` (verified elsewhere) or a static PIN.
    :param hexkey: the shared secret in hex, as written in the file.
    :param counter: the moving factor (HOTP: next counter; TOTP: last accepted step), or ``None``.
    :param last_otp: the last accepted code, or ``None``.
    :param last_time: the local time of the last success (``TIME_FORMAT``), or ``None``.
    :param extra: tokens after ``TIME``, kept for the rewrite.
    """

    type: str
    username: str
    pin: str = field(default="-", repr=False)
    hexkey: str = field(repr=False)
    counter: int | None = None
    last_otp: str | None = field(default=None, repr=False)
    last_time: str | None = None
    extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if _parse_type(self.type) is None:
            raise ConfigError(f"unknown token type {self.type!r}", key="TYPE", expected=_EXPECTED)
        for name, value in (("USER", self.username), ("PIN", self.pin)):
            if not value or any(c.isspace() for c in value):
                raise ConfigError(f"{name} must be one non-empty token", key=name)
        if (
            not self.hexkey
            or len(self.hexkey) % 2
            or len(self.hexkey) > 2 * _MAX_KEY_BYTES
            or not _HEX.issuperset(self.hexkey)
        ):
            raise ConfigError(
                "the key is not hex",
                key="HEXKEY",
                expected=f"an even number of hex digits, at most {_MAX_KEY_BYTES} bytes",
            )
        if self.counter is not None and not 0 <= self.counter <= _MAX_COUNTER:
            raise ConfigError("the counter is out of range", key="COUNTER")

    @property
    def digits(self) -> int:
        """Number of digits in a code (6, 7 or 8)."""
        return self._type_info[0]

    @property
    def period(self) -> int | None:
        """TOTP step in seconds, ``None`` for HOTP."""
        return self._type_info[1]

    @property
    def kind(self) -> OtpKind:
        """HOTP or TOTP."""
        return OtpKind.HOTP if self.period is None else OtpKind.TOTP

    @property
    def secret(self) -> bytes:
        """The shared secret."""
        return bytes.fromhex(self.hexkey)

    @property
    def _type_info(self) -> tuple[int, int | None]:
        info = _parse_type(self.type)
        assert info is not None  # checked in __post_init__
        return info

    def with_use(self, *, counter: int, otp: str, time: str) -> OtpEntry:
        """Return this entry after a successful login (liboath writes all three fields)."""
        return replace(self, counter=counter, last_otp=otp, last_time=time)

    def to_line(self) -> str:
        """Render the line the way liboath ``update_usersfile2`` does (tab-separated)."""
        fields = [self.type, self.username, self.pin, self.hexkey]
        if self.counter is not None or self.last_otp is not None:
            fields.append(str(self.counter or 0))
        if self.last_otp is not None:
            fields.append(self.last_otp)
            if self.last_time is not None:
                fields.append(self.last_time)
                fields.extend(self.extra)
        return "\t".join(fields)


@dataclass(frozen=True, slots=True)
class _Line:
    text: str = field(repr=False)
    entry: OtpEntry | None


@dataclass(frozen=True, slots=True)
class UsersFile:
    """A parsed users file that renders back byte-for-byte except for the lines it changed.

    :param source: the file name used in error messages.
    """

    source: str
    _lines: tuple[_Line, ...] = field(default=(), repr=False)
    _newline_at_end: bool = field(default=True, repr=False)

    @property
    def entries(self) -> tuple[OtpEntry, ...]:
        """All entries in file order."""
        return tuple(line.entry for line in self._lines if line.entry is not None)

    def users(self) -> tuple[str, ...]:
        """User names in file order, each once."""
        return tuple(dict.fromkeys(entry.username for entry in self.entries))

    def entries_for(self, username: str) -> tuple[tuple[int, OtpEntry], ...]:
        """``(index, entry)`` of every line for ``username``; liboath tries them in this order."""
        return tuple(
            (index, line.entry)
            for index, line in enumerate(self._lines)
            if line.entry is not None and line.entry.username == username
        )

    def replaced(self, index: int, entry: OtpEntry) -> UsersFile:
        """Return a copy with line ``index`` (an entry line) replaced by ``entry``."""
        lines = list(self._lines)
        if lines[index].entry is None:
            raise ValueError("only entry lines can be replaced")
        lines[index] = _Line(entry.to_line(), entry)
        return replace(self, _lines=tuple(lines))

    def with_user(self, entry: OtpEntry) -> UsersFile:
        """Return a copy where ``entry`` replaces every line of its user (or is appended)."""
        lines: list[_Line] = []
        placed = False
        for line in self._lines:
            if line.entry is not None and line.entry.username == entry.username:
                if not placed:
                    lines.append(_Line(entry.to_line(), entry))
                    placed = True
                continue
            lines.append(line)
        if not placed:
            lines.append(_Line(entry.to_line(), entry))
        return replace(self, _lines=tuple(lines), _newline_at_end=True)

    def without_user(self, username: str) -> UsersFile:
        """Return a copy without any line of ``username``."""
        lines = tuple(
            line for line in self._lines if line.entry is None or line.entry.username != username
        )
        return replace(self, _lines=lines)

    def render(self) -> str:
        """The file text."""
        text = "\n".join(line.text for line in self._lines)
        return text + "\n" if self._lines and self._newline_at_end else text


def _parse_counter(token: str) -> int:
    if not token or not _DIGITS.issuperset(token) or int(token) > _MAX_COUNTER:
        raise ConfigError(
            f"bad counter {token!r}", key="COUNTER", expected="a decimal number below 2**64"
        )
    return int(token)


def _check_time(token: str) -> str:
    try:
        datetime.strptime(token, TIME_FORMAT)
    except ValueError:
        raise ConfigError(
            f"bad time {token!r}", key="TIME", expected="YYYY-MM-DDTHH:MM:SSL"
        ) from None
    return token


def _parse_entry(tokens: list[str]) -> OtpEntry:
    if len(tokens) < 4:
        raise ConfigError("too few fields", expected=_EXPECTED)
    return OtpEntry(
        type=tokens[0],
        username=tokens[1],
        pin=tokens[2],
        hexkey=tokens[3],
        counter=_parse_counter(tokens[4]) if len(tokens) > 4 else None,
        last_otp=tokens[5] if len(tokens) > 5 else None,
        last_time=_check_time(tokens[6]) if len(tokens) > 6 else None,
        extra=tuple(tokens[7:]),
    )


def _parse_line(text: str, *, source: str, lineno: int) -> _Line:
    tokens = text.split()
    if not tokens or not tokens[0].startswith("HOTP"):
        return _Line(text, None)
    try:
        return _Line(text, _parse_entry(tokens))
    except ConfigError as exc:
        raise ConfigError(
            exc.message, file=source, line=lineno, key=exc.key, expected=exc.expected
        ) from None


def parse_users_file(text: str, *, source: str = "<otp users file>") -> UsersFile:
    """Parse the text of a users file.

    :param text: the whole file.
    :param source: the file name for error messages.
    :raises ConfigError: a ``HOTP…`` line is malformed (with ``file`` and ``line`` set).
    """
    raw_lines = text.split("\n")
    newline_at_end = raw_lines[-1] == ""
    if newline_at_end:
        raw_lines.pop()
    # ``str.split()`` also drops the CR of a CRLF line; unchanged lines keep theirs verbatim.
    lines = tuple(
        _parse_line(raw, source=source, lineno=lineno)
        for lineno, raw in enumerate(raw_lines, start=1)
    )
    return UsersFile(source, lines, newline_at_end or not lines)


def read_users_file(path: str) -> tuple[UsersFile, os.stat_result]:
    """Read and parse ``path``; also return the ``stat`` of the file object that was read.

    :raises ConfigError: the file cannot be read, is not UTF-8 or is malformed.
    :raises FileNotFoundError: ``path`` does not exist.
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=path) from None
    return parse_users_file(text, source=path), st


def load_users_file(path: str) -> UsersFile:
    """Read and parse the users file at ``path``.

    :raises ConfigError: the file is missing, unreadable or malformed.
    """
    try:
        return read_users_file(path)[0]
    except FileNotFoundError:
        raise ConfigError("no such file", file=path) from None


@contextlib.contextmanager
def locked_users_file(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path + LOCK_SUFFIX`` for the ``with`` block.

    The lock file is created (mode 0600) and never removed.
    """
    fd = os.open(path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def format_time(now: float) -> str:
    """``now`` as liboath writes it: local time, ``TIME_FORMAT``."""
    return datetime.fromtimestamp(now).strftime(TIME_FORMAT)


def write_users_file(path: str, text: str) -> os.stat_result:
    """Atomically replace ``path`` with ``text``, keeping its mode and owner (0600 when new).

    Call it while holding :func:`locked_users_file`. Returns the ``stat`` of the new file.

    :raises OSError: the file could not be written; the old file is left untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        old: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if old is not None:
                os.fchmod(f.fileno(), stat.S_IMODE(old.st_mode))
                st = os.fstat(f.fileno())
                if (st.st_uid, st.st_gid) != (old.st_uid, old.st_gid):
                    os.fchown(f.fileno(), old.st_uid, old.st_gid)
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
            new = os.fstat(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return new


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
