"""The console process's :class:`~ocgate.console.ConsoleBackend`: every operation is a typed
request over one of its three channels (supervisor, sec-mod, collector).

The answers come from more privileged processes, but they are still decoded with the message
union the console accepts (``CONSOLE_ACCEPTS``) and the control protocol's own parser, so a
confused peer cannot crash the console.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final, cast

from ocgate import ipc
from ocgate.config import Config
from ocgate.console._backend import (
    AdminAuthError,
    AdminIdentity,
    ConsoleError,
    OtpEnrollment,
    VpnUser,
    VpnUsers,
)
from ocgate.control import Command, Request, Response, encode_request, parse_response_untrusted
from ocgate.errors import BadControlMessage
from ocgate.ipc import messages as m

__all__ = ["ProcessBackend"]

_TIMEOUT: Final = 30.0
_ID_COMMANDS: Final = frozenset({Command.DISCONNECT_ID, Command.TERMINATE_ID, Command.SHOW_ID})
_NO_COLLECTOR: Final = json.dumps({"error": "No NVM collector runs on this gateway."}).encode()


class ProcessBackend:
    """:param supervisor: the console's channel to the supervisor (occtl requests).
    :param auth: its channel to sec-mod. :param nvm: its channel to the collector, if one runs."""

    def __init__(
        self,
        config: Config,
        *,
        supervisor: ipc.Channel,
        auth: ipc.Channel,
        nvm: ipc.Channel | None,
    ) -> None:
        self.config = config
        self._supervisor = supervisor
        self._auth = auth
        self._nvm = nvm

    async def _call(self, channel: ipc.Channel, message: m.Message) -> m.Message:
        try:
            reply = await channel.call(message, timeout=_TIMEOUT)
        except ipc.RemoteFailure as exc:
            raise ConsoleError(str(exc) or "refused") from None
        except (ipc.ChannelClosed, TimeoutError):
            raise ConsoleError("The gateway did not answer; try again.") from None
        return cast(m.Message, reply)

    async def verify_admin(
        self, username: str, password: str, otp: str, *, source: str
    ) -> AdminIdentity:
        try:
            reply = await self._auth.call(
                m.AdminLogin(username=username[:256], password=password[:4096], code=otp[:16],
                             source=source[:64]),
                timeout=_TIMEOUT,
            )  # fmt: skip
        except ipc.RemoteFailure as exc:
            raise AdminAuthError(str(exc) or "refused") from None
        except (ipc.ChannelClosed, TimeoutError):
            raise ConsoleError("The gateway did not answer; try again.") from None
        if not isinstance(reply, m.AdminVerdict):
            raise AdminAuthError("refused")
        return AdminIdentity(username=reply.username, role=reply.role)

    async def control(self, command: Command, arg: str = "") -> Response:
        value: str | int | None = arg or None
        if command in _ID_COMMANDS:
            try:
                value = int(arg)
            except ValueError:
                raise ConsoleError(f"{arg!r} is not a tunnel id.") from None
        line = encode_request(Request(cmd=command, arg=value))
        reply = await self._call(self._supervisor, m.ControlLine(line=line))
        if not isinstance(reply, m.ControlAnswer):
            raise ConsoleError("unexpected answer")
        try:
            return parse_response_untrusted(reply.line)
        except BadControlMessage as exc:
            raise ConsoleError(f"bad answer: {exc}") from None

    async def vpn_users(self) -> VpnUsers:
        reply = await self._call(self._auth, m.VpnUsersQuery())
        if not isinstance(reply, m.VpnUsersList):
            raise ConsoleError("unexpected answer")
        users = tuple(
            VpnUser(username=row.username, groups=tuple(row.groups), locked=row.locked, otp=row.otp)
            for row in reply.users
        )
        return VpnUsers(
            editable=reply.editable,
            reason=reply.reason,
            users=users,
            otp_available=reply.otp_available,
        )

    async def _edit(
        self, action: str, username: str, *, password: str = "", groups: Sequence[str] = ()
    ) -> m.Message:
        if len(username) > 256 or len(password) > 4096 or len(groups) > 64:
            raise ConsoleError("The request is too long.")
        if any(len(group) > 256 for group in groups):
            raise ConsoleError("A group name is too long.")
        message = m.VpnUserEdit(
            action=action,  # type: ignore[arg-type]
            username=username,
            password=password,
            groups=list(groups),
        )
        return await self._call(self._auth, message)

    async def add_user(self, username: str, password: str, groups: Sequence[str]) -> None:
        await self._edit("add", username, password=password, groups=groups)

    async def set_password(self, username: str, password: str) -> None:
        await self._edit("password", username, password=password)

    async def set_groups(self, username: str, groups: Sequence[str]) -> None:
        await self._edit("groups", username, groups=groups)

    async def set_locked(self, username: str, locked: bool) -> None:
        await self._edit("lock" if locked else "unlock", username)

    async def delete_user(self, username: str) -> None:
        await self._edit("delete", username)

    async def user_config(self, username: str) -> str:
        reply = await self._edit("config", username)
        if not isinstance(reply, m.UserConfigText):
            raise ConsoleError("unexpected answer")
        return reply.text

    async def enroll_otp(self, username: str) -> OtpEnrollment:
        if len(username) > 256:
            raise ConsoleError("The request is too long.")
        reply = await self._call(self._auth, m.OtpEnroll(username=username))
        if not isinstance(reply, m.OtpSecret):
            raise ConsoleError("unexpected answer")
        return OtpEnrollment(secret_b32=reply.secret, uri=reply.uri)

    async def reset_otp(self, username: str) -> None:
        await self._edit("otp-reset", username)

    async def telemetry(self, path: str, query: str) -> tuple[int, bytes]:
        if self._nvm is None:
            return 503, _NO_COLLECTOR
        if len(path) > 256 or len(query) > 4096:
            return 400, json.dumps({"error": "request too long"}).encode()
        reply = await self._call(self._nvm, m.TelemetryQuery(path=path, query=query))
        if not isinstance(reply, m.TelemetryAnswer):
            raise ConsoleError("unexpected answer")
        return reply.status, reply.body

    def config_warnings(self) -> Sequence[str]:
        return [str(warning) for warning in self.config.warnings]


_PRELOAD_GETS: Final = (
    "/login",
    "/sessions",
    "/users",
    "/telemetry",
    "/static/console.js",
    "/static/console.css",
    "/api/v1/me",
    "/api/v1/openapi.json",
    "/no-such-page",
)


async def preload_console_modules(app: object) -> None:
    """Load, while the interpreter's library is still readable (before the console drops root),
    every module the server and the pages load lazily: uvicorn's protocol and loop modules (by
    loading a configuration like the server's) and whatever the handlers import on first use (by
    running a few anonymous requests through the application, in memory)."""
    import importlib

    import uvicorn

    uvicorn.Config(app, log_config=None, lifespan="off", ws="none").load()  # type: ignore[arg-type]
    for name in ("qrcode.image.svg", "email.utils", "http.cookies", "hmac", "secrets", "hashlib"):
        importlib.import_module(name)
    for path in _PRELOAD_GETS:
        await _asgi_request(app, "GET", path)
    await _asgi_request(app, "POST", "/api/v1/logout")


async def _asgi_request(app: object, method: str, path: str) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 443),
        "state": {},
    }
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        return None

    await app(scope, receive, send)  # type: ignore[operator]
