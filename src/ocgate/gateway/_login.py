"""The login dialog of one TLS connection: from HTTP requests to a session cookie.

Theory of operation (anyconnect-protocol.md §2.3, §3; ocserv ``src/worker-auth.c``):

* ``GET``/``POST`` on ``/``, ``/auth``, ``/VPN`` (and, while unauthenticated, any other POST path)
  run the AggAuth dialog. XML clients (``X-Aggregate-Auth: 1`` or an XML body) get ``config-auth``
  documents; other clients get the old ``<auth id="main">`` layout and may POST urlencoded
  ``username=&password=``.
* Which form comes next is decided by :class:`~ocgate.gateway._authflow.LoginFlow` (password,
  OTP, RADIUS challenge, client certificate). A ``GET`` or an ``init`` restarts the flow; an
  ``init`` with ``<group-select>`` (openconnect sends one the first time it sees a group list)
  is answered with the form again and the choice remembered.
* A failed step answers with a form plus an error, on the same connection; the third failure on a
  connection gets ``401`` and a close (ocserv allows three tries per TLS session). Unknown user,
  locked user, empty and wrong password produce byte-identical replies; only the log says which.
  Each failure adds ``ban-points-wrong-password`` to the client address; a banned address is
  refused even with the right password.
* Success checks the user and group names (one safe path component each), builds the session's
  settings (per-group and per-user files, RADIUS attributes), creates a server-side session and
  returns its cookie both as ``Set-Cookie: webvpn=`` and as ``<session-token>``.
* A ``logout`` document or ``GET /logout`` with the cookie ends the session.

The dialog does no I/O itself: the backends are injected coroutines, so a slow backend (RADIUS)
never blocks the event loop, and time comes from an injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
from ocgate.auth import AuthResult, LoginContext, select_group
from ocgate.certauth import check_cert_group
from ocgate.config import Config, check_name_component
from ocgate.errors import AuthFailed, BadAuthXml, ConfigError, InvalidCookie
from ocgate.gateway._authflow import Accepted, LoginBackends, LoginFlow, Prompt, Step
from ocgate.gateway._groups import GroupMenu
from ocgate.gateway._settings import SessionSettings, session_settings
from ocgate.http import Request, Response
from ocgate.session import Session, SessionStore
from ocgate.tls import ServerCredentials

__all__ = ["DOWNLOADER_STUBS", "LoginDialog", "LoginServices"]

log = logging.getLogger("ocgate.auth")

MAX_TRIES = 3
_AUTH_PATHS = frozenset({"/", "/auth", "/VPN"})
_XML_HEADERS = (("Content-Type", "text/xml; charset=utf-8"), ("X-Transcend-Version", "1"))
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


def _never(_address: str) -> bool:
    return False


def _ignore(*_args: object) -> None:
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginServices:
    """What the dialog needs from the gateway, shared by every connection."""

    config: Config
    backends: LoginBackends
    store: SessionStore
    credentials: ServerCredentials
    clock: Callable[[], float]
    count_connected: Callable[[str], int]
    """Number of live tunnels of a user (for ``max-same-clients``)."""
    end_session: Callable[[Session, str], None]
    """Ends a session for good: closes its tunnel, releases its leases, forgets its cookie."""
    on_login: Callable[[str, str], None] = lambda result, reason: None
    """Told ``(result, reason)`` of every login attempt (metrics)."""
    groups: GroupMenu | None = None
    """The ``group_list`` of the form (``None``: no list)."""
    is_banned: Callable[[str], bool] = field(default=_never)
    """Whether a client address is banned now."""
    on_auth_failure: Callable[[str], None] = field(default=_ignore)
    """Told the client address of every refused credential (ban points)."""


class LoginDialog:
    """Answers the pre-tunnel requests of one TLS connection.

    :param services: the gateway's shared services.
    :param remote_addr: the client's address.
    :param local_addr: the address the client connected to (RADIUS NAS-IP-Address).
    :param peer_chain: returns the client's certificate chain (DER, leaf first; empty if none).
    """

    def __init__(
        self,
        services: LoginServices,
        *,
        remote_addr: str,
        local_addr: str | None = None,
        peer_chain: Callable[[], Sequence[bytes]] = tuple,
    ) -> None:
        self._services = services
        self._remote = remote_addr
        self._failures = 0
        self._group: str | None = None
        self._flow = LoginFlow(
            services.backends,
            LoginContext(client_ip=remote_addr, server_ip=local_addr),
            peer_chain,
        )

    async def handle(self, request: Request) -> Response:
        """Answer ``request`` (anything but ``CONNECT``)."""
        path = request.target.split("?", 1)[0]
        if request.method == "GET":
            if path in _AUTH_PATHS:
                return self._start(request)
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
            if message.group_select:
                self._group = message.group_select
            return self._start(request)
        if message.group_select:
            self._group = message.group_select
        flow = self._flow
        if flow.step is Step.CREDENTIALS and not message.username and message.password is None:
            return self._form(request, Prompt(step=Step.CREDENTIALS, message=_prompt()), None)
        return await self._login(request, message)

    def _banned(self) -> Response | None:
        if not self._services.is_banned(self._remote):
            return None
        log.warning("event=login-refused remote=%s reason='address is banned'", self._remote)
        self._services.on_login("failure", "banned")
        return Response(401, "Authentication failed", (), b"", close=True)

    def _start(self, request: Request) -> Response:
        banned = self._banned()
        if banned is not None:
            return banned
        flow = self._flow
        try:
            outcome = flow.begin()
        except AuthFailed as exc:
            self._log_failure("", str(exc))
            self._services.on_auth_failure(self._remote)
            return Response(401, "Authentication failed", (), b"", close=True)
        if flow.cert_refusal is not None:
            log.warning(
                "event=certificate-refused remote=%s reason=%r", self._remote, flow.cert_refusal
            )
        if isinstance(outcome, Accepted):
            return self._finish(request, outcome)
        return self._form(request, outcome, None)

    async def _login(self, request: Request, reply: AuthReply) -> Response:
        banned = self._banned()
        if banned is not None:
            return banned
        username = reply.username or self._flow.pending_user or ""
        try:
            outcome = await self._flow.submit(reply)
        except AuthFailed as exc:
            self._services.on_auth_failure(self._remote)
            return self._failed(request, username, str(exc))
        if isinstance(outcome, Prompt):
            return self._form(request, outcome, None)
        return self._finish(request, outcome)

    def _log_failure(self, username: str, reason: str) -> None:
        log.warning(
            "event=login-failed user=%r remote=%s reason=%r try=%d",
            username,
            self._remote,
            reason,
            self._failures,
        )
        self._services.on_login("failure", _reason_label(reason))

    def _failed(self, request: Request, username: str, reason: str) -> Response:
        self._failures += 1
        self._log_failure(username, reason)
        if self._failures >= MAX_TRIES:
            return Response(401, "Authentication failed", (), b"", close=True)
        return self._form(request, self._flow.after_failure(), _FAILED)

    def _choose_group(self, accepted: Accepted) -> str | None:
        menu = self._services.groups
        requested = menu.resolve(self._group) if menu is not None else self._group
        if accepted.cert is not None and accepted.cert.group_oid is not None:
            return check_cert_group(accepted.cert, requested)
        return select_group(AuthResult(accepted.username, accepted.groups), requested)

    def _settings(self, accepted: Accepted, group: str | None) -> SessionSettings:
        config = self._services.config
        try:
            check_name_component(accepted.username, "user name")
            if group is not None:
                check_name_component(group, "group name")
            return session_settings(
                config, username=accepted.username, group=group, radius=accepted.radius
            )
        except ConfigError as exc:
            raise AuthFailed(f"session settings refused: {exc}") from None

    def _finish(self, request: Request, accepted: Accepted) -> Response:
        services = self._services
        try:
            group = self._choose_group(accepted)
            settings = self._settings(accepted, group)
            limit = settings.config.max_same_clients
            if limit and services.count_connected(accepted.username) >= limit:
                raise AuthFailed(f"max-same-clients ({limit}) reached")
        except AuthFailed as exc:
            self._flow.restart()
            return self._failed(request, accepted.username, str(exc))
        services.on_login("success", accepted.method)
        return self._complete(request, accepted, group, settings)

    def _complete(
        self, request: Request, accepted: Accepted, group: str | None, settings: SessionSettings
    ) -> Response:
        services = self._services
        config = settings.config
        cookie, session = services.store.create(
            username=accepted.username,
            groups=accepted.groups,
            group=group,
            now=services.clock(),
            user_agent=request.header("user-agent") or "",
            remote_addr=self._remote,
            cookie_timeout=config.cookie_timeout,
            session_timeout=config.session_timeout,
        )
        session.extra["settings"] = settings
        if accepted.radius is not None:
            session.extra["radius"] = accepted.radius
        save = getattr(services.store, "save", None)
        if callable(save):  # A durable store keeps the settings for a reconnect after a restart.
            save(session)
        log.info(
            "event=login user=%r group=%r remote=%s session=%s method=%s config=%s",
            accepted.username,
            group,
            self._remote,
            session.sid,
            accepted.method,
            ",".join(settings.sources) or "-",
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

    def _form(self, request: Request, prompt: Prompt, error: str | None) -> Response:
        config = self._services.config
        menu = self._services.groups
        if prompt.step is Step.CREDENTIALS:
            form = LoginForm(
                message=prompt.message,
                error=error,
                banner=config.pre_login_banner,
                inputs=(
                    FormInput(type="text", name="username", label="Username:", value=None),
                    FormInput(type="password", name="password", label="Password:", value=None),
                ),
                groups=menu.options(self._group) if menu else (),
            )
        else:
            label = "OTP:" if prompt.step is Step.OTP else "Password:"
            form = LoginForm(
                auth_id="challenge",
                message=prompt.message,
                error=error,
                inputs=(FormInput(type="password", name="secondary_password", label=label),),
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


def _prompt() -> str:
    return "Please enter your username and password."


_REASONS = (
    "unknown user",
    "locked",
    "wrong password",
    "empty password",
    "no password set",
    "group not allowed",
    "max-same-clients",
    "OTP",
    "radius",
    "certificate",
    "session settings",
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
