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
* Success builds the session's settings (per-group and per-user files, RADIUS attributes),
  creates a server-side session and returns its cookie both as ``Set-Cookie: webvpn=`` and as
  ``<session-token>``. Any user or group name the backend accepts may log in (``sp@c/al``,
  UTF-8, quotes); only the lookup of a per-user or per-group file refuses a name that is not one
  safe path component, and then the session is refused with that reason in the log.
* Single sign-on (``oidc``/``saml``): the sso-v2 form, the browser's pages under ``/+CSCOE+/``
  and the ``sso-token`` reply are :mod:`ocgate.gateway._sso`'s; the identity then goes through
  the same group choice, per-user/per-group settings and session creation as any login. An
  ``Authorization: Bearer`` JWT on a login request is ocserv's OIDC bearer mode. SSO refusals are
  shown as the AggAuth form's error and count toward bans like a wrong password.
* A ``logout`` document or ``GET /logout`` with the cookie ends the session (after an SSO login,
  ``GET /logout`` then redirects to the provider's logout, where it has one).
* ``GET /profiles/NAME`` and ``GET /CACHE/stc/profiles/NAME`` (the ASA's form) return a profile
  of the cookie's session (``user-profile``, ``service-profile-vpn-mgmt``,
  ``service-profile-nvm``, read at configuration load); without a valid cookie they get
  ``401``. The ``complete`` reply lists them in ``<vpn-profile-manifest>`` with their SHA-1,
  and the ``webvpnc`` cookie names the user profile as ocserv's does (docs/profiles.md).
* ``/svc`` is the login of Cisco IP phones (``cisco-svc-client-compat``, :meth:`LoginDialog._svc`):
  a cookie-setting ``GET``, then a urlencoded POST; no forms, one try.
* A certificate-only login with a group to choose (``select-group`` entries, or several groups
  in the certificate) first gets a form with just the group list, as ocserv's does; the list
  holds every ``cert-group-oid`` value, so ``--authgroup`` may pick one ``select-group`` omits.

The dialog does no I/O itself: the backends are injected coroutines, so a slow backend (RADIUS)
never blocks the event loop, and time comes from an injected clock.
"""

from __future__ import annotations

import logging
import secrets
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ocgate.aggauth import (
    AuthReply,
    DeviceId,
    FormInput,
    GroupOption,
    InitRequest,
    LoginForm,
    LogoutRequest,
    parse_client_message_untrusted,
    render_auth_request,
    render_complete,
    render_legacy_form,
    render_legacy_success,
    render_logout_complete,
)
from ocgate.auth import AuthResult, LoginContext, select_group
from ocgate.certauth import check_cert_group
from ocgate.config import Config
from ocgate.config._profile import ProfileFile
from ocgate.errors import AuthFailed, BadAuthXml, BadStrap, ConfigError, InvalidCookie, SsoError
from ocgate.gateway._authflow import Accepted, LoginBackends, LoginFlow, Prompt, Step
from ocgate.gateway._device import device_from_login
from ocgate.gateway._groups import GroupMenu
from ocgate.gateway._settings import SessionSettings, session_settings
from ocgate.gateway._sso import SSO_CAPABILITY, SsoService, is_cisco_agent
from ocgate.gateway._strap import STRAP_PUBKEY, load_strap_pubkey_untrusted
from ocgate.http import Request, Response
from ocgate.session import Session, SessionStore
from ocgate.sso import SsoIdentity
from ocgate.sso._logins import SsoRefusal
from ocgate.tls import ServerCredentials

__all__ = ["DOWNLOADER_STUBS", "PROFILE_PATHS", "LoginDialog", "LoginServices", "session_profiles"]

log = logging.getLogger("ocgate.auth")

MAX_TRIES = 3
SVC_PATH = "/svc"
SVC_USER_AGENT = "Cisco SVC IPPhone Client"
"""ocserv's ``AGENT_SVC_IPPHONE``: the user agent prefix of the phones (``src/worker-http.c``)."""
_AUTH_PATHS = frozenset({"/", "/auth", "/VPN"})
PROFILE_PATHS = ("/profiles/", "/CACHE/stc/profiles/")
"""Where profiles are downloaded: ocserv's form (listed in the manifest), then the ASA's."""
_XML_HEADERS = (("Content-Type", "text/xml; charset=utf-8"), ("X-Transcend-Version", "1"))
_FAILED = "Login failed."
STRAP_DH_PUBKEY = "x-anyconnect-strap-dh-pubkey"
"""The client's ECDH P-256 key for the external-browser token envelope (openconnect ``hpke.c``)."""
_SSO_INPUTS = (FormInput(type="sso", name="sso-token", label=""),)
_GROUP_PROMPT = "Please select your group."
_CREDENTIAL_INPUTS = (
    FormInput(type="text", name="username", label="Username:", value=None),
    FormInput(type="password", name="password", label="Password:", value=None),
)

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


def _available() -> str | None:
    return None


def _ignore(*_args: object) -> None:
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginProgress:
    """A login under way, as ``show sessions all`` lists it (ocserv lists sec-mod's entries
    from the first request on).

    :param display_id: a random name for the listing; not a cookie and not a session id.
    :param state: occtl's wording: ``pre-auth`` before the first form, ``authenticating`` while
        the form rounds run, ``auth failed`` after a refused attempt.
    """

    display_id: str
    created: float
    state: str
    username: str
    user_agent: str
    remote: str


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
    sso: SsoService | None = None
    """The ``oidc``/``saml`` method's flow, when one is configured."""
    unavailable: Callable[[], str | None] = field(default=_available)
    """Why no login can succeed now (a shared session store is down), else ``None``."""


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
        self._peer_chain = peer_chain
        self._failures = 0
        self._group: str | None = None
        self._group_asked = False
        self._cert_pending: Accepted | None = None
        self._created = services.clock()
        self._display_id = secrets.token_urlsafe(12)
        self._state = "pre-auth"
        self._username = ""
        self._user_agent = ""
        self._strap_key: bytes | None = None
        self._capabilities: tuple[str, ...] = ()
        """``<capabilities>`` of the client's init (``single-sign-on-v2``, …)."""
        self._dh_key: bytes | None = None
        """The client's STRAP DH key (DER), for the external-browser token envelope."""
        self._sso_login: str | None = None
        """The SSO login this dialog's form named (its token is redeemable only here)."""
        self._sso_identity: SsoIdentity | None = None
        self._device: DeviceId | None = None
        """What the client's init said of its machine (``<device-id>``, identifier headers)."""
        """The client's STRAP public key (DER) from its login requests, if it sent one."""
        self._flow = LoginFlow(
            services.backends,
            LoginContext(client_ip=remote_addr, server_ip=local_addr),
            peer_chain,
        )

    async def handle(self, request: Request) -> Response:
        """Answer ``request`` (anything but ``CONNECT``)."""
        if not self._user_agent:
            self._user_agent = request.header("user-agent") or ""
        strap = request.header(STRAP_PUBKEY)
        if strap is not None:
            try:
                self._strap_key = load_strap_pubkey_untrusted(strap)
            except BadStrap as exc:
                log.info("event=bad-strap-key remote=%s reason=%r", self._remote, str(exc))
        dh_key = request.header(STRAP_DH_PUBKEY)
        if dh_key is not None:
            try:
                self._dh_key = load_strap_pubkey_untrusted(dh_key)
            except BadStrap as exc:
                log.info("event=bad-strap-dh-key remote=%s reason=%r", self._remote, str(exc))
        path = request.target.split("?", 1)[0]
        sso = self._services.sso
        if sso is not None and sso.handles(path):
            return await sso.browser(request, self._remote)
        if path == SVC_PATH and request.method in ("GET", "POST"):
            return await self._svc(request)
        bearer = _bearer_token(request)
        if (
            bearer is not None
            and sso is not None
            and (request.method == "POST" or path in _AUTH_PATHS)
        ):
            return await self._bearer(request, sso, bearer)
        if request.method == "GET":
            if path in _AUTH_PATHS:
                return self._start(request)
            if path == "/logout":
                provider_logout = self._logout_by_cookie(request)
                if provider_logout is not None:  # The SSO provider's own logout, too.
                    return Response(302, "Found", (("Location", provider_logout),), b"")
                return Response(200, "OK", (("Content-Type", "text/html"),), b"<html></html>\n")
            if urllib.parse.unquote(path).startswith(PROFILE_PATHS):
                return self._profile(request, urllib.parse.unquote(path))
            stub = DOWNLOADER_STUBS.get(path)
            if stub is not None:
                return Response(200, "OK", (("Content-Type", stub[0]),), stub[1])
            return Response(404, "Not Found", (), b"", close=True)
        if request.method == "POST":
            return await self._post(request)
        return Response(
            405, "Method Not Allowed", (("Allow", "GET, POST, CONNECT"),), b"", close=True
        )

    def _profile(self, request: Request, path: str) -> Response:
        """A profile download (ocserv ``get_config_handler``): refused without a valid cookie.

        The name is the last part of either URL form, percent-decoded: openconnect 9.01 follows
        the ``webvpnc`` cookie (``bu:/`` + ``fu:profiles%2FNAME``) and asks for
        ``/profiles%2FNAME``. A ``:PORT`` suffix is dropped (later openconnect versions append
        the port to the manifest's URL when it is not 443). Only the profiles of the
        cookie's own session (its ``user-profile``, ``service-profile-vpn-mgmt``,
        ``service-profile-nvm``, after per-user and per-group files) can be fetched, by the
        name the manifest gave.
        """
        services = self._services
        cookie = request.cookies().get("webvpn", "")
        try:
            if not cookie:
                raise InvalidCookie("no webvpn cookie")
            session = services.store.lookup(cookie, services.clock())
        except InvalidCookie as exc:
            log.warning("event=profile-refused remote=%s reason=%r", self._remote, str(exc))
            return Response(401, "Unauthorized", (), b"", close=True)
        name = _profile_name(path)
        settings = session.extra.get("settings")
        config = settings.config if isinstance(settings, SessionSettings) else services.config
        for _service, profile in session_profiles(config):
            if profile.name == name:
                log.info(
                    "event=profile-download user=%r session=%s profile=%r sha1=%s",
                    session.username, session.sid, profile.name, profile.sha1,
                )  # fmt: skip
                return Response(200, "OK", (("Content-Type", "text/xml"),), profile.data)
        return Response(404, "Not Found", (), b"")

    def progress(self) -> LoginProgress | None:
        """This login for ``show sessions all``; ``None`` once it has made a session."""
        if self._state == "complete":
            return None
        return LoginProgress(
            display_id=self._display_id,
            created=self._created,
            state=self._state,
            username=self._username,
            user_agent=self._user_agent,
            remote=self._remote,
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
            if message.device is not None or self._device is None:
                self._device = device_from_login(message.device, request)
            if message.group_select:
                self._group = message.group_select
            self._capabilities = message.capabilities
            return self._start(request)
        if message.group_select:
            self._group = message.group_select
        if self._flow.step is Step.SSO and self._services.sso is not None:
            return await self._login_sso(request, self._services.sso, message)
        pending = self._cert_pending
        if pending is not None:  # The group form of a certificate-only login was answered.
            self._cert_pending = None
            return self._finish(request, pending)
        flow = self._flow
        if flow.step is Step.CREDENTIALS and not message.username and message.password is None:
            return self._form(request, Prompt(step=Step.CREDENTIALS, message=_prompt()), None)
        return await self._login(request, message)

    async def _svc(self, request: Request) -> Response:
        """The ``/svc`` login of Cisco IP phones (ocserv ``src/worker-svc.c``, ocserv ≥ 1.2).

        ``GET /svc`` (or a POST without both fields) answers ``200`` with an empty body and
        ``Set-Cookie: webvpnlogin=1``, which tells the phone to POST ``username=&password=``
        (urlencoded) to ``/svc``. Success answers ``200`` with ``Set-Cookie: webvpn=COOKIE`` and
        no body; the phone then CONNECTs with that cookie. Any failure answers ``401
        Authentication failed`` and closes (ocserv ends the worker). A login that needs a further
        step (OTP, RADIUS challenge) cannot be done this way and fails. ocserv serves ``/svc``
        even with ``cisco-svc-client-compat = false`` or another user agent, with a warning.
        """
        if not self._services.config.cisco_svc_client_compat:
            log.warning(
                "event=svc-request remote=%s reason='cisco-svc-client-compat = false'",
                self._remote,
            )
        agent = request.header("user-agent") or ""
        if not agent.lower().startswith(SVC_USER_AGENT.lower()):
            log.warning("event=svc-request remote=%s reason='unexpected user agent %r'",
                        self._remote, agent[:100])  # fmt: skip
        if request.method == "GET":
            return _svc_hello()
        try:
            message = parse_client_message_untrusted(request.body, request.header("content-type"))
        except BadAuthXml:
            return _svc_hello()
        reply = message if isinstance(message, AuthReply) else AuthReply()
        banned = self._banned()
        if banned is not None:
            return banned
        self._state = "authenticating"
        self._username = reply.username or ""
        try:
            outcome = self._flow.begin()
            if isinstance(outcome, Prompt):
                if not reply.username or reply.password is None:
                    return _svc_hello()  # ocserv: "no username/password field in body".
                outcome = await self._flow.submit(reply)
            if isinstance(outcome, Prompt):
                raise AuthFailed("the /svc login cannot answer a further step (OTP, challenge)")
            group = self._choose_group(outcome)
            settings = self._settings(outcome, group)
            limit = settings.config.max_same_clients
            if limit > 1 and self._services.count_connected(outcome.username) >= limit:
                raise AuthFailed(f"max-same-clients ({limit}) reached")
        except AuthFailed as exc:
            self._failures += 1
            self._services.on_auth_failure(self._remote)
            self._log_failure(reply.username or "", str(exc))
            return Response(401, "Authentication failed", (), b"", close=True)
        self._services.on_login("success", outcome.method)
        return self._complete(request, outcome, group, settings, svc=True)

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
        self._state = "authenticating"
        try:
            outcome = flow.begin(sso_capable=self._sso_capable(request))
        except AuthFailed as exc:
            self._log_failure("", str(exc))
            self._services.on_auth_failure(self._remote)
            return Response(401, "Authentication failed", (), b"", close=True)
        if flow.cert_refusal is not None:
            log.warning(
                "event=certificate-refused remote=%s reason=%r", self._remote, flow.cert_refusal
            )
        if isinstance(outcome, Accepted):
            if self._group is None and not self._group_asked and len(self._group_options()) > 1:
                # Certificate alone, but a group to choose: a form with just the group list, as
                # ocserv shows, so that --authgroup can pick any of the certificate's groups.
                self._group_asked = True
                self._cert_pending = outcome
                prompt = Prompt(step=Step.CREDENTIALS, message=_GROUP_PROMPT)
                return self._form(request, prompt, None, inputs=())
            return self._finish(request, outcome)
        return self._form(request, outcome, None)

    def _group_options(self) -> tuple[GroupOption, ...]:
        """The form's group list: ``default-select-group``, the certificate's groups that are
        not listed otherwise (ocserv ``get_auth_handler2`` adds every ``cert-group-oid`` value),
        then ``select-group`` (and, with ``auto-select-group``, the password file's groups)."""
        menu = self._services.groups
        options = list(menu.options(self._group)) if menu else []
        identity = self._flow.identity
        if identity is None or identity.group_oid is None:
            return tuple(options)
        listed = {option.value for option in options}
        extra = [
            GroupOption(value=g, label=g, selected=g == self._group)
            for g in identity.groups
            if g not in listed
        ]
        at = 1 if menu is not None and menu.default else 0
        return (*options[:at], *extra, *options[at:])

    async def _login(self, request: Request, reply: AuthReply) -> Response:
        banned = self._banned()
        if banned is not None:
            return banned
        why = self._services.unavailable()
        if why is not None:  # Not the client's fault: no failure counted, no ban points.
            log.warning("event=login-unavailable user=%r remote=%s reason=%r",
                        reply.username or self._username, self._remote, why)  # fmt: skip
            self._services.on_login("failure", "unavailable")
            return self._form(request, self._flow.after_failure(), why)
        username = reply.username or self._flow.pending_user or ""
        self._username = username or self._username
        self._state = "authenticating"
        try:
            outcome = await self._flow.submit(reply)
        except AuthFailed as exc:
            self._services.on_auth_failure(self._remote)
            return self._failed(request, username, str(exc))
        if isinstance(outcome, Prompt):
            return self._form(request, outcome, None)
        return self._finish(request, outcome)

    def _sso_capable(self, request: Request) -> bool:
        """The client can follow an sso-v2 form: it said so, or it is Cisco's own client."""
        if self._services.sso is None:
            return False
        agent = request.header("user-agent") or ""
        return SSO_CAPABILITY in self._capabilities or is_cisco_agent(agent)

    async def _login_sso(self, request: Request, sso: SsoService, reply: AuthReply) -> Response:
        """The ``auth-reply`` with the ``sso-token`` the client's browser brought back."""
        token = reply.fields.get("sso-token", "")
        try:
            identity = sso.redeem(self._sso_login, token)
        except SsoRefusal as exc:
            # The provider's refusal, counted toward bans when the browser brought it back (which
            # may have banned the address): the client is still told why.
            return self._failed(request, "", f"sso: {exc}", shown=str(exc))
        except SsoError as exc:
            banned = self._banned()
            if banned is not None:
                return banned
            self._services.on_auth_failure(self._remote)
            return self._failed(request, "", f"sso: {exc}", shown=str(exc))
        banned = self._banned()
        if banned is not None:
            return banned
        try:
            accepted = self._flow.accept_sso(identity.username, identity.groups, sso.method)
        except AuthFailed as exc:
            self._services.on_auth_failure(self._remote)
            return self._failed(request, identity.username, str(exc))
        self._username = identity.username
        self._sso_identity = identity
        # The login stays known until it expires, so a replay of its token is named as one.
        self._sso_login = None
        return self._finish(request, accepted)

    async def _bearer(self, request: Request, sso: SsoService, token: str) -> Response:
        """ocserv's OIDC bearer mode: the JWT of ``Authorization: Bearer`` is the credential."""
        banned = self._banned()
        if banned is not None:
            return banned
        self._state = "authenticating"
        try:
            self._flow.begin(sso_capable=True)
            identity = await sso.bearer(token)
            accepted = self._flow.accept_sso(identity.username, identity.groups, "oidc-bearer")
        except SsoError as exc:
            self._services.on_auth_failure(self._remote)
            return self._failed(request, "", f"sso: bearer: {exc}", shown=str(exc))
        except AuthFailed as exc:
            self._services.on_auth_failure(self._remote)
            return self._failed(request, "", str(exc))
        self._username = identity.username
        return self._finish(request, accepted)

    def _log_failure(self, username: str, reason: str) -> None:
        self._state = "auth failed"
        log.warning(
            "event=login-failed user=%r remote=%s reason=%r try=%d",
            username,
            self._remote,
            reason,
            self._failures,
        )
        self._services.on_login("failure", _reason_label(reason))

    def _failed(
        self, request: Request, username: str, reason: str, *, shown: str = _FAILED
    ) -> Response:
        self._failures += 1
        self._log_failure(username, reason)
        if self._failures >= MAX_TRIES:
            return Response(401, "Authentication failed", (), b"", close=True)
        return self._form(request, self._flow.after_failure(), shown)

    def _choose_group(self, accepted: Accepted) -> str | None:
        """The session's group (ocserv sec-mod ``check_group``): a certificate alone offers its
        ``cert-group-oid`` values; with a password as well, the password backend decides (a
        requested group must be one of its groups, else its first is taken) and the
        certificate must hold that group too."""
        menu = self._services.groups
        requested = menu.resolve(self._group) if menu is not None else self._group
        cert = accepted.cert
        if cert is None or cert.group_oid is None:
            return select_group(AuthResult(accepted.username, accepted.groups), requested)
        if accepted.method == "certificate":
            return check_cert_group(cert, requested)
        group = select_group(AuthResult(accepted.username, accepted.groups), requested)
        if group is not None:
            check_cert_group(cert, group)
        return group

    def _settings(self, accepted: Accepted, group: str | None) -> SessionSettings:
        config = self._services.config
        try:
            # Any name the backend accepted is fine; only looking up a per-user or per-group file
            # refuses one that is not a single safe path component (ocserv 1.5.1).
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
            # With a limit of 1 the new session replaces the old one at CONNECT (ocserv ≥ 1.2).
            if limit > 1 and services.count_connected(accepted.username) >= limit:
                raise AuthFailed(f"max-same-clients ({limit}) reached")
        except AuthFailed as exc:
            self._flow.restart()
            return self._failed(request, accepted.username, str(exc))
        services.on_login("success", accepted.method)
        return self._complete(request, accepted, group, settings)

    def _complete(
        self,
        request: Request,
        accepted: Accepted,
        group: str | None,
        settings: SessionSettings,
        *,
        svc: bool = False,
    ) -> Response:
        services = self._services
        config = settings.config
        self._state = "complete"
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
        if self._strap_key is not None:  # CONNECT proves the client still holds it (strap).
            session.extra["strap_key"] = self._strap_key
        device = self._device if self._device is not None else device_from_login(None, request)
        if device is not None:
            session.extra["device"] = device
        session.extra["login_address"] = self._remote  # deny-roaming compares CONNECTs with it.
        if accepted.radius is not None:
            session.extra["radius"] = accepted.radius
        if self._sso_identity is not None and services.sso is not None:
            services.sso.remember(session.sid, self._sso_identity)
        if accepted.cert is not None:
            # A cookie reconnect is checked against it: the same certificate (unless
            # cisco-client-compat), still valid under the CRL of that moment.
            session.extra["cert_chain"] = tuple(self._peer_chain())
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
        if svc:  # ocserv post_svc_handler: the cookie and nothing else.
            headers = (("Set-Cookie", f"webvpn={cookie}; secure"), ("X-Transcend-Version", "1"))
            return Response(200, "OK", headers, b"")
        sha1 = services.credentials.sha1_hex
        profiles = session_profiles(config)
        webvpnc = f"bu:/&p:t&iu:1/&sh:{sha1}"
        user_profile = config.user_profile
        if user_profile is not None:  # ocserv post_common_handler, with a profile.
            webvpnc += (
                "&lu:/+CSCOT+/translation-table?textdomain%3DAnyConnect%26type%3Dmanifest"
                f"&fu:profiles%2F{user_profile.name}&fh:{user_profile.sha1}"
            )
        cookies = (
            ("Set-Cookie", f"webvpn={cookie}; Secure; HttpOnly"),
            (
                "Set-Cookie",
                "webvpnc=; expires=Thu, 01 Jan 1970 22:00:00 GMT; path=/; Secure; HttpOnly",
            ),
            ("Set-Cookie", f"webvpnc={webvpnc}; path=/; Secure; HttpOnly"),
        )
        if _is_xml(request):
            body = render_complete(
                session_token=cookie,
                session_id=session.sid,
                banner=config.banner,
                server_cert_hash=sha1,
                manifest=[
                    (service, f"{PROFILE_PATHS[0]}{profile.name}", profile.sha1)
                    for service, profile in profiles
                ],
            )
        else:
            body = render_legacy_success()
        return Response(200, "OK", (*_XML_HEADERS, *cookies), body)

    def _form(
        self,
        request: Request,
        prompt: Prompt,
        error: str | None,
        *,
        inputs: tuple[FormInput, ...] = _CREDENTIAL_INPUTS,
    ) -> Response:
        config = self._services.config
        sso = self._services.sso
        if prompt.step is Step.SSO and sso is not None and sso.bearer_only:
            if error is None:  # ocserv's challenge: openconnect --token-mode=oidc answers it.
                return Response(401, "Unauthorized", (("WWW-Authenticate", "Bearer"),), b"")
            form = LoginForm(message=prompt.message, error=error, banner=config.pre_login_banner)
        elif prompt.step is Step.SSO and sso is not None:
            if self._sso_login is not None:
                sso.forget(self._sso_login)
            mode = sso.choose_mode(self._user_agent, self._capabilities, self._dh_key)
            try:
                self._sso_login, links = sso.begin(mode=mode, dh_key=self._dh_key)
            except SsoError as exc:  # Full: a refusal, not a failed login of this client.
                log.warning("event=sso-refused remote=%s reason=%r", self._remote, str(exc))
                return Response(503, "Service Unavailable", (), b"", close=True)
            form = LoginForm(
                message=prompt.message,
                error=error,
                banner=config.pre_login_banner,
                inputs=_SSO_INPUTS,
                groups=self._group_options(),
                sso=links,
            )
        elif prompt.step is Step.CREDENTIALS:
            form = LoginForm(
                message=prompt.message,
                error=error,
                banner=config.pre_login_banner,
                inputs=inputs,
                groups=self._group_options(),
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
        # Like every AggAuth reply: a UTF-8 XML declaration and a charset in Content-Type.
        return Response(200, "OK", _XML_HEADERS, render_logout_complete())

    def _logout_by_cookie(self, request: Request) -> str | None:
        cookie = request.cookies().get("webvpn")
        sid = self._end_session(cookie) if cookie else None
        sso = self._services.sso
        return sso.logout_url(sid) if sso is not None and sid is not None else None

    def _end_session(self, cookie: str) -> str | None:
        store = self._services.store
        try:
            session = store.lookup(cookie, self._services.clock())
        except InvalidCookie:
            return None
        log.info("event=logout user=%r session=%s", session.username, session.sid)
        self._services.end_session(session, "user logout")
        return session.sid


def session_profiles(config: Config) -> list[tuple[str, ProfileFile]]:
    """The profiles a session's configuration serves, as ``(manifest service-type, file)``."""
    listed = (
        ("user", config.user_profile),
        ("vpn-mgmt", config.mgmt_tunnel_profile),
        ("nvm", config.nvm_profile),
    )
    return [(service, profile) for service, profile in listed if profile is not None]


def _profile_name(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    base, colon, port = name.rpartition(":")
    return base if colon and port.isdigit() else name


def _svc_hello() -> Response:
    """ocserv ``get_svc_handler``: ``webvpnlogin=1`` asks the phone to POST its credentials."""
    headers = (
        ("Set-Cookie", "webvpn=; expires=Thu, 01 Jan 1970 22:00:00 GMT; path=/; secure"),
        ("Set-Cookie", "webvpnlogin=1; secure"),
        ("X-Transcend-Version", "1"),
    )
    return Response(200, "OK", headers, b"")


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
    "sso",
)


def _reason_label(message: str) -> str:
    """A bounded label for metrics: one of the backend's fixed reasons, else ``other``."""
    for reason in _REASONS:
        if message.startswith(reason):
            return reason.replace(" ", "_").replace("-", "_")
    return "other"


def _bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header (ocserv's OIDC mode), if any."""
    value = request.header("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _is_xml(request: Request) -> bool:
    if request.header("x-aggregate-auth") == "1":
        return True
    return request.body.lstrip()[:1] == b"<"
