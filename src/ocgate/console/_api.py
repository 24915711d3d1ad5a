"""The console's JSON API: its route table and the handlers that call the backend.

Each handler takes a :class:`Call` (the request, who asks, and the audit ``target``) and returns
the JSON value of a 200 answer. Handlers validate every input with :mod:`._validate` before the
backend sees it; the backend's :class:`~ocgate.console.ConsoleError` (and a control
``ErrorResponse``, turned into one) becomes a 409 at the boundary in :mod:`._app`, which also
authenticates, enforces roles and CSRF, and audits every route whose ``action`` is set.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from starlette.requests import Request

from ocgate.console._audit import AuditLog
from ocgate.console._auth import Identity
from ocgate.console._backend import ConsoleBackend, ConsoleError
from ocgate.console._qr import qr_svg
from ocgate.console._validate import (
    MAX_BODY_BYTES,
    parse_body_untrusted,
    parse_groups_untrusted,
    parse_ip_untrusted,
    parse_password_untrusted,
    parse_session_id_untrusted,
    parse_username_untrusted,
)
from ocgate.control import (
    BansResponse,
    Command,
    ErrorResponse,
    OkResponse,
    Response,
    StatusResponse,
    UsersResponse,
)
from ocgate.errors import BadHttpRequest

__all__ = ["API_PREFIX", "ROUTES", "ApiRoute", "Call", "ConsoleApi", "read_body"]

API_PREFIX: Final = "/api/v1"
_TELEMETRY_PATH: Final = re.compile(
    r"flows|endpoints|endpoints/[0-9a-fA-F]{1,128}/interfaces|top|timeline|exporters"
)
_MAX_QUERY: Final = 2048


@dataclass(slots=True)
class Call:
    """One API request as the handlers see it."""

    request: Request
    identity: Identity
    source: str
    target: str


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One API route.

    :param action: the audit action of a change (admin role, CSRF, audited); empty for reads.
    :param special: ``login``, ``logout`` or ``me``: handled by the app itself.
    """

    method: str
    path: str
    handler: str
    summary: str
    action: str = ""
    body: tuple[str, ...] = ()
    special: str = ""

    @property
    def mutating(self) -> bool:
        return self.method not in ("GET", "HEAD")


ROUTES: Final[tuple[ApiRoute, ...]] = (
    ApiRoute("POST", "/login", "", "Log in", body=("username", "password", "otp"), special="login"),
    ApiRoute("POST", "/logout", "", "Log out", special="logout"),
    ApiRoute("GET", "/me", "", "Who is logged in, and the session's CSRF token", special="me"),
    ApiRoute("GET", "/sessions", "sessions", "Connected users (occtl show users)"),
    ApiRoute(
        "POST",
        "/sessions/{id}/disconnect",
        "disconnect",
        "Disconnect a tunnel",
        "session.disconnect",
    ),
    ApiRoute(
        "POST",
        "/sessions/{id}/terminate",
        "terminate",
        "Disconnect a tunnel and invalidate its session cookie",
        "session.terminate",
    ),
    ApiRoute("GET", "/users", "users", "VPN users of the password file"),
    ApiRoute(
        "POST",
        "/users",
        "add_user",
        "Add a VPN user",
        "user.add",
        ("username", "password", "groups"),
    ),
    ApiRoute(
        "PUT",
        "/users/{name}/password",
        "set_password",
        "Set a user's password",
        "user.password",
        ("password",),
    ),
    ApiRoute(
        "PUT",
        "/users/{name}/groups",
        "set_groups",
        "Set a user's groups",
        "user.groups",
        ("groups",),
    ),
    ApiRoute("POST", "/users/{name}/lock", "lock", "Lock a user", "user.lock"),
    ApiRoute("POST", "/users/{name}/unlock", "unlock", "Unlock a user", "user.unlock"),
    ApiRoute(
        "DELETE", "/users/{name}", "delete_user", "Delete a user (and its OTP entry)", "user.delete"
    ),
    ApiRoute("GET", "/users/{name}/config", "user_config", "A user's per-user configuration"),
    ApiRoute(
        "POST",
        "/users/{name}/otp",
        "enroll_otp",
        "Give a user a new TOTP secret (shown once)",
        "user.otp.enroll",
    ),
    ApiRoute(
        "DELETE", "/users/{name}/otp", "reset_otp", "Remove a user's OTP entry", "user.otp.reset"
    ),
    ApiRoute("GET", "/bans", "bans", "Banned and scored addresses (occtl show ip bans)"),
    ApiRoute("DELETE", "/bans/{ip}", "unban", "Unban an address", "ban.remove"),
    ApiRoute("GET", "/server", "server", "Server status and configuration warnings"),
    ApiRoute("POST", "/server/reload", "reload", "Reload the configuration", "server.reload"),
    ApiRoute("GET", "/audit", "audit", "The recent audit log"),
    ApiRoute(
        "GET",
        "/telemetry/{path:path}",
        "telemetry",
        "The NVM API's GET /api/v1/{path} (flows, endpoints, "
        "endpoints/{udid}/interfaces, top, timeline, exporters)",
    ),
)


async def read_body(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The request's JSON object body (bounded while it is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise BadHttpRequest("request body too large", status_hint=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadHttpRequest("request body too large", status_hint=413)
        chunks.append(chunk)
    return parse_body_untrusted(b"".join(chunks), allowed)


def _ok(response: Response) -> dict[str, Any]:
    if isinstance(response, ErrorResponse):
        raise ConsoleError(response.message)
    if not isinstance(response, OkResponse):
        raise TypeError(f"unexpected control response {type(response).__name__}")
    return {"ok": True}


def _name(call: Call) -> str:
    return parse_username_untrusted(call.request.path_params["name"], "name")


class ConsoleApi:
    """The handlers of :data:`ROUTES`, bound to one backend and audit log."""

    def __init__(self, backend: ConsoleBackend, audit: AuditLog) -> None:
        self.backend = backend
        self.audit_log = audit

    def handler(self, route: ApiRoute) -> Callable[[Call], Awaitable[Any]]:
        method: Callable[[Call], Awaitable[Any]] = getattr(self, route.handler)
        return method

    async def sessions(self, call: Call) -> Any:
        response = await self.backend.control(Command.SHOW_USERS)
        if isinstance(response, ErrorResponse):
            raise ConsoleError(response.message)
        if not isinstance(response, UsersResponse):
            raise TypeError(f"unexpected control response {type(response).__name__}")
        return {"users": [dataclasses.asdict(user) for user in response.users]}

    async def _connection(self, call: Call, command: Command) -> Any:
        conn = parse_session_id_untrusted(str(call.request.path_params["id"]))
        call.target = f"id {conn}"
        return _ok(await self.backend.control(command, conn))

    async def disconnect(self, call: Call) -> Any:
        return await self._connection(call, Command.DISCONNECT_ID)

    async def terminate(self, call: Call) -> Any:
        return await self._connection(call, Command.TERMINATE_ID)

    async def users(self, call: Call) -> Any:
        result = await self.backend.vpn_users()
        return {
            "editable": result.editable,
            "reason": result.reason,
            "otp_available": result.otp_available,
            "users": [
                {
                    "username": user.username,
                    "groups": list(user.groups),
                    "locked": user.locked,
                    "otp": user.otp,
                }
                for user in result.users
            ],
        }

    async def add_user(self, call: Call) -> Any:
        body = await read_body(call.request, ("username", "password", "groups"))
        name = parse_username_untrusted(body.get("username"))
        call.target = name
        password = parse_password_untrusted(body.get("password"))
        groups = parse_groups_untrusted(body.get("groups", []))
        call.target = f"{name} groups={','.join(groups)}"
        await self.backend.add_user(name, password, groups)
        return {"ok": True}

    async def set_password(self, call: Call) -> Any:
        name = _name(call)
        body = await read_body(call.request, ("password",))
        await self.backend.set_password(name, parse_password_untrusted(body.get("password")))
        return {"ok": True}

    async def set_groups(self, call: Call) -> Any:
        name = _name(call)
        body = await read_body(call.request, ("groups",))
        groups = parse_groups_untrusted(body.get("groups"))
        call.target = f"{name} groups={','.join(groups)}"
        await self.backend.set_groups(name, groups)
        return {"ok": True}

    async def lock(self, call: Call) -> Any:
        await self.backend.set_locked(_name(call), True)
        return {"ok": True}

    async def unlock(self, call: Call) -> Any:
        await self.backend.set_locked(_name(call), False)
        return {"ok": True}

    async def delete_user(self, call: Call) -> Any:
        await self.backend.delete_user(_name(call))
        return {"ok": True}

    async def user_config(self, call: Call) -> Any:
        return {"text": await self.backend.user_config(_name(call))}

    async def enroll_otp(self, call: Call) -> Any:
        enrollment = await self.backend.enroll_otp(_name(call))
        return {
            "secret": enrollment.secret_b32,
            "uri": enrollment.uri,
            "qr_svg": qr_svg(enrollment.uri),
        }

    async def reset_otp(self, call: Call) -> Any:
        await self.backend.reset_otp(_name(call))
        return {"ok": True}

    async def bans(self, call: Call) -> Any:
        response = await self.backend.control(Command.SHOW_IP_BANS)
        if isinstance(response, ErrorResponse):
            raise ConsoleError(response.message)
        if not isinstance(response, BansResponse):
            raise TypeError(f"unexpected control response {type(response).__name__}")
        return {"bans": [dataclasses.asdict(ban) for ban in response.bans]}

    async def unban(self, call: Call) -> Any:
        ip = parse_ip_untrusted(str(call.request.path_params["ip"]))
        call.target = ip
        return _ok(await self.backend.control(Command.UNBAN_IP, ip))

    async def server(self, call: Call) -> Any:
        response = await self.backend.control(Command.SHOW_STATUS)
        if isinstance(response, ErrorResponse):
            raise ConsoleError(response.message)
        if not isinstance(response, StatusResponse):
            raise TypeError(f"unexpected control response {type(response).__name__}")
        return {
            "status": dataclasses.asdict(response.status),
            "warnings": list(self.backend.config_warnings()),
        }

    async def reload(self, call: Call) -> Any:
        call.target = "configuration"
        return _ok(await self.backend.control(Command.RELOAD))

    async def audit(self, call: Call) -> Any:
        return {"entries": self.audit_log.entries()}

    async def telemetry(self, call: Call) -> tuple[int, bytes]:
        path = str(call.request.path_params["path"])
        if _TELEMETRY_PATH.fullmatch(path) is None:
            raise BadHttpRequest("telemetry: no such query", status_hint=404)
        query = call.request.url.query
        if len(query) > _MAX_QUERY:
            raise BadHttpRequest("telemetry: query too long")
        return await self.backend.telemetry(path, query)
