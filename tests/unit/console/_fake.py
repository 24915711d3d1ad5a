"""An in-memory :class:`~ocgate.console.ConsoleBackend` and the app and client the tests use.

The fake keeps its state in plain dicts (VPN users, connected tunnels, bans) and records every
call, so a test can check both the HTTP answer and what reached the backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.testclient import TestClient

from ocgate.console import (
    AdminAuthError,
    AdminIdentity,
    AuditLog,
    ConsoleError,
    ConsoleSettings,
    OtpEnrollment,
    Role,
    VpnUser,
    VpnUsers,
    create_console_app,
)
from ocgate.control import (
    BanInfo,
    BansResponse,
    Command,
    ErrorResponse,
    OkResponse,
    Response,
    StatusInfo,
    StatusResponse,
    UserInfo,
    UsersResponse,
)

ADMIN = ("root", "correct horse battery", "123456")
READER = ("viewer", "reader pass phrase", "654321")
ADMIN_TOKEN = "admin-token-0123456789abcdef0123"
READ_TOKEN = "read-token-0123456789abcdef01234"
OTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
BASE = "https://console.test"


@dataclass
class FakeBackend:
    admins: dict[str, tuple[str, str, Role]] = field(
        default_factory=lambda: {
            ADMIN[0]: (ADMIN[1], ADMIN[2], "admin"),
            READER[0]: (READER[1], READER[2], "readonly"),
        }
    )
    users: dict[str, VpnUser] = field(
        default_factory=lambda: {
            "alice": VpnUser("alice", ("staff",), False, True),
            "bob": VpnUser("bob", (), True, False),
        }
    )
    tunnels: dict[int, UserInfo] = field(
        default_factory=lambda: {
            7: UserInfo(
                id=7,
                username="alice",
                groupname="staff",
                remote_ip="198.51.100.7",
                ipv4="10.10.0.2",
                ipv6="fd00::2",
                dtls_cipher="(DTLS1.2)-(ECDHE-ECDSA)-(AES-256-GCM)",
                rx=1000,
                tx=2000,
                connected_at=1_700_000_000.0,
            )
        }
    )
    bans: dict[str, BanInfo] = field(
        default_factory=lambda: {
            "192.0.2.9": BanInfo(ip="192.0.2.9", score=80, expires=1_700_000_600.0)
        }
    )
    calls: list[tuple[object, ...]] = field(default_factory=list)
    reloads: int = 0
    fail_with: Exception | None = None
    telemetry_answer: tuple[int, bytes] = (200, b'{"flows":[],"next_cursor":null}')

    async def verify_admin(
        self, username: str, password: str, otp: str, *, source: str
    ) -> AdminIdentity:
        self.calls.append(("verify_admin", username, source))
        entry = self.admins.get(username)
        if entry is None or entry[0] != password or entry[1] != otp:
            raise AdminAuthError("refused")
        return AdminIdentity(username, entry[2])

    async def control(self, command: Command, arg: str = "") -> Response:
        self.calls.append(("control", command, arg))
        if self.fail_with is not None:
            raise self.fail_with
        if command is Command.SHOW_USERS:
            return UsersResponse(tuple(self.tunnels.values()))
        if command in (Command.DISCONNECT_ID, Command.TERMINATE_ID):
            if self.tunnels.pop(int(arg), None) is None:
                return ErrorResponse(f"ID {arg} not found")
            return OkResponse()
        if command is Command.SHOW_IP_BANS:
            return BansResponse(tuple(self.bans.values()))
        if command is Command.UNBAN_IP:
            if self.bans.pop(arg, None) is None:
                return ErrorResponse(f"could not unban IP '{arg}'")
            return OkResponse()
        if command is Command.SHOW_STATUS:
            return StatusResponse(StatusInfo(server_pid=10, sec_mod_pid=11, up_since=1.0e9))
        if command is Command.RELOAD:
            self.reloads += 1
            return OkResponse()
        return ErrorResponse("unsupported")

    def _user(self, username: str) -> VpnUser:
        if username not in self.users:
            raise ConsoleError(f"no user {username!r}")
        return self.users[username]

    async def vpn_users(self) -> VpnUsers:
        return VpnUsers(True, "", tuple(self.users.values()), True)

    async def add_user(self, username: str, password: str, groups: Sequence[str]) -> None:
        self.calls.append(("add_user", username, tuple(groups)))
        if username in self.users:
            raise ConsoleError(f"user {username!r} exists")
        self.users[username] = VpnUser(username, tuple(groups), False, False)

    async def set_password(self, username: str, password: str) -> None:
        self.calls.append(("set_password", username))
        self._user(username)

    async def set_groups(self, username: str, groups: Sequence[str]) -> None:
        user = self._user(username)
        self.users[username] = VpnUser(username, tuple(groups), user.locked, user.otp)

    async def set_locked(self, username: str, locked: bool) -> None:
        user = self._user(username)
        self.users[username] = VpnUser(username, user.groups, locked, user.otp)

    async def delete_user(self, username: str) -> None:
        self._user(username)
        del self.users[username]

    async def user_config(self, username: str) -> str:
        self._user(username)
        return "route = 10.0.0.0/8\n" if username == "alice" else ""

    async def enroll_otp(self, username: str) -> OtpEnrollment:
        user = self._user(username)
        self.users[username] = VpnUser(username, user.groups, user.locked, True)
        uri = f"otpauth://totp/ocgate:{username}?secret={OTP_SECRET}&issuer=ocgate"
        return OtpEnrollment(OTP_SECRET, uri)

    async def reset_otp(self, username: str) -> None:
        user = self._user(username)
        self.users[username] = VpnUser(username, user.groups, user.locked, False)

    async def telemetry(self, path: str, query: str) -> tuple[int, bytes]:
        self.calls.append(("telemetry", path, query))
        return self.telemetry_answer

    def config_warnings(self) -> Sequence[str]:
        return ("ocgate.conf:12: unknown key 'foo'",)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    backend: FakeBackend
    clock: Clock
    lines: list[str]
    audit: AuditLog
    client: TestClient

    def login(self, who: tuple[str, str, str] = ADMIN, client: TestClient | None = None) -> str:
        """Logs in and returns the session's CSRF token."""
        http = client or self.client
        assert http.get("/login").status_code == 200
        token = http.cookies.get("__Host-ocgate-csrf")
        assert token
        response = http.post(
            "/api/v1/login",
            json={"username": who[0], "password": who[1], "otp": who[2]},
            headers={"X-CSRF-Token": token},
        )
        assert response.status_code == 200, response.text
        csrf = response.json()["csrf"]
        assert isinstance(csrf, str)
        return csrf


def make_harness(**knobs: object) -> Harness:
    backend = FakeBackend()
    clock = Clock()
    lines: list[str] = []
    audit = AuditLog(lines.append, keep=50, wall=lambda: 1_700_000_000.0)
    digests: dict[bytes, Role] = {
        hashlib.sha256(ADMIN_TOKEN.encode()).digest(): "admin",
        hashlib.sha256(READ_TOKEN.encode()).digest(): "readonly",
    }
    settings = ConsoleSettings(digests, audit, clock=clock, **knobs)  # type: ignore[arg-type]
    app = create_console_app(backend, settings)
    client = TestClient(app, base_url=BASE, follow_redirects=False)
    return Harness(backend, clock, lines, audit, client)
