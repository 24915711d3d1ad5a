"""The ocserv ``plain`` password file: parsing, formatting and ocpasswd-style atomic updates.

Theory of operation (ocserv ``src/auth/plain.c`` reads the file, ``src/ocpasswd/ocpasswd.c`` writes
it):

- One entry per line, ``username:group1,group2:hash``. Groups are comma-separated with the
  whitespace around them trimmed; one-character groups (``*``, ``x``) and empty ones mean "no
  group". Fields after the third are ignored, as ocserv does. A trailing CR is dropped.
- Blank lines and lines starting with ``#`` are skipped. Any other line without three fields or with
  an empty username is a :class:`~ocgate.errors.ConfigError` naming the file and line.
- A username listed twice: the first line wins (ocserv stops at the first match).
- Updates follow ocpasswd: ``FILE.tmp`` is created exclusively (an existing one means another writer
  holds the file: "file '…' is locked."), the file is copied line by line with the user's line
  replaced in place (or removed), a new user is appended, and ``FILE.tmp`` is renamed over ``FILE``.
  Lines that do not belong to the user are copied byte for byte. New files get mode 0600; existing
  files keep their mode.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ocgate.errors import ConfigError
from ocgate.passwd._hash import LOCK_PREFIX

__all__ = [
    "NO_GROUP",
    "PasswdEntry",
    "format_passwd",
    "load_passwd",
    "parse_groups",
    "parse_passwd",
    "update_passwd_file",
]

#: What ocpasswd writes in the group field when the user has no group.
NO_GROUP: Final = "*"
_NEW_FILE_MODE: Final = 0o600
# Characters that would break the line format if they appeared inside a field.
_FORBIDDEN_IN_FIELD: Final = frozenset(":\n\r\x00")


def parse_groups(text: str) -> tuple[str, ...]:
    """Split a group field (``"g1, g2"``) into names.

    Empty and one-character entries (``*``, ``x``) and repeats are dropped.

    :param text: the comma-separated group list as written in the file or given to ``-g``.
    """
    groups: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if len(name) > 1 and name not in groups:
            groups.append(name)
    return tuple(groups)


def _check_field(value: str, what: str) -> None:
    if _FORBIDDEN_IN_FIELD.intersection(value):
        raise ConfigError(f"{what} must not contain ':', NUL or line breaks", key=what)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{what} is not valid Unicode", key=what) from exc


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    """One line of the password file.

    :param username: the login name (non-empty; no ``:`` or line breaks).
    :param groups: the groups the user may select; empty = none.
    :param hash: the crypt(3) hash; ``!`` prefix = locked; empty = no password (OTP only).
    :raises ConfigError: if a field cannot be written back to the file unchanged.
    """

    username: str
    groups: tuple[str, ...] = ()
    hash: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.username:
            raise ConfigError("username must not be empty", key="username")
        _check_field(self.username, "username")
        _check_field(self.hash, "hash")
        for group in self.groups:
            _check_field(group, "group")
            if "," in group or group != group.strip() or len(group) < 2:
                raise ConfigError(f"invalid group name {group!r}", key="group")

    @property
    def locked(self) -> bool:
        """Whether the account is locked (``ocpasswd -l``)."""
        return self.hash.startswith(LOCK_PREFIX)

    def to_line(self) -> str:
        """The entry as one file line, without the line break."""
        groups = ",".join(self.groups) if self.groups else NO_GROUP
        return f"{self.username}:{groups}:{self.hash}"


def _is_skipped(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _parse_line(line: str, *, source: str, lineno: int) -> PasswdEntry:
    fields = line.split(":")
    if len(fields) < 3:
        raise ConfigError(
            "malformed password entry", file=source, line=lineno, expected="user:groups:hash"
        )
    username, groups, hashed = fields[0], fields[1], fields[2]
    if not username:
        raise ConfigError("empty username", file=source, line=lineno, expected="user:groups:hash")
    try:
        return PasswdEntry(username, parse_groups(groups), hashed)
    except ConfigError as exc:
        raise ConfigError(exc.message, file=source, line=lineno) from exc


def parse_passwd(text: str, *, source: str) -> dict[str, PasswdEntry]:
    """Parse password-file text into entries keyed by username, in file order.

    :param text: the file contents.
    :param source: the file name, used in error messages.
    :raises ConfigError: on a malformed line (with file and line number).
    """
    entries: dict[str, PasswdEntry] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if _is_skipped(line):
            continue
        entry = _parse_line(line, source=source, lineno=lineno)
        entries.setdefault(entry.username, entry)
    return entries


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8: {exc.reason}", file=source) from exc


def load_passwd(path: str | os.PathLike[str]) -> dict[str, PasswdEntry]:
    """Read and parse a password file.

    :param path: the file to read.
    :raises ConfigError: if the file cannot be read, is not UTF-8 or has a malformed line.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read password file: {exc.strerror}", file=source) from exc
    return parse_passwd(_decode(data, source), source=source)


def format_passwd(entries: Iterable[PasswdEntry] | Mapping[str, PasswdEntry]) -> str:
    """Render entries as password-file text: one ``user:groups:hash`` line each, ``*`` = no group.

    :param entries: the entries, or a mapping as returned by :func:`parse_passwd`.
    """
    values = entries.values() if isinstance(entries, Mapping) else entries
    return "".join(f"{entry.to_line()}\n" for entry in values)


def _line_user(line: bytes) -> bytes | None:
    user, sep, _ = line.partition(b":")
    return user if sep else None


def _rewrite(
    old: bytes, username: str, fn: Callable[[PasswdEntry | None], PasswdEntry | None], source: str
) -> bytes:
    """Return the new file contents: ``username``'s first line replaced by ``fn``'s answer."""
    key = username.encode("utf-8")
    lines = old.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    index = next((i for i, line in enumerate(lines) if _line_user(line) == key), None)
    current = None
    if index is not None:
        text = _decode(lines[index], source).removesuffix("\r")
        current = _parse_line(text, source=source, lineno=index + 1)
    replacement = fn(current)
    if replacement is not None and replacement.username != username:
        raise ValueError("the update function must keep the username")
    new_line = [] if replacement is None else [replacement.to_line().encode("utf-8")]
    out: list[bytes] = []
    for i, line in enumerate(lines):
        if i == index:
            out.extend(new_line)
        elif _line_user(line) != key:
            out.append(line)
    if index is None:
        out.extend(new_line)
    return b"".join(line + b"\n" for line in out)


def _read_existing(source: str) -> tuple[bytes, int]:
    try:
        with open(source, "rb") as f:
            return f.read(), os.fstat(f.fileno()).st_mode & 0o777
    except FileNotFoundError:
        return b"", _NEW_FILE_MODE


def update_passwd_file(
    path: str | os.PathLike[str],
    username: str,
    fn: Callable[[PasswdEntry | None], PasswdEntry | None],
) -> None:
    """Change one user's entry atomically, the way ocpasswd does (``FILE.tmp`` then rename).

    ``fn`` gets the user's current entry (``None`` if absent) and returns the new entry (replaced in
    place, or appended for a new user) or ``None`` to remove the user. If ``fn`` raises, the file is
    left untouched and the exception propagates. Later duplicate lines of the same user are dropped.

    :param path: the password file; created with mode 0600 if missing.
    :param username: the user to change.
    :param fn: computes the new entry from the old one.
    :raises ConfigError: if ``FILE.tmp`` exists ("file '…' is locked.") or the user's line is
        malformed.
    :raises OSError: if the file cannot be read or written.
    """
    source = os.fspath(path)
    tmp = f"{source}.tmp"
    if not username:
        raise ConfigError("username must not be empty", key="username")
    _check_field(username, "username")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE)
    except FileExistsError as exc:
        raise ConfigError(f"file '{source}' is locked.") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            old, mode = _read_existing(source)
            f.write(_rewrite(old, username, fn, source))
            f.flush()
            os.fchmod(f.fileno(), mode)
            _keep_owner(source, f.fileno())
            os.fsync(f.fileno())
        os.replace(tmp, source)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(source)))


def _keep_owner(source: str, fd: int) -> None:
    """The new file keeps the old one's owner: sec-mod (``nobody`` with ``CAP_CHOWN``) edits a
    root-owned file for the web console, and workers, also ``nobody``, must still not read it."""
    try:
        old = os.stat(source)
    except FileNotFoundError:
        return
    new = os.fstat(fd)
    if (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
        os.fchown(fd, old.st_uid, old.st_gid)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - an unopenable directory only costs durability
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
