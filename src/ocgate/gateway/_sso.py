"""The sso-v2 side of the login dialog: the form, the browser's pages and the token reply.

Theory of operation (anyconnect-protocol.md §3.9, cisco-headend.md; openconnect ``auth.c``
``parse_auth_node`` and ``hpke.c`` ``handle_external_browser``; the URL paths are in
:mod:`ocgate.sso._base`). Everything here runs in sec-mod: workers forward the pre-tunnel HTTP
requests of every connection, the browser's included, as they do for the AggAuth dialog.

1. A client whose login needs SSO gets an ``auth-request`` with ``<sso-v2-login>`` (the start
   URL, naming a fresh login), ``<sso-v2-login-final>``, the token and error cookie names and a
   ``<input type="sso" name="sso-token">``. The browser mode is chosen per client
   (:meth:`SsoService.choose_mode`): ``external`` when the client announced
   ``single-sign-on-external-browser`` and sent its STRAP DH key (openconnect ≥ 9 with
   ``--external-browser``), unless it is Cisco's own AnyConnect / Secure Client, which gets its
   embedded browser; every other client gets the embedded mode.
2. The browser opens the start URL: a 302 to the identity provider (the provider's ``start``).
3. The provider sends the browser back (OIDC redirect URI, SAML ACS); the provider verifies the
   answer in a worker thread (``finish_untrusted``: it may call the provider's token endpoint).
   The verdict becomes a single-use token (:class:`ocgate.sso._logins.SsoLogins`):

   * external mode: a 302 to ``http://localhost:29786/api/sso/ENVELOPE?return=FINAL`` where the
     envelope is the token sealed to the client's DH key (:mod:`ocgate.sso._seal`); a refusal is
     sealed too, as a token that carries the refusal, so the client learns it from the gateway's
     AggAuth reply;
   * embedded mode: a 302 to the final URL with ``Set-Cookie: acSamlv2Token=TOKEN`` (or
     ``acSamlv2Error=MESSAGE`` on refusal).
4. The client posts ``<sso-token>`` in its ``auth-reply``; :meth:`SsoService.redeem` accepts it
   only for the login that asked, once, and for :attr:`SsoLogins.token_lifetime` seconds.

Requests the browser sends that name no live login (a forged or stale ``state``) are answered
with an error page and count toward the sender's ban score.
"""

from __future__ import annotations

import html
import logging
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from ocgate.aggauth import SsoLinks
from ocgate.errors import SsoError
from ocgate.http import Request, Response
from ocgate.sso import (
    CORRELATION_FIELDS,
    FINAL_PATH,
    MAX_RETURN_BYTES,
    MAX_RETURN_FIELDS,
    OIDC_RETURN_PATH,
    SAML_ACS_PATH,
    SAML_METADATA_PATH,
    SAML_SLO_PATH,
    START_PATH,
    SsoIdentity,
    SsoProvider,
)
from ocgate.sso._logins import SsoLogins, SsoMode
from ocgate.sso._seal import EXTERNAL_LISTENER, seal_token

__all__ = [
    "EXTERNAL_CAPABILITY",
    "SSO_CAPABILITY",
    "BearerProvider",
    "SsoService",
    "is_cisco_agent",
]

log = logging.getLogger("ocgate.auth")

SSO_CAPABILITY = "single-sign-on-v2"
EXTERNAL_CAPABILITY = "single-sign-on-external-browser"
LOGGED_OUT_PATH = "/+CSCOE+/sso/logged-out"
_CISCO_AGENTS = ("anyconnect", "cisco anyconnect", "cisco secure client")
_PAGE_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
_MAX_LOGOUTS = 4096
MAX_REDIRECT_CHARS = 4000
"""The longest ``Location`` sent: header values cross the IPC channel, at most 4096 characters."""

T = TypeVar("T")


class RunBlocking(Protocol):
    """Runs a blocking call in a worker thread (``asyncio.to_thread``)."""

    def __call__(self, func: Callable[[], T], /) -> Awaitable[T]: ...


def is_cisco_agent(user_agent: str) -> bool:
    """Cisco's AnyConnect / Secure Client (not openconnect's "Open AnyConnect VPN Agent")."""
    return user_agent.strip().lower().startswith(_CISCO_AGENTS)


class BearerProvider(Protocol):
    """A provider that also verifies ``Authorization: Bearer`` tokens (OIDC)."""

    def verify_bearer_untrusted(self, token: str, *, now: float) -> SsoIdentity: ...


def _page(status: int, reason: str, title: str, text: str, headers: Sequence[tuple[str, str]] = ()
          ) -> Response:  # fmt: skip
    body = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        f"{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(text)}</p></body></html>\n"
    )
    return Response(status, reason, (*_PAGE_HEADERS, *headers), body.encode("utf-8"))


def _redirect(location: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
    return Response(302, "Found", (("Location", location), *_PAGE_HEADERS, *headers), b"")


def _params_untrusted(request: Request) -> dict[str, str]:
    """The query (GET) or urlencoded form (POST) fields; the first of a repeated name wins.

    :raises SsoError: too many fields, too long, not UTF-8, or not a urlencoded form.
    """
    if request.method == "POST":
        kind = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise SsoError("the sign-in response is not a form post")
        raw = request.body
    else:
        raw = request.target.partition("?")[2].encode("latin-1", "replace")
    if len(raw) > MAX_RETURN_BYTES:
        raise SsoError("the sign-in response is too large")
    try:
        pairs = urllib.parse.parse_qsl(
            raw.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_RETURN_FIELDS,
            errors="strict",
        )  # fmt: skip
    except (UnicodeDecodeError, ValueError) as exc:
        raise SsoError("the sign-in response is malformed") from exc
    params: dict[str, str] = {}
    for key, value in pairs:
        params.setdefault(key, value)
    return params


class SsoService:
    """The sso-v2 flow of one host's ``oidc`` or ``saml`` method.

    :param provider: the provider (built in sec-mod from its config file).
    :param base_url: the gateway's external ``https://host[:port]``.
    :param clock: wall-clock seconds.
    :param run_blocking: runs a provider call off the event loop (``asyncio.to_thread``).
    :param on_refusal: told the address of a browser request that names no live login (bans).
    :param login_lifetime: seconds from form to token (``auth-timeout``).
    """

    def __init__(
        self,
        provider: SsoProvider,
        *,
        base_url: str,
        clock: Callable[[], float],
        run_blocking: RunBlocking,
        on_refusal: Callable[[str], None] = lambda _remote: None,
        login_lifetime: float = 300.0,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        new_key: Callable[[], ec.EllipticCurvePrivateKey] = lambda: ec.generate_private_key(
            ec.SECP256R1()
        ),
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.logins = SsoLogins(random_bytes=random_bytes, login_lifetime=login_lifetime)
        self._clock = clock
        self._run = run_blocking
        self._on_refusal = on_refusal
        self._random = random_bytes
        self._new_key = new_key
        self._logouts: dict[str, SsoIdentity] = {}

    def __repr__(self) -> str:
        return f"SsoService({self.provider.name}, {self.base_url!r})"

    @property
    def method(self) -> str:
        return self.provider.name

    @property
    def bearer_only(self) -> bool:
        """An ocserv-style OIDC config (no ``client_id``): only ``Authorization: Bearer`` works,
        and a login without one is answered ``401`` with ``WWW-Authenticate: Bearer``, which is
        what makes openconnect ``--token-mode=oidc`` send its token (``http-auth.c``)."""
        return getattr(self.provider, "browser_flow", True) is False

    # The form ---------------------------------------------------------------------------------

    @staticmethod
    def choose_mode(user_agent: str, capabilities: Sequence[str], dh_key: bytes | None) -> SsoMode:
        """``external`` for clients that can take the token on localhost:29786, else embedded."""
        cisco = is_cisco_agent(user_agent)
        if not cisco and dh_key is not None and EXTERNAL_CAPABILITY in capabilities:
            return SsoMode.EXTERNAL
        return SsoMode.EMBEDDED

    def begin(self, *, mode: SsoMode, dh_key: bytes | None) -> tuple[str, SsoLinks]:
        """A new login and the form elements that send the client's browser to it."""
        login_id = self.logins.begin(
            mode=mode, client_key=dh_key if mode is SsoMode.EXTERNAL else None, now=self._clock()
        )
        links = SsoLinks(
            login=f"{self.base_url}{START_PATH}?login={login_id}",
            login_final=f"{self.base_url}{FINAL_PATH}",
            browser_mode="external" if mode is SsoMode.EXTERNAL else None,
        )
        return login_id, links

    def redeem(self, login_id: str | None, token: str) -> SsoIdentity:
        """The identity behind the ``sso-token`` a client posted for its login.

        :raises SsoError: refused (see :meth:`SsoLogins.redeem`).
        """
        return self.logins.redeem(login_id, token, self._clock())

    def forget(self, login_id: str) -> None:
        self.logins.forget(login_id)

    async def bearer(self, token: str) -> SsoIdentity:
        """Verify an ``Authorization: Bearer`` token (ocserv's OIDC mode).

        :raises SsoError: refused, or the method has no bearer mode.
        """
        verify = getattr(self.provider, "verify_bearer_untrusted", None)
        if verify is None:
            raise SsoError(f"the {self.method} method takes no bearer tokens")
        now = self._clock()
        identity: SsoIdentity = await self._run(lambda: verify(token, now=now))
        return identity

    # Logout -----------------------------------------------------------------------------------

    def remember(self, sid: str, identity: SsoIdentity) -> None:
        """Keep what the provider needs to log ``sid``'s user out (bounded, in memory)."""
        if identity.logout_state is None:
            return
        if len(self._logouts) >= _MAX_LOGOUTS:
            self._logouts.pop(next(iter(self._logouts)))
        self._logouts[sid] = identity

    def logout_url(self, sid: str) -> str | None:
        """The provider's logout URL for the session that just ended, if it has one."""
        identity = self._logouts.pop(sid, None)
        if identity is None:
            return None
        try:
            return self.provider.logout_url(identity, return_url=self.base_url + LOGGED_OUT_PATH)
        except SsoError:
            return None

    # The browser's pages ------------------------------------------------------------------------

    @staticmethod
    def handles(path: str) -> bool:
        """Whether ``path`` is one of the browser's SSO pages."""
        return path.startswith(("/+CSCOE+/sso/", "/+CSCOE+/saml/"))

    async def browser(self, request: Request, remote: str) -> Response:
        """Answer a request of the user's browser (start, return, final, metadata, logout)."""
        path = request.target.split("?", 1)[0]
        try:
            if path == START_PATH and request.method == "GET":
                return await self._start(request, remote)
            if path in (OIDC_RETURN_PATH, SAML_ACS_PATH) and request.method in ("GET", "POST"):
                return await self._return(request, remote)
        except SsoError as exc:
            log.warning("event=sso-refused remote=%s reason=%r", remote, str(exc))
            self._on_refusal(remote)
            return _page(400, "Bad Request", "Sign-in failed", str(exc))
        if path == FINAL_PATH:
            return _page(200, "OK", "Signed in", "You may close this window.")
        if path in (SAML_SLO_PATH, LOGGED_OUT_PATH):
            return _page(200, "OK", "Signed out", "You have been signed out.")
        if path == SAML_METADATA_PATH and request.method == "GET":
            metadata = self.provider.metadata()
            if metadata is not None:
                return Response(200, "OK", (("Content-Type", metadata[0]),), metadata[1])
        return _page(404, "Not Found", "Not found", "There is nothing here.")

    async def _start(self, request: Request, remote: str) -> Response:
        login_id = _params_untrusted(request).get("login", "")
        now = self._clock()
        self.logins.mode(login_id, now)
        provider = self.provider
        return_path = SAML_ACS_PATH if provider.name == "saml" else OIDC_RETURN_PATH
        start = await self._run(
            lambda: provider.start(
                login_id=login_id, return_url=self.base_url + return_path, now=now
            )
        )
        if len(start.redirect_url) > MAX_REDIRECT_CHARS:
            raise SsoError("the identity provider's sign-in URL is too long")
        self.logins.started(login_id, start.pending, now)
        log.info("event=sso-start method=%s remote=%s", provider.name, remote)
        return _redirect(start.redirect_url)

    async def _return(self, request: Request, remote: str) -> Response:
        params = _params_untrusted(request)
        login_id = next((params[f] for f in CORRELATION_FIELDS if f in params), "")
        now = self._clock()
        mode, client_key = self.logins.mode(login_id, now)
        pending = self.logins.returned(login_id, now)
        provider = self.provider
        method = request.method
        try:
            identity = await self._run(
                lambda: provider.finish_untrusted(
                    method=method, params=params, pending=pending, now=now
                )
            )
        except SsoError as exc:
            log.warning("event=sso-return-refused method=%s remote=%s reason=%r",
                        provider.name, remote, str(exc))  # fmt: skip
            self._on_refusal(remote)  # Whoever posts a bad answer pays for it (a ban point).
            token = self.logins.issue_refusal(login_id, str(exc), self._clock())
            return self._deliver(mode, client_key, token, refusal=str(exc))
        log.info("event=sso-return method=%s user=%r remote=%s",
                 provider.name, identity.username, remote)  # fmt: skip
        token = self.logins.issue(login_id, identity, self._clock())
        return self._deliver(mode, client_key, token, refusal=None)

    def _deliver(
        self, mode: SsoMode, client_key: bytes | None, token: str, *, refusal: str | None
    ) -> Response:
        final = f"{self.base_url}{FINAL_PATH}"
        if mode is SsoMode.EXTERNAL and client_key is not None:
            sealed = seal_token(token, client_key, ephemeral=self._new_key(), iv=self._random(12))
            location = (
                f"{EXTERNAL_LISTENER}/api/sso/{urllib.parse.quote(sealed, safe='')}"
                f"?return={urllib.parse.quote(final, safe='')}"
            )
            return _redirect(location)
        if refusal is not None:
            cookie = f"acSamlv2Error={urllib.parse.quote(refusal)}; Path=/; Secure; HttpOnly"
        else:
            cookie = f"acSamlv2Token={token}; Path=/; Secure; HttpOnly"
        return _redirect(final, (("Set-Cookie", cookie),))
