"""The console's administrator accounts: ``admin-passwd`` and ``admin-otp``, checked in sec-mod.

Theory of operation
-------------------
Administrators live in two files with the formats the VPN's users already have, so the same tools
manage them (``ocgate passwd -c FILE -g admin NAME``, ``ocgate otp``):

* ``admin-passwd`` is an ocpasswd file whose group field is the account's **role**: ``admin``
  (may change things) or ``readonly`` (may only look). Exactly one role per account; anything
  else is a configuration error naming the file and line.
* ``admin-otp`` is an OTP users file; every administrator needs a TOTP entry there (a console
  login is always password *and* code). The code's use is recorded in the file, so a code is
  accepted once.

Both files are read by sec-mod only (the console process, which reads browsers' bytes, never
sees a hash or a seed): :class:`AdminAccounts` answers one login at a time and raises
:class:`~ocgate.console.AdminAuthError` with one message for every refusal (unknown, locked,
wrong password, wrong code look the same to the browser; the log line says which).
"""

from __future__ import annotations

import logging
from typing import Final, cast

from ocgate.auth._plain import PlainBackend
from ocgate.console._backend import AdminAuthError, AdminIdentity, Role
from ocgate.errors import AuthFailed, ConfigError
from ocgate.otp._usersfile import OtpKind, load_users_file
from ocgate.otp._verify import OtpVerifier
from ocgate.passwd._file import load_passwd

__all__ = ["ROLES", "AdminAccounts", "check_admin_files"]

log = logging.getLogger("ocgate.console")

ROLES: Final = ("admin", "readonly")
REFUSED: Final = "Wrong user name, password or code."
_ROLE_FORM: Final = "NAME:admin:HASH or NAME:readonly:HASH (ocgate passwd -c FILE -g admin NAME)"


def _line_of(path: str, username: str) -> int | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if line.split(":", 1)[0] == username:
                    return number
    except OSError:
        return None
    return None


def check_admin_files(passwd_path: str, otp_path: str) -> dict[str, Role]:
    """Read both files and return each administrator's role.

    :raises ConfigError: a file is unreadable or malformed, an account has no single role, or an
        account has no TOTP entry (naming the file and, where there is one, the line).
    """
    entries = load_passwd(passwd_path)
    roles: dict[str, Role] = {}
    for name, entry in entries.items():
        if len(entry.groups) != 1 or entry.groups[0] not in ROLES:
            raise ConfigError(
                f"administrator {name!r} has groups {','.join(entry.groups) or '(none)'}",
                file=passwd_path,
                line=_line_of(passwd_path, name),
                key="admin-passwd",
                expected=_ROLE_FORM,
            )
        roles[name] = cast(Role, entry.groups[0])
    otp = load_users_file(otp_path)
    for name in roles:
        found = otp.entries_for(name)
        if not found or found[0][1].kind is not OtpKind.TOTP:
            raise ConfigError(
                f"administrator {name!r} has no TOTP entry",
                file=otp_path,
                key="admin-otp",
                expected=f"a line 'HOTP/T30 {name} - HEXSECRET' (ocgate otp)",
            )
    return roles


class AdminAccounts:
    """Checks administrators' logins; blocking (hash, file lock): call it from a thread.

    :raises ConfigError: the files are unusable (see :func:`check_admin_files`).
    """

    def __init__(self, passwd_path: str, otp_path: str) -> None:
        check_admin_files(passwd_path, otp_path)
        self._passwd_path = passwd_path
        self._otp_path = otp_path
        self._passwords = PlainBackend(passwd_path)
        self._codes = OtpVerifier(otp_path)

    def __repr__(self) -> str:
        return f"AdminAccounts({self._passwd_path!r}, {self._otp_path!r})"

    def verify(
        self, username: str, password: str, code: str, *, now: float, source: str
    ) -> AdminIdentity:
        """Accept a password and a TOTP code (once).

        :raises AdminAuthError: refused, for whatever reason (logged, never shown).
        """
        try:
            result = self._passwords.authenticate(username, password)
            if len(result.groups) != 1 or result.groups[0] not in ROLES:
                raise AuthFailed("no single role")
            self._codes.verify(username, code, now)
        except AuthFailed as exc:
            log.warning(
                "event=console-login-refused user=%r source=%s reason=%r", username[:64], source,
                str(exc),
            )  # fmt: skip
            raise AdminAuthError(REFUSED) from None
        log.info("event=console-login user=%r role=%s source=%s", username, result.groups[0],
                 source)  # fmt: skip
        return AdminIdentity(username=result.username, role=cast(Role, result.groups[0]))
