"""Checking one-time passwords against the users file, as ocserv does through liboath.

Theory of operation
-------------------
ocserv ``src/auth/plain.c`` calls ``oath_authenticate_usersfile(file, user, otp, HOTP_WINDOW=20,
passwd=NULL, &last)``; :meth:`OtpVerifier.verify` follows liboath ``usersfile.c`` with these rules:

1. Every line of the user is tried in file order; the first that accepts the code is updated.
   No line: unknown user.
2. The PIN column is ignored, because ocserv passes ``passwd=NULL``. With ``pin=`` given, liboath's
   rule applies instead: ``-`` needs an empty PIN, ``+`` accepts any, anything else must be equal.
3. A code equal to the line's ``LASTOTP`` is a replay, whatever the type (liboath
   ``OATH_REPLAYED_OTP``).
4. HOTP accepts the counters ``c .. c + hotp_lookahead`` (``c`` = the ``COUNTER`` column) and stores
   the counter after the one used. liboath stores the used counter itself; rule 3 covers that.
5. TOTP accepts the steps ``t - window .. t + window`` of ``now``, but only steps after the last
   accepted one, which is ``COUNTER`` as ocgate writes it, or the step where ``LASTOTP`` still
   matches in the window (liboath's own check, for files that liboath wrote).
6. Nothing is accepted before the new state is durably on disk (``_usersfile.write_users_file``);
   if the write fails, the login fails. The moving factor is also raised in memory *before* the
   write, and a later re-read never lowers it, so a code cannot be used twice while this process
   lives, even if the disk state is lost.
7. The file is re-read when its inode, size or mtime change, under the ``flock`` that writers take.

Codes are compared with :func:`hmac.compare_digest` and every candidate in the window is computed,
so the time taken does not depend on where (or whether) the code matched.
"""

from __future__ import annotations

import base64
import hmac
import os
import threading
from typing import ClassVar, Final

import pyotp

from ocgate.errors import AuthFailed, ConfigError
from ocgate.otp._usersfile import (
    OtpEntry,
    OtpKind,
    UsersFile,
    format_time,
    locked_users_file,
    read_users_file,
    write_users_file,
)

__all__ = ["DEFAULT_HOTP_LOOKAHEAD", "OtpVerifier", "generate_otp", "match_hotp", "match_totp"]

#: ocserv ``src/auth/plain.c`` ``HOTP_WINDOW``.
DEFAULT_HOTP_LOOKAHEAD: Final = 20
_MAX_FACTOR: Final = 2**64 - 1
_ERRORS: Final = "surrogatepass"  # peer text may hold lone surrogates; never fail to encode

_Stamp = tuple[int, int, int, int]
_FloorKey = tuple[str, str, int, str]


class _AnyLengthOtp(pyotp.OTP):
    """pyotp's generator without its 112-bit key minimum: liboath takes any key (even ``00``)."""

    min_secret_length_bits: ClassVar[int] = 0


def generate_otp(secret: bytes, moving_factor: int, digits: int) -> str:
    """The RFC 4226 code for ``moving_factor`` (a counter, or a TOTP time step).

    :param secret: the shared key.
    :param moving_factor: 0 … 2**64-1.
    :param digits: code length, 6 to 8.
    """
    b32 = base64.b32encode(secret).decode("ascii")
    return _AnyLengthOtp(b32, digits=digits).generate_otp(moving_factor)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def _first_match(secret: bytes, digits: int, code: str, factors: range) -> int | None:
    found: int | None = None
    for factor in factors:  # no early exit: constant work per window
        if _equal(generate_otp(secret, factor, digits), code) and found is None:
            found = factor
    return found


def match_hotp(
    secret: bytes, digits: int, code: str, *, counter: int, lookahead: int
) -> int | None:
    """Return the first counter in ``counter … counter + lookahead`` whose code is ``code``."""
    last = min(counter + lookahead, _MAX_FACTOR)
    return _first_match(secret, digits, code, range(counter, last + 1))


def match_totp(
    secret: bytes, digits: int, code: str, *, step: int, window: int, lowest: int = 0
) -> int | None:
    """Return the first step in ``step ± window`` (and ``>= lowest``) whose code is ``code``."""
    first = max(step - window, lowest, 0)
    return _first_match(secret, digits, code, range(first, step + window + 1))


def _well_formed(code: str, digits: int) -> bool:
    return len(code) == digits and code.isascii() and code.isdigit()


def _pin_ok(stored: str, given: str) -> bool:
    """liboath ``parse_usersfile`` password rule."""
    if stored == "-":
        return given == ""
    if stored == "+":
        return True
    return _equal(stored, given)


def _floor_key(entry: OtpEntry) -> _FloorKey:
    return (entry.username, entry.kind.value, entry.period or 0, entry.hexkey.lower())


def _stamp(st: os.stat_result) -> _Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class OtpVerifier:
    """Verifies codes for ``plain[otp=FILE]`` and records each use in ``FILE``.

    Blocking (file lock, fsync): call it from a worker thread in an event loop. Thread-safe.

    :param path: the users file.
    :param window: TOTP steps accepted on each side of the current one (ocserv uses 20).
    :param hotp_lookahead: HOTP counters accepted after the stored one (ocserv: 20).
    :raises ConfigError: the file is missing or malformed, or a parameter is negative.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        window: int = 1,
        hotp_lookahead: int = DEFAULT_HOTP_LOOKAHEAD,
    ) -> None:
        if window < 0 or hotp_lookahead < 0:
            raise ConfigError("OTP window and look-ahead must not be negative")
        self._path = os.fspath(path)
        self._window = window
        self._lookahead = hotp_lookahead
        self._mutex = threading.Lock()
        self._floors: dict[_FloorKey, int] = {}
        self._users = UsersFile(self._path)
        self._stamp: _Stamp | None = None
        with self._mutex, locked_users_file(self._path):
            self._refresh()

    @property
    def path(self) -> str:
        """The users file."""
        return self._path

    def _refresh(self) -> UsersFile:
        """Re-read the file if it changed on disk. Call with both locks held."""
        try:
            current = _stamp(os.stat(self._path))
        except FileNotFoundError:
            raise ConfigError("no such file", file=self._path) from None
        if current != self._stamp:
            try:
                users, st = read_users_file(self._path)
            except FileNotFoundError:
                raise ConfigError("no such file", file=self._path) from None
            self._users, self._stamp = users, _stamp(st)
        return self._users

    def _snapshot(self) -> UsersFile:
        with self._mutex, locked_users_file(self._path):
            return self._refresh()

    def has_user(self, username: str) -> bool:
        """Whether ``username`` has a line (ocserv: with an OTP file, every user needs one).

        :raises ConfigError: the file is gone or has become malformed.
        """
        return bool(self._snapshot().entries_for(username))

    def entry(self, username: str) -> OtpEntry | None:
        """The first line of ``username`` (the one liboath tries first), or ``None``.

        :raises ConfigError: the file is gone or has become malformed.
        """
        found = self._snapshot().entries_for(username)
        return found[0][1] if found else None

    def verify(self, username: str, code: str, now: float, *, pin: str | None = None) -> None:
        """Accept ``code`` for ``username`` once, and record its use in the file.

        :param username: the login name.
        :param code: what the client sent (peer data).
        :param now: the wall-clock time (``time.time()``), for TOTP and the ``TIME`` column.
        :param pin: check the PIN column with liboath's rule; ``None`` (ocserv) ignores it.
        :raises AuthFailed: unknown user, malformed, wrong or replayed code, wrong PIN, or the
            file could not be read or updated. The message is for the log only.
        """
        with self._mutex, locked_users_file(self._path):
            try:
                users = self._refresh()
            except ConfigError as exc:
                raise AuthFailed(f"OTP users file unusable: {exc}") from exc
            candidates = users.entries_for(username)
            if not candidates:
                raise AuthFailed("OTP: unknown user")
            for index, entry in candidates:
                if pin is not None and not _pin_ok(entry.pin, pin):
                    continue
                if not _well_formed(code, entry.digits):
                    continue
                if entry.last_otp is not None and _equal(entry.last_otp, code):
                    raise AuthFailed("OTP: replayed code")
                used = self._match(entry, code, now)
                if used is not None:
                    self._commit(users, index, entry, used, code, now)
                    return
            raise AuthFailed("OTP: wrong code or PIN")

    def _match(self, entry: OtpEntry, code: str, now: float) -> int | None:
        """Return the counter or step that ``code`` belongs to, if acceptable."""
        floor = self._floors.get(_floor_key(entry), 0)
        if entry.period is None:
            start = max(entry.counter or 0, floor)
            return match_hotp(
                entry.secret, entry.digits, code, counter=start, lookahead=self._lookahead
            )
        step = int(now // entry.period)
        lowest = max(floor, 0 if entry.counter is None else entry.counter + 1)
        if entry.last_otp is not None:
            last = self._last_otp_step(entry, entry.last_otp, step)
            if last is not None:
                lowest = max(lowest, last + 1)
        return match_totp(
            entry.secret, entry.digits, code, step=step, window=self._window, lowest=lowest
        )

    def _last_otp_step(self, entry: OtpEntry, last_otp: str, step: int) -> int | None:
        """liboath's TOTP replay check: the latest step in the window that produced ``LASTOTP``."""
        found: int | None = None
        for s in range(max(step - self._window, 0), step + self._window + 1):
            if _equal(generate_otp(entry.secret, s, entry.digits), last_otp):
                found = s
        return found

    def _commit(
        self, users: UsersFile, index: int, entry: OtpEntry, used: int, code: str, now: float
    ) -> None:
        # HOTP stores the next counter; TOTP stores the step just used (see the module docstring).
        stored = used + 1 if entry.kind is OtpKind.HOTP else used
        key = _floor_key(entry)
        self._floors[key] = max(self._floors.get(key, 0), used + 1)
        updated = users.replaced(
            index, entry.with_use(counter=min(stored, _MAX_FACTOR), otp=code, time=format_time(now))
        )
        try:
            write_users_file(self._path, updated.render())
            st = os.stat(self._path)
        except OSError as exc:
            raise AuthFailed(f"OTP: could not record the use of the code: {exc}") from exc
        self._users, self._stamp = updated, _stamp(st)
