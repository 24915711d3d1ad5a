"""The administrators' console as a Starlette application.

Theory of operation
-------------------
Every API route goes through one wrapper (:meth:`_Console.endpoint`), in this order:

1. **Cross-site check.** A request whose ``Sec-Fetch-Site`` is neither ``same-origin`` nor
   ``none``, or whose ``Origin`` is not this console's own origin, gets 403.
2. **Ban.** A source banned for failed logins (or unknown bearer tokens) gets 403.
3. **Login** is handled apart: rate limit (429), the pre-session double-submit CSRF token
   (cookie ``__Host-ocgate-csrf`` repeated in ``X-CSRF-Token``), input checks, then the
   backend's password and TOTP check; failures count towards the source's ban.
4. **Identity.** ``Authorization: Bearer`` is looked up by digest (401 if unknown) and needs no
   cookie nor CSRF token; otherwise the ``__Host-ocgate-console`` cookie must name a live session
   (401), and a state-changing request must carry the session's token in ``X-CSRF-Token`` (403).
5. **Role.** A route with an audit ``action`` is a change: the ``readonly`` role gets 403.
6. The handler runs; every change, refused or not, is written to the audit log.

Errors are JSON ``{"error": ...}``: 400/413 for bad input, 409 with the backend's message for
:class:`~ocgate.console.ConsoleError`, 500 without detail for anything unexpected (logged).
Pages are static shells (:mod:`._pages`) that need a session cookie (else a redirect to
``/login``); every response carries the security headers of :data:`SECURITY_HEADERS`.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Final

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ocgate.console._api import API_PREFIX, ROUTES, ApiRoute, Call, ConsoleApi, read_body
from ocgate.console._audit import AuditLog
from ocgate.console._auth import (
    Identity,
    LoginGuard,
    Session,
    SessionTable,
    check_token,
    lookup_bearer,
)
from ocgate.console._backend import AdminAuthError, ConsoleBackend, ConsoleError, Role
from ocgate.console._openapi import openapi_document
from ocgate.console._pages import PAGES, login_page, render_page
from ocgate.console._validate import (
    parse_otp_untrusted,
    parse_password_untrusted,
    parse_username_untrusted,
)
from ocgate.errors import AuthFailed, BadHttpRequest

__all__ = [
    "CSRF_COOKIE",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "ConsoleSettings",
    "create_console_app",
]

SESSION_COOKIE: Final = "__Host-ocgate-console"
CSRF_COOKIE: Final = "__Host-ocgate-csrf"
CSP: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
_CSRF_REFUSED: Final = "CSRF token missing or invalid"
_STATIC: Final = {"console.js": "text/javascript", "console.css": "text/css"}
log = logging.getLogger("ocgate.console")


def _monotonic() -> float:
    import time  # noqa: TID251 -- the console is an adapter: it reads the clock for expiry.

    return time.monotonic()


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """How the console authenticates and limits its clients.

    :param token_digests: SHA-256 digests of the API bearer tokens -> role.
    :param audit: where changes are recorded.
    :param max_failures: failed logins (or unknown tokens) from one source within
        ``failure_window`` seconds that ban the source for ``ban_seconds``.
    :param session_idle: seconds without a request that end a session.
    :param session_max: seconds after login that end a session.
    :param login_rate: login attempts per source per minute (more get 429).
    :param max_sessions: sessions kept at once (the oldest is evicted).
    :param clock: monotonic seconds, injectable for tests.
    """

    token_digests: Mapping[bytes, Role] = field(repr=False)
    audit: AuditLog
    max_failures: int = 5
    failure_window: float = 300.0
    ban_seconds: float = 600.0
    session_idle: float = 1800.0
    session_max: float = 8 * 3600.0
    login_rate: int = 10
    max_sessions: int = 1024
    clock: Callable[[], float] = _monotonic


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _cookie(name: str, value: str, *, http_only: bool, max_age: int | None = None) -> str:
    parts = [f"{name}={value}", "Path=/", "Secure", "SameSite=Strict"]
    if http_only:
        parts.append("HttpOnly")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


def _source(request: Request) -> str:
    return request.client.host if request.client is not None else "-"


def _check_same_origin(request: Request) -> None:
    """:raises _Refused: the browser says the request comes from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise _Refused(403, "cross-site request refused")
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != own:
            raise _Refused(403, "cross-site request refused")


class _SecurityHeaders:
    """ASGI middleware: the security headers on every response, ``no-store`` on all but
    static assets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                headers["cache-control"] = "no-cache" if static else "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Console:
    """The app's state: sessions, login guard, API handlers."""

    def __init__(self, backend: ConsoleBackend, settings: ConsoleSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.audit = settings.audit
        self.api = ConsoleApi(backend, settings.audit)
        self.sessions = SessionTable(
            idle=settings.session_idle,
            lifetime=settings.session_max,
            capacity=settings.max_sessions,
        )
        self.guard = LoginGuard(
            max_failures=settings.max_failures,
            window=settings.failure_window,
            ban_seconds=settings.ban_seconds,
            rate=settings.login_rate,
        )
        self.openapi = json.dumps(openapi_document(), separators=(",", ":")).encode()
        package = resources.files("ocgate.console") / "static"
        self.static = {name: (package / name).read_bytes() for name in _STATIC}

    # ---------------------------------------------------------------------------------------
    # API

    def endpoint(self, route: ApiRoute) -> Callable[[Request], Awaitable[Response]]:
        async def call(request: Request) -> Response:
            try:
                return await self._dispatch(route, request)
            except _Refused as exc:
                return _error(exc.status, exc.message)
            except BadHttpRequest as exc:
                return _error(exc.status_hint, str(exc))
            except AdminAuthError:
                return _error(401, "invalid credentials")
            except ConsoleError as exc:
                return _error(409, str(exc))
            except Exception:
                log.exception("console: %s %s failed", route.method, route.path)
                return _error(500, "internal error")

        return call

    async def _dispatch(self, route: ApiRoute, request: Request) -> Response:
        source = _source(request)
        now = self.settings.clock()
        _check_same_origin(request)
        if self.guard.banned(source, now):
            raise _Refused(403, "too many failed logins from this address; try again later")
        if route.special == "login":
            return await self._login(request, source, now)
        identity = self._identify(request, route, source, now)
        if route.special == "logout":
            return self._logout(request, identity, source)
        if route.special == "me":
            csrf = identity.session.csrf if identity.session is not None else ""
            return JSONResponse(
                {"username": identity.username, "role": identity.role, "csrf": csrf}
            )
        target = " ".join(str(v) for v in request.path_params.values()) or "-"
        call = Call(request, identity, source, target)
        handler = self.api.handler(route)
        if not route.action:
            result = await handler(call)
            if isinstance(result, tuple):
                status, body = result
                return Response(body, status_code=status, media_type="application/json")
            return JSONResponse(result)
        try:
            if identity.role != "admin":
                raise _Refused(403, "read-only account")
            result = await handler(call)
        except (_Refused, BadHttpRequest, ConsoleError) as exc:
            reason = exc.message if isinstance(exc, _Refused) else str(exc)
            self._record(identity, source, route.action, call.target, f"refused: {reason}")
            raise
        except Exception:
            self._record(identity, source, route.action, call.target, "refused: internal error")
            raise
        self._record(identity, source, route.action, call.target, "ok")
        return JSONResponse(result)

    def _record(
        self, identity: Identity, source: str, action: str, target: str, outcome: str
    ) -> None:
        self.audit.record(identity.username, identity.role, source, action, target, outcome)

    def _identify(self, request: Request, route: ApiRoute, source: str, now: float) -> Identity:
        header = request.headers.get("authorization")
        if header is not None:
            try:
                return lookup_bearer(header, self.settings.token_digests)
            except AuthFailed:
                if self.guard.failure(source, now):
                    self.audit.record("-", "-", source, "source.ban", source, "ok")
                raise _Refused(401, "invalid bearer token") from None
        session = self.sessions.lookup(request.cookies.get(SESSION_COOKIE), now)
        if session is None:
            raise _Refused(401, "not logged in")
        identity = Identity(session.username, session.role, session)
        if route.mutating:
            try:
                check_token(request.headers.get("x-csrf-token"), session.csrf)
            except AuthFailed:
                action = route.action or route.special
                self._record(identity, source, action, "-", f"refused: {_CSRF_REFUSED}")
                raise _Refused(403, _CSRF_REFUSED) from None
        return identity

    async def _login(self, request: Request, source: str, now: float) -> Response:
        if not self.guard.attempt(source, now):
            return _error(429, "too many login attempts; try again later", {"retry-after": "60"})
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie:
            raise _Refused(403, _CSRF_REFUSED)
        try:
            check_token(request.headers.get("x-csrf-token"), cookie)
        except AuthFailed:
            raise _Refused(403, _CSRF_REFUSED) from None
        body = await read_body(request, ("username", "password", "otp"))
        username = parse_username_untrusted(body.get("username"))
        password = parse_password_untrusted(body.get("password"))
        try:
            otp = parse_otp_untrusted(body.get("otp"))
            admin = await self.backend.verify_admin(username, password, otp, source=source)
        except (AdminAuthError, BadHttpRequest) as exc:
            reason = "bad credentials" if isinstance(exc, AdminAuthError) else str(exc)
            self.audit.record(username, "-", source, "login", username, f"refused: {reason}")
            if self.guard.failure(source, now):
                self.audit.record(username, "-", source, "source.ban", source, "ok")
            raise _Refused(401, "invalid user name, password or code") from None
        self.guard.success(source)
        self.sessions.remove(request.cookies.get(SESSION_COOKIE))
        token, session = self.sessions.create(admin.username, admin.role, now)
        self.audit.record(admin.username, admin.role, source, "login", admin.username, "ok")
        response = JSONResponse(
            {"username": admin.username, "role": admin.role, "csrf": session.csrf}
        )
        response.headers.append(
            "set-cookie",
            _cookie(SESSION_COOKIE, token, http_only=True, max_age=int(self.settings.session_max)),
        )
        response.headers.append("set-cookie", _cookie(CSRF_COOKIE, "", http_only=False, max_age=0))
        return response

    def _logout(self, request: Request, identity: Identity, source: str) -> Response:
        response = JSONResponse({"ok": True})
        if identity.session is not None:
            self.sessions.remove(request.cookies.get(SESSION_COOKIE))
            self._record(identity, source, "logout", identity.username, "ok")
            response.headers.append(
                "set-cookie", _cookie(SESSION_COOKIE, "", http_only=True, max_age=0)
            )
        return response

    # ---------------------------------------------------------------------------------------
    # Pages and assets

    def _page_session(self, request: Request) -> Session | None:
        return self.sessions.lookup(request.cookies.get(SESSION_COOKIE), self.settings.clock())

    async def login(self, request: Request) -> Response:
        if self._page_session(request) is not None:
            return RedirectResponse("/sessions", status_code=303)
        csrf = request.cookies.get(CSRF_COOKIE) or ""
        if not (32 <= len(csrf) <= 64 and csrf.replace("-", "").replace("_", "").isalnum()):
            csrf = secrets.token_urlsafe(32)
        response = HTMLResponse(login_page(csrf))
        response.headers.append("set-cookie", _cookie(CSRF_COOKIE, csrf, http_only=False))
        return response

    def page(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        async def render(request: Request) -> Response:
            session = self._page_session(request)
            if session is None:
                return RedirectResponse("/login", status_code=303)
            user = ""
            if name == "user":
                try:
                    user = parse_username_untrusted(request.path_params["name"], "name")
                except BadHttpRequest:
                    return HTMLResponse("<!DOCTYPE html><title>Bad name</title>", 404)
            html = render_page(
                name, username=session.username, role=session.role, csrf=session.csrf, name=user
            )
            return HTMLResponse(html)

        return render

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/sessions", status_code=303)

    async def asset(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        if name not in self.static:
            return _error(404, "not found")
        return Response(self.static[name], media_type=_STATIC[name])

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # Registered for this class only.
    return _error(exc.status_code, str(exc.detail), exc.headers)


def create_console_app(backend: ConsoleBackend, settings: ConsoleSettings) -> Starlette:
    """The console application.

    :param backend: what the console asks for every check and change.
    :param settings: bearer tokens, audit log, limits.
    """
    console = _Console(backend, settings)
    routes: list[BaseRoute] = [
        Route("/", console.root, methods=["GET"]),
        Route("/login", console.login, methods=["GET"]),
        Route("/static/{name}", console.asset, methods=["GET"]),
        Route(f"{API_PREFIX}/openapi.json", console.openapi_json, methods=["GET"]),
    ]
    routes += [
        Route("/users/{name}" if name == "user" else f"/{name}", console.page(name))
        for name in PAGES
    ]
    routes += [
        Route(API_PREFIX + r.path, console.endpoint(r), methods=[r.method], name=r.handler or None)
        for r in ROUTES
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders)],
        exception_handlers={HTTPException: _http_error},
    )
