"""What the web console needs from the rest of the gateway, as one interface.

The console process reads bytes from administrators' browsers, so it holds no secret and edits
no file itself: it runs as ``run-as-user`` without capabilities, and every check and change goes
to the process that owns it (:class:`ConsoleBackend`):

* the **supervisor** answers occtl requests (sessions, bans, status, disconnect, unban, reload),
  exactly as on the control socket;
* **sec-mod** checks administrators' passwords and TOTP codes, and edits the VPN password and OTP
  files (it already holds them);
* the **NVM collector** answers telemetry queries with its API's own handlers.

The web application (:func:`ocgate.console.create_console_app`) is written against this
interface only; the console process implements it over IPC channels, and the unit tests with an
in-memory fake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ocgate.control import Command, Response
from ocgate.errors import OcgateError

__all__ = [
    "AdminAuthError",
    "AdminIdentity",
    "ConsoleBackend",
    "ConsoleError",
    "OtpEnrollment",
    "Role",
    "VpnUser",
    "VpnUsers",
]

Role = Literal["admin", "readonly"]
"""``admin`` may change things; ``readonly`` may only look."""


class ConsoleError(OcgateError):
    """A console request the owning process refused; the message is safe to show the admin."""


class AdminAuthError(ConsoleError):
    """An administrator's credentials were refused (unknown, wrong and locked look the same)."""


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    username: str
    role: Role


@dataclass(frozen=True, slots=True)
class VpnUser:
    """One line of the VPN password file (``ocgate passwd``'s file)."""

    username: str
    groups: tuple[str, ...]
    locked: bool
    otp: bool
    """Whether the OTP file has an entry for the user."""


@dataclass(frozen=True, slots=True)
class VpnUsers:
    editable: bool
    """False when the gateway has no plain password file to edit (RADIUS, certificates only)."""
    reason: str
    """Why not editable (empty when editable)."""
    users: tuple[VpnUser, ...]
    otp_available: bool
    """Whether an OTP file is configured, so enrollment is possible."""


@dataclass(frozen=True, slots=True)
class OtpEnrollment:
    """A new TOTP secret: shown once, never again retrievable through the console."""

    secret_b32: str
    uri: str
    """``otpauth://totp/...`` for authenticator apps."""

    def __repr__(self) -> str:
        return "OtpEnrollment(secret_b32=<redacted>, uri=<redacted>)"


class ConsoleBackend(Protocol):
    """Every operation raises :class:`ConsoleError` (with a message for the admin) on refusal."""

    async def verify_admin(
        self, username: str, password: str, otp: str, *, source: str
    ) -> AdminIdentity:
        """Check an administrator's password and TOTP code. :raises AdminAuthError:"""

    async def control(self, command: Command, arg: str = "") -> Response:
        """Run one occtl command (not ``stop``, ``drain`` or ``show events``) and return the
        control protocol's response (``UsersResponse``, ``OkResponse``, ``ErrorResponse``...)."""

    async def vpn_users(self) -> VpnUsers: ...

    async def add_user(self, username: str, password: str, groups: Sequence[str]) -> None: ...

    async def set_password(self, username: str, password: str) -> None: ...

    async def set_groups(self, username: str, groups: Sequence[str]) -> None: ...

    async def set_locked(self, username: str, locked: bool) -> None: ...

    async def delete_user(self, username: str) -> None:
        """Remove the user's password line and OTP entry."""

    async def user_config(self, username: str) -> str:
        """The user's per-user configuration file (``config-per-user``), or ``""``."""

    async def enroll_otp(self, username: str) -> OtpEnrollment:
        """Give the user a new TOTP secret (replacing any), returned once."""

    async def reset_otp(self, username: str) -> None:
        """Remove the user's OTP entry."""

    async def telemetry(self, path: str, query: str) -> tuple[int, bytes]:
        """Run the NVM API's ``GET /api/v1/{path}?{query}`` in the collector: (status, JSON body).
        Status 503 with ``{"error": ...}`` when no collector runs."""

    def config_warnings(self) -> Sequence[str]:
        """Warnings the configuration gave at the last load (shown on the server page)."""
