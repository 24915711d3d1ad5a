"""The sso-v2 login through the dialog (ocgate.gateway._sso, _login) with an in-memory provider.

The provider here stands for the identity provider's verdict only (its own verification is
tested in tests/unit/sso); what is under test is the gateway's side: the form, the browser's
pages, the token envelope for the external browser, the token cookie for the embedded one,
the binding of a token to its login, the refusal messages and the ban points.
"""

from __future__ import annotations

import asyncio
import base64
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ocgate.auth import build_auth_backends
from ocgate.config import parse_config
from ocgate.errors import AuthFailed, SsoError
from ocgate.gateway import LoginDialog, LoginFlow, LoginServices, Step
from ocgate.gateway._sso import SsoService
from ocgate.http import Request, Response
from ocgate.session import MemorySessionStore, Session
from ocgate.sso import SsoIdentity, SsoStart
from ocgate.tls import ServerCredentials
from tests.unit.sso.test_sso_seal import open_like_openconnect

T = TypeVar("T")
OPENCONNECT = "Open AnyConnect VPN Agent v9.01-3"
CISCO = "AnyConnect Linux_64 4.10.07061"


class FakeProvider:
    """Vouches for alice when the return carries ``code=good``."""

    name = "oidc"

    def __init__(self, *, browser_flow: bool = True) -> None:
        self.browser_flow = browser_flow

    def start(self, *, login_id: str, return_url: str, now: float) -> SsoStart:
        return SsoStart(redirect_url=f"https://idp.test/auth?state={login_id}", pending=b"p")

    def finish_untrusted(
        self, *, method: str, params: Mapping[str, str], pending: bytes, now: float
    ) -> SsoIdentity:
        if params.get("code") != "good":
            raise SsoError("the token is for another audience")
        return SsoIdentity(username="alice", groups=("eng",), logout_state="hint")

    def metadata(self) -> tuple[str, bytes] | None:
        return None

    def logout_url(self, identity: SsoIdentity, *, return_url: str) -> str | None:
        return f"https://idp.test/logout?hint={identity.logout_state}"

    def verify_bearer_untrusted(self, token: str, *, now: float) -> SsoIdentity:
        if token != "good.jwt.sig":
            raise SsoError("the token has expired")
        return SsoIdentity(username="bob")


async def _inline(func: Callable[[], T]) -> T:
    return func()


class Harness:
    def __init__(self, tmp_path: Path, provider: FakeProvider | None = None) -> None:
        (tmp_path / "oidc.json").write_text("{}")
        (tmp_path / "cert.pem").write_text("")
        text = (
            f'auth = "oidc[config={tmp_path}/oidc.json]"\n'
            f"server-cert = {tmp_path}/cert.pem\nserver-key = {tmp_path}/cert.pem\n"
            "socket-file = /run/ocgate-test.socket\ndevice = vpns\n"
        )
        self.config = parse_config(text, source="t.conf")
        self.store = MemorySessionStore()
        self.failures: list[str] = []
        self.ended: list[Session] = []
        run: Callable[[Callable[[], object]], Awaitable[object]] = _inline
        self.sso = SsoService(
            provider or FakeProvider(),
            base_url="https://vpn.test",
            clock=lambda: 100.0,
            run_blocking=run,  # type: ignore[arg-type]
            on_refusal=self.failures.append,
        )
        self.services = LoginServices(
            config=self.config,
            backends=build_auth_backends(self.config),
            store=self.store,
            credentials=ServerCredentials(sha1_hex="AB" * 20, pin_sha256="pin-sha256:x"),
            clock=lambda: 100.0,
            count_connected=lambda user: 0,
            end_session=lambda s, reason: self.ended.append(s),
            on_auth_failure=self.failures.append,
            sso=self.sso,
        )
        self.client_key = ec.generate_private_key(ec.SECP256R1())

    def dialog(self) -> LoginDialog:
        return LoginDialog(self.services, remote_addr="198.18.0.2")

    @staticmethod
    def send(dialog: LoginDialog, request: Request) -> Response:
        return asyncio.run(dialog.handle(request))

    def init(self, dialog: LoginDialog, agent: str = OPENCONNECT) -> str:
        dh = self.client_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        body = (
            b'<?xml version="1.0"?><config-auth client="vpn" type="init"><capabilities>'
            b"<auth-method>single-sign-on-v2</auth-method>"
            b"<auth-method>single-sign-on-external-browser</auth-method></capabilities>"
            b"</config-auth>"
        )
        headers = (
            ("user-agent", agent),
            ("x-aggregate-auth", "1"),
            ("x-anyconnect-strap-dh-pubkey", base64.b64encode(dh).decode()),
        )
        response = self.send(dialog, _req("POST", "/", headers, body))
        assert response.status == 200
        return response.body.decode()

    def browser(self, target: str) -> Response:
        return self.send(self.dialog(), _req("GET", target, (), b""))

    def reply(self, dialog: LoginDialog, token: str) -> Response:
        body = (
            '<?xml version="1.0"?><config-auth client="vpn" type="auth-reply">'
            f"<auth><sso-token>{token}</sso-token></auth></config-auth>"
        ).encode()
        return self.send(dialog, _req("POST", "/", (("x-aggregate-auth", "1"),), body))


def _req(
    method: str, target: str, headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
) -> Request:
    return Request(method=method, target=target, headers=headers, body=body, http_version="1.1")


def _tag(xml: str, name: str) -> str | None:
    match = re.search(rf"<{name}>([^<]*)</{name}>", xml)
    return match.group(1).replace("&amp;", "&") if match else None


def _location(response: Response) -> str:
    return dict(response.headers)["Location"]


def _external_token(h: Harness, form: str, code: str = "good") -> str:
    start = _tag(form, "sso-v2-login")
    assert start is not None
    to_idp = h.browser(start.removeprefix("https://vpn.test"))
    assert to_idp.status == 302
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(_location(to_idp)).query)["state"][0]
    back = h.browser(f"/+CSCOE+/sso/oidc/return?code={code}&state={state}")
    assert back.status == 302
    location = _location(back)
    assert location.startswith("http://localhost:29786/api/sso/")
    blob, _, query = location.removeprefix("http://localhost:29786/api/sso/").partition("?")
    assert query == "return=" + urllib.parse.quote("https://vpn.test/+CSCOE+/sso/final", safe="")
    return open_like_openconnect(urllib.parse.unquote(blob), h.client_key)


def test_external_browser_login(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    dialog = h.dialog()
    form = h.init(dialog)
    assert _tag(form, "sso-v2-browser-mode") == "external"
    assert _tag(form, "sso-v2-token-cookie-name") == "acSamlv2Token"
    assert _tag(form, "sso-v2-login-final") == "https://vpn.test/+CSCOE+/sso/final"
    assert '<input type="sso" name="sso-token"' in form
    token = _external_token(h, form)
    done = h.reply(dialog, token)
    assert b'<auth id="success">' in done.body
    (session,) = h.store.sessions()
    assert (session.username, session.group) == ("alice", "eng")
    assert h.failures == []
    # The same token again, on a new login: bound to the login that asked for it.
    other = h.dialog()
    h.init(other)
    refused = h.reply(other, token)
    assert b"the sign-in token was issued to another login" in refused.body
    assert h.failures == ["198.18.0.2"]


def test_embedded_mode_for_cisco_clients(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    dialog = h.dialog()
    form = h.init(dialog, agent=CISCO)
    assert _tag(form, "sso-v2-browser-mode") is None
    start = _tag(form, "sso-v2-login") or ""
    state = urllib.parse.parse_qs(
        urllib.parse.urlsplit(_location(h.browser(start.removeprefix("https://vpn.test")))).query
    )["state"][0]
    back = h.browser(f"/+CSCOE+/sso/oidc/return?code=good&state={state}")
    assert _location(back) == "https://vpn.test/+CSCOE+/sso/final"
    cookie = dict(back.headers)["Set-Cookie"]
    token = cookie.removeprefix("acSamlv2Token=").split(";")[0]
    assert h.browser("/+CSCOE+/sso/final").status == 200
    assert b'<auth id="success">' in h.reply(dialog, token).body


def test_refusal_reaches_the_client_and_counts_toward_bans(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    dialog = h.dialog()
    token = _external_token(h, h.init(dialog), code="bad")
    refused = h.reply(dialog, token)
    assert b"the token is for another audience" in refused.body
    assert b"<sso-v2-login>" in refused.body  # A fresh sign-in is offered.
    assert h.failures == ["198.18.0.2"]
    assert h.store.sessions() == []


def test_return_for_no_live_login_is_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    page = h.browser("/+CSCOE+/sso/oidc/return?code=good&state=forged")
    assert page.status == 400
    assert b"expired or is unknown" in page.body
    assert h.failures == ["198.18.0.2"]


def test_bearer_only_config_challenges_and_accepts_bearer(tmp_path: Path) -> None:
    h = Harness(tmp_path, FakeProvider(browser_flow=False))
    dialog = h.dialog()
    challenge = h.send(dialog, _req("POST", "/", (("x-aggregate-auth", "1"),), b""))
    assert challenge.status == 401
    assert ("WWW-Authenticate", "Bearer") in challenge.headers
    headers = (("x-aggregate-auth", "1"), ("authorization", "Bearer good.jwt.sig"))
    done = h.send(dialog, _req("POST", "/", headers, b""))
    assert b'<auth id="success">' in done.body
    bad = (("x-aggregate-auth", "1"), ("authorization", "Bearer bad"))
    refused = h.send(h.dialog(), _req("POST", "/", bad, b""))
    assert b"the token has expired" in refused.body
    assert h.failures == ["198.18.0.2"]


def test_logout_ends_the_session_and_points_at_the_provider(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    dialog = h.dialog()
    done = h.reply(dialog, _external_token(h, h.init(dialog)))
    cookie = _tag(done.body.decode(), "session-token")
    out = h.send(h.dialog(), _req("GET", "/logout", (("cookie", f"webvpn={cookie}"),), b""))
    assert out.status == 302
    assert _location(out) == "https://idp.test/logout?hint=hint"
    assert [s.username for s in h.ended] == ["alice"]


@pytest.mark.parametrize(
    "query", ["code=good", "state=" + "x" * 300000, "a=1&" * 40 + "state=s", "state=%ff"]
)
def test_malformed_returns(tmp_path: Path, query: str) -> None:
    h = Harness(tmp_path)
    assert h.browser(f"/+CSCOE+/sso/oidc/return?{query}").status == 400


# Certificate AND single sign-on (ocserv combines methods: the auth lines are ANDed) ------------


def _flow(alternatives: tuple[frozenset[str], ...], chain: tuple[bytes, ...]) -> LoginFlow:
    from tests.unit.gateway.test_login_flow import ALICE_CERT, CTX, Fake

    return LoginFlow(Fake(alternatives=alternatives, cert=ALICE_CERT), CTX, lambda: chain)


CERT_AND_SSO = (frozenset({"certificate", "oidc"}),)


def test_certificate_and_sso_needs_the_certificate() -> None:
    with pytest.raises(AuthFailed, match="certificate required"):
        _flow(CERT_AND_SSO, ()).begin(sso_capable=True)


def test_certificate_and_sso_binds_the_user() -> None:
    flow = _flow(CERT_AND_SSO, (b"der",))
    assert flow.begin(sso_capable=True).step is Step.SSO  # type: ignore[union-attr]
    with pytest.raises(AuthFailed, match="certificate is for user 'alice'"):
        flow.accept_sso("mallory", (), "oidc")
    accepted = flow.accept_sso("alice", ("eng",), "oidc")
    assert accepted.method == "certificate+oidc"
    assert accepted.cert is not None


def test_password_or_sso_follows_the_client() -> None:
    either = (frozenset({"plain"}), frozenset({"oidc"}))
    assert _flow(either, ()).begin(sso_capable=True).step is Step.SSO  # type: ignore[union-attr]
    assert _flow(either, ()).begin(sso_capable=False).step is Step.CREDENTIALS  # type: ignore[union-attr]
    # SSO alone: offered even to a client that did not say it can (it will show the error).
    only = (frozenset({"oidc"}),)
    assert _flow(only, ()).begin(sso_capable=False).step is Step.SSO  # type: ignore[union-attr]
