"""sec-mod's side of the web console's channel: administrators' logins and the VPN user files.

The console process (``ocgate: console``) reads browsers' bytes and holds no secret; it asks
sec-mod, which already holds the password and OTP files, to check an administrator and to change
the VPN's ``plain[passwd=…,otp=…]`` files. Every request is a typed, size-bounded message
(``ipc.messages.AUTH_FROM_CONSOLE``); the blocking work (hashing, file locks, fsync) runs in a
thread. Edits are the ones ``ocgate passwd`` and ``ocgate otp`` make, with the same atomic
writes; the files keep their owner and mode.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Final

from ocgate.auth._plain import MAX_PASSWORD_BYTES, MAX_USERNAME_BYTES
from ocgate.config import Config
from ocgate.console._accounts import AdminAccounts
from ocgate.console._backend import ConsoleError
from ocgate.errors import ConfigError, OcgateError
from ocgate.ipc import messages as m

__all__ = ["ConsoleRequests"]

log = logging.getLogger("ocgate.console")

_MAX_CONFIG_BYTES: Final = 64 * 1024
_ISSUER: Final = "ocgate"


def _check_password(password: str) -> None:
    if not password:
        raise ConsoleError("The password must not be empty.")
    if len(password.encode("utf-8", "replace")) > MAX_PASSWORD_BYTES:
        raise ConsoleError(f"The password must be at most {MAX_PASSWORD_BYTES} bytes.")
    if "\x00" in password:
        raise ConsoleError("The password must not contain NUL.")


def _check_username(username: str) -> None:
    if (
        not username
        or len(username.encode("utf-8", "replace")) > MAX_USERNAME_BYTES
        or username in (".", "..")
        or any(c in username for c in ":/\\\x00\n\r\t ")
    ):
        raise ConsoleError("A user name is 1-64 bytes without ':', '/', spaces or line breaks.")


class ConsoleRequests:
    """Answers the console's requests in sec-mod, for the configuration it is given."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._admins: AdminAccounts | None = None
        self.load(config)

    def load(self, config: Config) -> None:
        """Take a (re)loaded configuration; the administrators' files are read again."""
        self._config = config
        self._admins = None
        if config.admin_passwd and config.admin_otp:
            self._admins = AdminAccounts(config.admin_passwd, config.admin_otp)

    async def handle(self, msg: object, fds: list[int]) -> m.Message | None:
        for fd in fds:
            os.close(fd)
        try:
            if isinstance(msg, m.AdminLogin):
                return await self._admin_login(msg)
            if isinstance(msg, m.VpnUsersQuery):
                return await asyncio.to_thread(self._users)
            if isinstance(msg, m.VpnUserEdit):
                return await asyncio.to_thread(self._edit, msg)
            if isinstance(msg, m.OtpEnroll):
                return await asyncio.to_thread(self._enroll, msg.username)
        except ConsoleError as exc:
            return m.Failed(message=str(exc))
        except (ConfigError, OSError, ValueError) as exc:
            log.warning("event=console-request-failed kind=%s reason=%r", type(msg).__name__,
                        str(exc))  # fmt: skip
            return m.Failed(message=f"The change failed: {exc}"[:4000])
        return m.Failed(message=f"unexpected {type(msg).__name__}")

    # Administrators ---------------------------------------------------------------------------

    async def _admin_login(self, msg: m.AdminLogin) -> m.Message:
        admins = self._admins
        if admins is None:
            return m.Failed(message="The console has no administrators configured.")
        try:
            who = await asyncio.to_thread(
                admins.verify, msg.username, msg.password, msg.code, now=self._clock(),
                source=msg.source,
            )  # fmt: skip
        except OcgateError as exc:
            return m.Failed(message=str(exc))
        return m.AdminVerdict(username=who.username, role=who.role)

    # VPN users ----------------------------------------------------------------------------------

    def _passwd(self) -> str:
        passwd = self._config.passwd_file
        if passwd is None:
            raise ConsoleError("This gateway has no plain password file to edit.")
        return passwd

    def _users(self) -> m.VpnUsersList:
        from ocgate.otp._usersfile import load_users_file
        from ocgate.passwd._file import load_passwd

        passwd, otp = self._config.passwd_file, self._config.otp_file
        if passwd is None:
            methods = ", ".join(method.name for method in self._config.auth)
            return m.VpnUsersList(
                editable=False,
                reason=f"Users are not kept in a password file here (auth: {methods}).",
                otp_available=False,
                users=[],
            )
        entries = load_passwd(passwd) if os.path.exists(passwd) else {}
        enrolled = set(load_users_file(otp).users()) if otp and os.path.exists(otp) else set()
        rows = [
            m.VpnUserRow(
                username=name, groups=list(entry.groups), locked=entry.locked, otp=name in enrolled
            )
            for name, entry in sorted(entries.items())
        ]
        return m.VpnUsersList(editable=True, reason="", otp_available=otp is not None, users=rows)

    def _edit(self, msg: m.VpnUserEdit) -> m.Message:
        from ocgate.passwd._file import PasswdEntry, update_passwd_file
        from ocgate.passwd._hash import LOCK_PREFIX, hash_password

        name = msg.username
        _check_username(name)
        if msg.action == "config":
            return m.UserConfigText(text=self._user_config(name))
        if msg.action == "otp-reset":
            self._otp_remove(name)
            log.info("event=console-edit action=otp-reset user=%r", name)
            return m.Ok()
        passwd = self._passwd()
        groups = tuple(group.strip() for group in msg.groups if group.strip())

        def change(old: PasswdEntry | None) -> PasswdEntry | None:
            if msg.action == "add":
                if old is not None:
                    raise ConsoleError(f"The user {name!r} exists already.")
                _check_password(msg.password)
                return PasswdEntry(name, groups, hash_password(msg.password))
            if old is None:
                raise ConsoleError(f"There is no user {name!r}.")
            if msg.action == "delete":
                return None
            if msg.action == "password":
                _check_password(msg.password)
                prefix = LOCK_PREFIX if old.locked else ""
                return PasswdEntry(name, old.groups, prefix + hash_password(msg.password))
            if msg.action == "groups":
                return PasswdEntry(name, groups, old.hash)
            if msg.action == "lock":
                return old if old.locked else PasswdEntry(name, old.groups, LOCK_PREFIX + old.hash)
            # unlock
            unlocked = old.hash.removeprefix(LOCK_PREFIX) if old.locked else old.hash
            return PasswdEntry(name, old.groups, unlocked)

        try:
            update_passwd_file(passwd, name, change)
        except ConfigError as exc:
            raise ConsoleError(exc.message) from None
        if msg.action == "delete":
            self._otp_remove(name, missing_ok=True)
        log.info("event=console-edit action=%s user=%r", msg.action, name)
        return m.Ok()

    def _user_config(self, name: str) -> str:
        directory = self._config.config_per_user
        if not directory:
            return ""
        try:
            with open(os.path.join(directory, name), "rb") as f:
                data = f.read(_MAX_CONFIG_BYTES + 1)
        except FileNotFoundError:
            return ""
        text = data[:_MAX_CONFIG_BYTES].decode("utf-8", "replace")
        return text + ("\n… (truncated)" if len(data) > _MAX_CONFIG_BYTES else "")

    def _otp_path(self) -> str:
        otp = self._config.otp_file
        if otp is None:
            raise ConsoleError("This gateway has no OTP file (plain[otp=FILE]).")
        return otp

    def _otp_remove(self, name: str, *, missing_ok: bool = False) -> None:
        from ocgate.otp._usersfile import load_users_file, locked_users_file, write_users_file

        if missing_ok and self._config.otp_file is None:
            return
        otp = self._otp_path()
        with locked_users_file(otp):
            users = load_users_file(otp)
            if not users.entries_for(name):
                if missing_ok:
                    return
                raise ConsoleError(f"The user {name!r} has no OTP entry.")
            write_users_file(otp, users.without_user(name).render())

    def _enroll(self, name: str) -> m.OtpSecret:
        import pyotp

        from ocgate.otp._usersfile import (
            OtpEntry,
            UsersFile,
            load_users_file,
            locked_users_file,
            write_users_file,
        )
        from ocgate.passwd._file import load_passwd

        _check_username(name)
        otp = self._otp_path()
        if name not in load_passwd(self._passwd()):
            raise ConsoleError(f"There is no user {name!r}.")
        secret = secrets.token_bytes(20)
        entry = OtpEntry(type="HOTP/T30", username=name, pin="-", hexkey=secret.hex())
        with locked_users_file(otp):
            users = load_users_file(otp) if os.path.exists(otp) else UsersFile(otp)
            write_users_file(otp, users.with_user(entry).render())
        b32 = base64.b32encode(secret).decode("ascii")
        issuer = f"{_ISSUER} {self._config.node_name}"
        uri = pyotp.TOTP(b32).provisioning_uri(name=name, issuer_name=issuer)
        log.info("event=console-edit action=otp-enroll user=%r", name)
        return m.OtpSecret(secret=b32, uri=uri)
