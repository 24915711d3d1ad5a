"""Acceptance: SAML 2.0 single sign-on against a real identity provider, SimpleSAMLphp.

SimpleSAMLphp (Debian 1.19, ``tests/interop/_simplesamlphp.py``) runs in the *server* namespace
on its own port; the scripted browser (``tests/interop/sso_browser.py``) runs in the *client*
namespace, fills SimpleSAMLphp's real login form and follows its HTTP-POST form to the ACS URL.

* ``test_simplesamlphp_login_verified_by_the_sp_module``: the harness alone. The SP module
  (``ocgate.sso._saml``, in-process, no gateway) makes the AuthnRequest, the browser signs in at
  SimpleSAMLphp and hands over the signed response (captured instead of POSTed), the module
  verifies it and yields the user and the group from the assertion; a second use of the same
  response is refused, a wrong password never gets a response.
* Through the gateway (``auth = "saml[config=FILE,base-url=...]"``): openconnect 9.01 with
  ``--external-browser`` signs in at SimpleSAMLphp, brings the tunnel up with the routes of the
  group the assertion carries, and pings through it; a tampered assertion (the signed user name
  changed by the browser) and an expired one (SimpleSAMLphp set to issue assertions
  that are already expired) are refused, openconnect shows the reason from the AggAuth reply, and
  the refusal counts toward a ban.
* With AnyConnect's user agent (embedded browser, token cookie at the final URL, driven by the
  same script): the login works and its cookie brings the tunnel up; the SAML POST replayed to
  the ACS is refused ("already used"); a genuine signed response of one login POSTed with another
  login's RelayState is refused ("another login"); the browser's logout ends the session and goes
  through SimpleSAMLphp's single logout service (which accepts our LogoutRequest) and
  back to the gateway's SLO URL.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ocgate.errors import SsoError
from ocgate.sso import SAML_ACS_PATH, SAML_SLO_PATH
from ocgate.sso._saml import SamlProvider, load_saml_provider
from tests.unit.sso.saml_idp import make_keypair

from ._netns import SERVER_ADDR, NetnsPair
from ._openconnect import OpenConnectRunner
from ._server import SERVER_TUN4, Server, ServerKind, StartServer, server_kind
from ._simplesamlphp import USERS, SimpleSamlPhp, start_simplesamlphp
from ._traffic import ping
from .conftest import add_diagnostic

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(240),
    pytest.mark.skipif(server_kind() is ServerKind.OCSERV, reason="ocserv has no SAML"),
]

BROWSER = Path(__file__).with_name("sso_browser.py")
IDP_PORT = 8480


def _gateway_base(pair: NetnsPair, port: int = 443) -> str:
    return f"https://{pair.server_addr}" if port == 443 else f"https://{pair.server_addr}:{port}"


StartIdp = Callable[..., SimpleSamlPhp]


@pytest.fixture
def start_idp(
    request: pytest.FixtureRequest, netns_pair: NetnsPair, tmp_path: Path
) -> Iterator[StartIdp]:
    """Factory: SimpleSAMLphp in the server namespace, knowing the gateway as its SP."""
    started: list[SimpleSamlPhp] = []

    def start(**kwargs: object) -> SimpleSamlPhp:
        base = _gateway_base(netns_pair)
        server = start_simplesamlphp(
            ns=netns_pair.server,
            address=netns_pair.server_addr,
            port=IDP_PORT,
            workdir=tmp_path / "simplesamlphp",
            sp_entity_id=base + "/+CSCOE+/saml/metadata",
            acs_url=base + SAML_ACS_PATH,
            slo_url=base + SAML_SLO_PATH,
            **kwargs,  # type: ignore[arg-type]
        )
        started.append(server)
        add_diagnostic(request, "simplesamlphp", server.log)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def idp(start_idp: StartIdp) -> SimpleSamlPhp:
    return start_idp()


def _provider(tmp_path: Path, idp: SimpleSamlPhp, base_url: str, extra: str = "") -> SamlProvider:
    conf = tmp_path / "saml.conf"
    conf.write_text(
        f"idp-metadata = {idp.metadata_file}\nusername-attribute = uid\ngroups-attribute = groups\n"
        + extra
    )
    return load_saml_provider(str(conf), base_url=base_url)


def _browse(
    pair: NetnsPair, url: str, user: str, password: str, capture_url: str
) -> tuple[int, dict[str, object] | None, str]:
    """The scripted browser in the client namespace, stopping at the SAML form to the ACS."""
    argv = [sys.executable, str(BROWSER), "--user", user, "--password", password]
    proc = subprocess.run(
        pair.exec_argv(pair.client, [*argv, "--capture", capture_url, url]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    captured = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout else None
    return proc.returncode, captured, proc.stderr


def test_simplesamlphp_login_verified_by_the_sp_module(
    netns_pair: NetnsPair, idp: SimpleSamlPhp, tmp_path: Path
) -> None:
    base = _gateway_base(netns_pair)
    provider = _provider(tmp_path, idp, base)
    assert provider.idp_entity_id == idp.entity_id
    start = provider.start(login_id="login-1", return_url=base + SAML_ACS_PATH, now=time.time())
    assert start.redirect_url.startswith(idp.base_url)

    rc, captured, transcript = _browse(
        netns_pair, start.redirect_url, "alice", USERS["alice"][0], base + SAML_ACS_PATH
    )
    assert rc == 0, transcript + idp.log()
    assert captured is not None, transcript
    assert "/module.php/core/loginuserpass.php -> 200" in transcript  # The real login form.
    fields = captured["fields"]
    assert isinstance(fields, dict)
    assert fields["RelayState"] == "login-1"

    identity = provider.finish_untrusted(
        method="POST", params=fields, pending=start.pending, now=time.time()
    )
    assert identity.username == "alice"
    assert identity.groups == USERS["alice"][1]
    assert identity.logout_state is not None
    logout = provider.logout_url(identity, return_url=base + SAML_SLO_PATH)
    assert logout is not None
    assert logout.startswith(idp.base_url + "saml2/idp/SingleLogoutService.php?SAMLRequest=")

    with pytest.raises(SsoError, match="already used"):
        provider.finish_untrusted(
            method="POST", params=fields, pending=start.pending, now=time.time()
        )


def test_simplesamlphp_wrong_password_gets_no_assertion(
    netns_pair: NetnsPair, idp: SimpleSamlPhp, tmp_path: Path
) -> None:
    base = _gateway_base(netns_pair)
    provider = _provider(tmp_path, idp, base)
    start = provider.start(login_id="login-2", return_url=base + SAML_ACS_PATH, now=time.time())
    rc, captured, transcript = _browse(
        netns_pair, start.redirect_url, "alice", "wrong", base + SAML_ACS_PATH
    )
    assert captured is None, transcript
    assert rc != 0
    assert "the provider refused the credentials" in transcript


@pytest.mark.parametrize("signed", [True, False])
def test_simplesamlphp_checks_the_signature_of_our_authn_request(
    netns_pair: NetnsPair, start_idp: StartIdp, tmp_path: Path, signed: bool
) -> None:
    """With ``sp-key``/``sp-cert`` the AuthnRequest is signed (HTTP-Redirect, RSA-SHA256) and
    SimpleSAMLphp, told to validate it (``validate.authnrequest``), accepts it; an unsigned one
    it refuses, so the check really happens."""
    sp = make_keypair("vpn.test")
    key, cert = sp.write(tmp_path, "sp")
    idp = start_idp(sp_cert=sp.cert_pem.decode())
    base = _gateway_base(netns_pair)
    extra = f"sp-key = {key}\nsp-cert = {cert}\n" if signed else ""
    provider = _provider(tmp_path, idp, base, extra)
    start = provider.start(login_id="login-3", return_url=base + SAML_ACS_PATH, now=time.time())
    assert ("&Signature=" in start.redirect_url) is signed
    rc, captured, transcript = _browse(
        netns_pair, start.redirect_url, "bob", USERS["bob"][0], base + SAML_ACS_PATH
    )
    if not signed:
        assert captured is None, transcript
        assert "no signature found on message" in idp.log(), idp.log()
        return
    assert rc == 0, transcript + idp.log()
    assert captured is not None, transcript
    fields = captured["fields"]
    assert isinstance(fields, dict)
    identity = provider.finish_untrusted(
        method="POST", params=fields, pending=start.pending, now=time.time()
    )
    assert (identity.username, identity.groups) == ("bob", ("sales",))


# Through the gateway, with openconnect 9.01 ---------------------------------------------------


def _gateway(
    start_gateway: StartServer,
    idp: SimpleSamlPhp,
    tmp_path: Path,
    extra: dict[str, str] | None = None,
) -> Server:
    conf = tmp_path / "saml.conf"
    conf.write_text(
        f"idp-metadata = {idp.metadata_file}\nusername-attribute = uid\ngroups-attribute = groups\n"
    )
    groups = tmp_path / "groups"
    groups.mkdir(exist_ok=True)
    (groups / "engineering").write_text("route = 10.93.0.0/16\n")
    (groups / "sales").write_text("route = 10.94.0.0/16\n")
    base = f"https://{SERVER_ADDR}"
    return start_gateway(
        {
            "auth": f'"saml[config={conf},base-url={base}]"',
            "config-per-group": str(groups),
            "max-ban-score": "50",
            "ban-points-wrong-password": "50",
            "ban-points-connection": "0",
            **(extra or {}),
        }
    )


def _browser_program(tmp_path: Path, user: str, *extra: str) -> Path:
    """openconnect's ``--external-browser`` takes a program name only: a wrapper with the user."""
    wrapper = tmp_path / f"browser-{user}.sh"
    argv = [sys.executable, str(BROWSER), "--user", user, "--password", USERS[user][0], *extra]
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.join(argv)} "$@" 2>>{tmp_path}/browser.log\n')
    wrapper.chmod(0o755)
    return wrapper


def _split(env: dict[str, str]) -> list[str]:
    count = int(env.get("CISCO_SPLIT_INC", "0"))
    return sorted(env.get(f"CISCO_SPLIT_INC_{i}_ADDR", "") for i in range(count))


def _browser_log(tmp_path: Path) -> str:
    path = tmp_path / "browser.log"
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_external_browser_login_through_simplesamlphp_brings_up_the_group_routes(
    start_gateway: StartServer,
    idp: SimpleSamlPhp,
    openconnect: OpenConnectRunner,
    netns_pair: NetnsPair,
    tmp_path: Path,
    user: str,
) -> None:
    server = _gateway(start_gateway, idp, tmp_path)
    browser = _browser_program(tmp_path, user)
    client = openconnect.connect(server, extra=["--external-browser", str(browser)])
    env = client.wait_env(timeout=60)
    group = USERS[user][1][0]
    route = {"engineering": "10.93.0.0", "sales": "10.94.0.0"}[group]
    assert _split(env) == [route], (env, _browser_log(tmp_path))
    server.wait_log(rf"event=login user='{user}' group='{group}' .*method=saml", timeout=5)
    assert "loginuserpass.php -> 200" in _browser_log(tmp_path)  # SimpleSAMLphp's real form.
    result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3)
    assert result.received == 3, result.output


def test_tampered_assertion_is_refused_through_openconnect_and_banned(
    start_gateway: StartServer,
    idp: SimpleSamlPhp,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    server = _gateway(start_gateway, idp, tmp_path)
    # The browser changes the signed user name in SimpleSAMLphp's response before POSTing it.
    browser = _browser_program(tmp_path, "alice", "--edit-saml", "alice=>admin")
    run = openconnect.authenticate(
        server,
        user=None,
        stdin="unused\n",  # --passwd-on-stdin reads a line first; SSO never asks for it.
        extra=["--external-browser", str(browser)],
        timeout=60,
    )
    assert run.returncode != 0, run.describe()
    assert "edited the SAML response" in _browser_log(tmp_path)
    output = run.stderr + run.stdout
    assert "signature is missing or invalid" in output, run.describe() + _browser_log(tmp_path)
    server.wait_log(r"event=sso-return-refused .*signature is missing or invalid", timeout=5)
    server.wait_log(r"event=address-banned remote=198\.18\.0\.2", timeout=10)
    assert "user='admin'" not in server.log_text()


def test_expired_assertion_is_refused_through_openconnect_and_banned(
    start_gateway: StartServer,
    start_idp: StartIdp,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    idp = start_idp(assertion_lifetime=-600)  # Every assertion expired ten minutes ago.
    server = _gateway(start_gateway, idp, tmp_path)
    browser = _browser_program(tmp_path, "alice")
    run = openconnect.authenticate(
        server,
        user=None,
        stdin="unused\n",  # --passwd-on-stdin reads a line first; SSO never asks for it.
        extra=["--external-browser", str(browser)],
        timeout=60,
    )
    assert run.returncode != 0, run.describe()
    assert "the SAML assertion has expired" in run.stderr + run.stdout, run.describe()
    server.wait_log(r"event=address-banned remote=198\.18\.0\.2", timeout=10)


def _script(pair: NetnsPair, *args: str) -> dict[str, object]:
    argv = [sys.executable, str(BROWSER), *args]
    proc = subprocess.run(
        pair.exec_argv(pair.client, argv), capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"{shlex.join(argv)}\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_embedded_mode_login_then_the_replayed_response_is_refused(
    start_gateway: StartServer,
    idp: SimpleSamlPhp,
    openconnect: OpenConnectRunner,
    netns_pair: NetnsPair,
    tmp_path: Path,
) -> None:
    """AnyConnect's embedded browser (cookie at the final URL); the SAML POST sent twice."""
    # The replay is a failed login: a higher ban threshold lets the genuine login go on.
    server = _gateway(start_gateway, idp, tmp_path, extra={"max-ban-score": "200"})
    gateway = f"https://{SERVER_ADDR}"
    result = _script(
        netns_pair, "--embedded", gateway, "--user", "bob", "--password", USERS["bob"][0],
        "--replay-return",
    )  # fmt: skip
    assert result["final"] == f"{gateway}/+CSCOE+/sso/final", result
    assert result["replay_status"] == 400, result
    assert "already used" in str(result["replay_text"]), result
    cookie = result["session_token"]
    assert isinstance(cookie, str), result
    assert cookie
    server.wait_log(r"event=login user='bob' group='sales' .*method=saml", timeout=5)
    client = openconnect.connect(server, cookie=f"webvpn={cookie}")  # openconnect: the whole Cookie
    env = client.wait_env(timeout=30)
    assert _split(env) == ["10.94.0.0"], env
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received == 3


def test_response_to_another_login_is_refused(
    start_gateway: StartServer,
    idp: SimpleSamlPhp,
    netns_pair: NetnsPair,
    tmp_path: Path,
) -> None:
    """A genuine, signed response for login A POSTed with login B's RelayState."""
    server = _gateway(start_gateway, idp, tmp_path)
    gateway = f"https://{SERVER_ADDR}"
    login = ["--embedded", gateway, "--user", "alice", "--password", USERS["alice"][0]]
    first = _script(netns_pair, *login, "--capture", gateway + SAML_ACS_PATH)
    saved = tmp_path / "login-a.json"
    saved.write_text(json.dumps(first))
    second = _script(netns_pair, *login, "--swap-saml", str(saved))
    assert second["token"] is None, second
    assert second["error_cookie"], second
    assert "another login" in urllib.parse.unquote(str(second["error_cookie"])), second
    server.wait_log(r"event=sso-return-refused .*another login", timeout=5)
    assert "event=login user='alice'" not in server.log_text()


def test_logout_ends_the_session_and_the_simplesamlphp_session(
    start_gateway: StartServer,
    idp: SimpleSamlPhp,
    openconnect: OpenConnectRunner,
    netns_pair: NetnsPair,
    tmp_path: Path,
) -> None:
    """The browser's logout: the gateway ends the session and sends the browser to the IdP's
    single logout service with a LogoutRequest SimpleSAMLphp accepts; it answers to our SLO URL."""
    server = _gateway(start_gateway, idp, tmp_path)
    gateway = f"https://{SERVER_ADDR}"
    result = _script(
        netns_pair, "--embedded", gateway, "--user", "alice", "--password", USERS["alice"][0],
        "--logout",
    )  # fmt: skip
    assert result["session_token"], result
    visited = [str(url) for url in result["logout_visited"]]  # type: ignore[attr-defined]
    assert any(u.startswith(idp.base_url + "saml2/idp/SingleLogoutService.php") for u in visited)
    assert any(u.startswith(gateway + SAML_SLO_PATH) for u in visited), result
    assert result["logout_status"] == 200, result
    server.wait_log(r"event=logout user='alice'", timeout=5)
    client = openconnect.connect(server, cookie=f"webvpn={result['session_token']}")
    assert client.proc.wait(timeout=30) == 2, client.describe()  # The cookie died with it.


def test_gateway_serves_the_sp_metadata(
    start_gateway: StartServer, idp: SimpleSamlPhp, netns_pair: NetnsPair, tmp_path: Path
) -> None:
    """What an administrator hands the IdP: entity ID, ACS (HTTP-POST) and SLO URLs."""
    _gateway(start_gateway, idp, tmp_path)
    base = f"https://{SERVER_ADDR}"
    script = (
        "import sys, httpx; r = httpx.get(sys.argv[1], verify=False, timeout=20); "
        "print(r.status_code, r.headers.get('content-type')); print(r.text)"
    )
    proc = subprocess.run(
        netns_pair.exec_argv(
            netns_pair.client, [sys.executable, "-c", script, base + "/+CSCOE+/saml/metadata"]
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    status, _, body = proc.stdout.partition("\n")
    assert status == "200 application/samlmetadata+xml", proc.stdout + proc.stderr
    assert f'entityID="{base}/+CSCOE+/saml/metadata"' in body
    assert f'Location="{base}{SAML_ACS_PATH}"' in body
    assert f'Location="{base}{SAML_SLO_PATH}"' in body
    assert "PRIVATE KEY" not in body
