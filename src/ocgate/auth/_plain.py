"""The ``plain`` password backend: ``auth = "plain[passwd=FILE]"`` (ocserv ``src/auth/plain.c``).

Theory of operation:

- The password file is loaded when the backend is built (a bad file is a :class:`ConfigError` at
  start-up) and re-read before an authentication whenever its inode, size or modification time
  changed, so ``ocgate passwd`` takes effect without a reload. If a re-read fails every login fails
  (fail closed) until the file is fixed; the previous contents are not used.
- Every refusal is an :class:`AuthFailed` whose message says why (for the log only). Refusals that
  depend on the user (unknown, locked, no password) still run one hash computation against a dummy
  ``$5$`` hash, so response time does not reveal which usernames exist.
- Usernames and passwords longer than 64 bytes are refused before any lookup (ocserv's
  ``MAX_USERNAME_SIZE`` / ``MAX_PASSWORD_SIZE``).
- An empty hash means "OTP only" in ocserv; this backend refuses it. The OTP layer decides what to
  do with such users (use :meth:`PlainBackend.entry`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Final

from ocgate.auth._base import AuthResult
from ocgate.errors import AuthFailed, ConfigError
from ocgate.passwd import PasswdEntry, load_passwd, verify_password

__all__ = ["MAX_PASSWORD_BYTES", "MAX_USERNAME_BYTES", "PlainBackend"]

MAX_USERNAME_BYTES: Final = 64
MAX_PASSWORD_BYTES: Final = 64

# A valid SHA-256-crypt hash of a random, forgotten password with ocpasswd's default cost; verifying
# against it costs what verifying a real ocpasswd hash costs.
_DUMMY_HASH: Final = "$5$ocgate.dummy.sal$np1RK9SrSB8MeBBgYdX61SLNbW6wXXLKNZe6R67eJJA"

_FileStamp = tuple[int, int, int, int]


def _utf8_length(value: str, what: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise AuthFailed(f"{what} is not valid Unicode") from exc


def _burn_time(password: str) -> None:
    # Same work as a real verification; the outcome is irrelevant.
    with contextlib.suppress(AuthFailed):
        verify_password(password, _DUMMY_HASH)


class PlainBackend:
    """Authenticate against an ocpasswd password file.

    :param passwd_path: the ``passwd=`` file of ``auth = "plain[passwd=FILE]"``.
    :raises ConfigError: if the file cannot be read or parsed.
    """

    def __init__(self, passwd_path: str) -> None:
        self.passwd_path = passwd_path
        self._lock = threading.Lock()
        self._stamp: _FileStamp | None = None
        self._entries: dict[str, PasswdEntry] = {}
        self._reload()

    def __repr__(self) -> str:
        return f"PlainBackend({self.passwd_path!r})"

    def _file_stamp(self) -> _FileStamp:
        st = os.stat(self.passwd_path)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _reload(self) -> None:
        """Re-read the file if it changed; raise :class:`ConfigError` if it cannot be used."""
        with self._lock:
            try:
                stamp = self._file_stamp()
            except OSError as exc:
                self._stamp = None
                self._entries = {}
                raise ConfigError(f"cannot stat: {exc.strerror}", file=self.passwd_path) from exc
            if stamp == self._stamp:
                return
            self._stamp = None
            self._entries = {}
            entries = load_passwd(self.passwd_path)
            self._entries, self._stamp = entries, stamp

    def _current(self) -> dict[str, PasswdEntry]:
        try:
            self._reload()
        except ConfigError as exc:
            raise AuthFailed(f"password file unusable: {exc}") from exc
        return self._entries

    def entry(self, username: str) -> PasswdEntry | None:
        """The user's current password-file entry, or ``None`` (re-reads a changed file).

        :raises AuthFailed: if the password file cannot be read or parsed.
        """
        return self._current().get(username)

    def all_groups(self) -> tuple[str, ...]:
        """Every group named in the current file, in first-seen order (``auto-select-group``).

        :raises AuthFailed: if the file cannot be used.
        """
        seen: dict[str, None] = {}
        for found in self._current().values():
            seen.update(dict.fromkeys(found.groups))
        return tuple(seen)

    def groups_of(self, username: str) -> tuple[str, ...]:
        """The groups the user may select, from the current file.

        :raises AuthFailed: if the user is unknown or the file cannot be used.
        """
        found = self.entry(username)
        if found is None:
            raise AuthFailed("unknown user")
        return found.groups

    def authenticate(self, username: str, password: str) -> AuthResult:
        """Check a username and password against the file.

        :raises AuthFailed: with a log-only reason: "username too long", "password too long",
            "empty username", "empty password", "unknown user", "locked", "no password set",
            "wrong password", or a problem with the file or the stored hash.
        """
        if _utf8_length(username, "username") > MAX_USERNAME_BYTES:
            raise AuthFailed("username too long")
        if _utf8_length(password, "password") > MAX_PASSWORD_BYTES:
            raise AuthFailed("password too long")
        if not username:
            raise AuthFailed("empty username")
        if not password:
            raise AuthFailed("empty password")
        found = self.entry(username)
        if found is None:
            _burn_time(password)
            raise AuthFailed("unknown user")
        if found.locked:
            _burn_time(password)
            raise AuthFailed("locked")
        if not found.hash:
            _burn_time(password)
            raise AuthFailed("no password set")
        verify_password(password, found.hash)
        return AuthResult(found.username, found.groups)
