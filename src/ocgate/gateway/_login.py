"""The login dialog of one TLS connection: from HTTP requests to a session cookie.

Theory of operation (anyconnect-protocol.md §2.3, §3; ocserv ``src/worker-auth.c``):

* ``GET``/``POST`` on ``/``, ``/auth``, ``/VPN`` (and, while unauthenticated, any other POST path)
  run the
  AggAuth dialog. XML clients (``X-Aggregate-Auth: 1`` or an XML body) get ``config-auth``
  documents; other
  clients get the old ``<auth id="main">`` layout and may POST urlencoded ``username=&password=``.
* A failed login answers with the same form plus an error, on the same connection; the third failure
  on a
  connection gets ``401`` and a close (ocserv allows three tries per TLS session). Unknown user,
  locked
  user, empty and wrong password produce byte-identical replies; only the log says which it was.
* Success creates a server-side session and returns its cookie both as ``Set-Cookie: webvpn=`` and
  as
  ``<session-token>`` (openconnect prefers the latter, Cisco clients read only it).
* A ``logout`` document or ``GET /logout`` with the cookie ends the session.

The dialog does no I/O itself: the password check is an injected coroutine, so a slow backend
(RADIUS,
later) never blocks the event loop, and time comes from an injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ocgate.aggauth import (
    AuthReply,
    FormInput,
    InitRequest,
    LoginForm,
    LogoutRequest,
    parse_client_message_untrusted,
    render_auth_request,
    render_complete,
    render_legacy_form,
    render_legacy_success,
)
from ocgate.auth import AuthResult, select_group
from ocgate.config import Config
from ocgate.errors import AuthFailed, BadAuthXml, InvalidCookie
from ocgate.http import Request, Response
from ocgate.session import Session, SessionStore
from ocgate.tls import ServerCredentials

__all__ = ["DOWNLOADER_STUBS", "LoginDialog", "LoginServices"]

log = logging.getLogger("ocgate.auth")

MAX_TRIES = 3
_AUTH_PATHS = frozenset({"/", "/auth", "/VPN"})
_XML_HEADERS = (("Content-Type", "text/xml; charset=utf-8"), ("X-Transcend-Version", "1"))
_PROMPT = "Please enter your username and password."
_FAILED = "Login failed."

# AnyConnect fetches these before and after connecting; answering them keeps it from trying to
# download and "update" itself (anyconnect-protocol.md §2.3).
DOWNLOADER_STUBS: dict[str, tuple[str, bytes]] = {
    "/1/binaries/update.txt": ("text/plain", b"0,0,0000\n"),
    "/1/index.html": ("text/html", b"<html></html>\n"),
    "/1/Linux": ("text/html", b"<html></html>\n"),
    "/1/Linux_64": ("text/html", b"<html></html>\n"),
    "/1/Windows": ("text/html", b"<html></html>\n"),
    "/1/Windows_ARM64": ("text/html", b"<html></html>\n"),
    "/1/Darwin_i386": ("text/html", b"<html></html>\n"),
    "/1/binaries/vpndownloader.sh": ("text/plain", b"#!/bin/sh\nexit 0\n"),
    "/VPNManifest.xml": ("text/xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<vpn rev="1.0"/>\n'),
    "/1/VPNManifest.xml": (
        "text/xml",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<vpn rev="1.0"/>\n',
    ),
    "/+CSCOT+/translation-table": ("text/xml", b""),
    "/+CSCOT+/oem-customization": ("text/xml", b""),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginServices:
    """What the dialog needs from the gateway, shared by every connection."""

    config: Config
    authenticate: Callable[[str, str], Awaitable[AuthResult]]
    store: SessionStore
    credentials: ServerCredentials
    clock: Callable[[], float]
    count_connected: Callable[[str], int]
    """Number of live tunnels of a user (for ``max-same-clients``)."""
    end_session: Callable[[Session, str], None]
    """Ends a session for good: closes its tunnel, releases its leases, forgets its cookie."""
    on_login: Callable[[str, str], None] = lambda result, reason: None
    """Told ``(result, reason)`` of every login attempt (metrics)."""


class LoginDialog:
    """Answers the pre-tunnel requests of one TLS connection."""

    def __init__(self, services: LoginServices, *, remote_addr: str) -> None:
        self._services = services
        self._remote = remote_addr
        self._failures = 0

    async def handle(self, request: Request) -> Response:
        """Answer ``request`` (anything but ``CONNECT``)."""
        path = request.target.split("?", 1)[0]
        if request.method == "GET":
            if path in _AUTH_PATHS:
                return self._form(request, error=None)
            if path == "/logout":
                self._logout_by_cookie(request)
                return Response(200, "OK", (("Content-Type", "text/html"),), b"<html></html>\n")
            stub = DOWNLOADER_STUBS.get(path)
            if stub is not None:
                return Response(200, "OK", (("Content-Type", stub[0]),), stub[1])
            return Response(404, "Not Found", (), b"", close=True)
        if request.method == "POST":
            return await self._post(request)
        return Response(
            405, "Method Not Allowed", (("Allow", "GET, POST, CONNECT"),), b"", close=True
        )

    async def _post(self, request: Request) -> Response:
        try:
            message = parse_client_message_untrusted(request.body, request.header("content-type"))
        except BadAuthXml as exc:
            log.warning("event=bad-auth-body remote=%s reason=%r", self._remote, str(exc))
            return Response(400, "Bad Request", (), b"", close=True)
        if isinstance(message, LogoutRequest):
            return self._logout(message)
        if isinstance(message, InitRequest):
            return self._form(request, error=None)
        if not message.username and message.password is None:
            return self._form(request, error=None)
        return await self._login(request, message)

    async def _login(self, request: Request, reply: AuthReply) -> Response:
        services = self._services
        username = reply.username or ""
        try:
            result = await services.authenticate(username, reply.password or "")
            group = select_group(result, reply.group_select)
            limit = services.config.max_same_clients
            if limit and services.count_connected(result.username) >= limit:
                raise AuthFailed(f"max-same-clients ({limit}) reached")
        except AuthFailed as exc:
            self._failures += 1
            log.warning(
                "event=login-failed user=%r remote=%s reason=%r try=%d",
                username,
                self._remote,
                str(exc),
                self._failures,
            )
            services.on_login("failure", _reason_label(str(exc)))
            if self._failures >= MAX_TRIES:
                return Response(401, "Authentication failed", (), b"", close=True)
            return self._form(request, error=_FAILED)
        services.on_login("success", "password")
        return self._complete(request, result, group)

    def _complete(self, request: Request, result: AuthResult, group: str | None) -> Response:
        services = self._services
        config = services.config
        cookie, session = services.store.create(
            username=result.username,
            groups=result.groups,
            group=group,
            now=services.clock(),
            user_agent=request.header("user-agent") or "",
            remote_addr=self._remote,
            cookie_timeout=config.cookie_timeout,
            session_timeout=config.session_timeout,
        )
        log.info(
            "event=login user=%r group=%r remote=%s session=%s",
            result.username,
            group,
            self._remote,
            session.sid,
        )
        sha1 = services.credentials.sha1_hex
        cookies = (
            ("Set-Cookie", f"webvpn={cookie}; Secure; HttpOnly"),
            (
                "Set-Cookie",
                "webvpnc=; expires=Thu, 01 Jan 1970 22:00:00 GMT; path=/; Secure; HttpOnly",
            ),
            ("Set-Cookie", f"webvpnc=bu:/&p:t&iu:1/&sh:{sha1}; path=/; Secure; HttpOnly"),
        )
        if _is_xml(request):
            body = render_complete(
                session_token=cookie,
                session_id=session.sid,
                banner=config.banner,
                server_cert_hash=sha1,
            )
        else:
            body = render_legacy_success()
        return Response(200, "OK", (*_XML_HEADERS, *cookies), body)

    def _form(self, request: Request, *, error: str | None) -> Response:
        config = self._services.config
        form = LoginForm(
            message=_PROMPT,
            error=error,
            banner=config.pre_login_banner,
            inputs=(
                FormInput(type="text", name="username", label="Username:", value=None),
                FormInput(type="password", name="password", label="Password:", value=None),
            ),
        )
        body = render_auth_request(form=form) if _is_xml(request) else render_legacy_form(form)
        return Response(200, "OK", _XML_HEADERS, body)

    def _logout(self, message: LogoutRequest) -> Response:
        if message.session_token:
            self._end_session(message.session_token)
        return Response(200, "OK", _XML_HEADERS, b"")

    def _logout_by_cookie(self, request: Request) -> None:
        cookie = request.cookies().get("webvpn")
        if cookie:
            self._end_session(cookie)

    def _end_session(self, cookie: str) -> None:
        store = self._services.store
        try:
            session = store.lookup(cookie, self._services.clock())
        except InvalidCookie:
            return
        log.info("event=logout user=%r session=%s", session.username, session.sid)
        self._services.end_session(session, "user logout")


_REASONS = (
    "unknown user",
    "locked",
    "wrong password",
    "empty password",
    "no password set",
    "group not allowed",
    "max-same-clients",
)


def _reason_label(message: str) -> str:
    """A bounded label for metrics: one of the backend's fixed reasons, else ``other``."""
    for reason in _REASONS:
        if message.startswith(reason):
            return reason.replace(" ", "_").replace("-", "_")
    return "other"


def _is_xml(request: Request) -> bool:
    if request.header("x-aggregate-auth") == "1":
        return True
    return request.body.lstrip()[:1] == b"<"
