"""Acceptance: OpenID Connect single sign-on with openconnect 9.01 and node-oidc-provider.

The provider is the real node-oidc-provider (``_oidc_provider.py``) in the server namespace; the
browser is ``sso_browser.py``, a scripted HTTP client that fills in the provider's login form.
openconnect runs it through ``--external-browser`` and receives the token on its own
localhost:29786 listener, sealed to its STRAP DH key; the embedded (cookie) mode is driven by the
same script with Cisco AnyConnect's user agent; the bearer mode uses ID tokens the provider mints.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pki import OID_UID, Pki, make_pki

from ._netns import NetnsPair
from ._oidc_provider import OidcProvider, install_oidc_provider, start_oidc_provider
from ._openconnect import OpenConnectRunner
from ._server import SERVER_TUN4, Server, ServerKind, StartServer, server_kind
from ._traffic import ping
from .conftest import add_diagnostic

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        server_kind() is ServerKind.OCSERV, reason="ocserv has no OIDC browser flow"
    ),
]

BROWSER = Path(__file__).with_name("sso_browser.py")
GATEWAY = "https://198.18.0.1"
RETURN = f"{GATEWAY}/+CSCOE+/sso/oidc/return"
NO_PASSWORD = "unused\n"  # The runner's --passwd-on-stdin wants a line; SSO never asks for it.


@pytest.fixture
def provider(
    request: pytest.FixtureRequest, netns_pair: NetnsPair, tmp_path: Path
) -> Iterator[OidcProvider]:
    installed = install_oidc_provider()
    if isinstance(installed, str):
        pytest.skip(installed)
    started = start_oidc_provider(netns_pair, installed, tmp_path / "idp", gateway=GATEWAY)
    add_diagnostic(request, "oidc provider", started.log)
    try:
        yield started
    finally:
        started.stop()


def _gateway(
    start_gateway: StartServer,
    provider: OidcProvider,
    tmp_path: Path,
    *,
    audience: str = "ocgate",
    extra: dict[str, str | list[str]] | None = None,
    bearer_only: bool = False,
    certificates: Pki | None = None,
) -> Server:
    """The gateway with ``auth = oidc``: the browser flow, or (``bearer_only``) an ocserv-style
    config with only ocserv's keys plus the group claim."""
    settings: dict[str, object] = {
        "openid_configuration_url": f"{provider.issuer}/.well-known/openid-configuration",
        "user_name_claim": "preferred_username",
        "required_claims": {"aud": audience, "iss": provider.issuer},
        "groups_claim": "groups",
        "group_map": {"vpn-eng": "eng", "vpn-ops": "ops"},
        "allow_http": True,
        "leeway": 0,
    }
    if not bearer_only:
        settings.update(client_id="ocgate", client_secret="ocgate-client-secret")
    config = tmp_path / "oidc.json"
    config.write_text(json.dumps(settings, indent=2))
    groups = tmp_path / "groups"
    groups.mkdir(exist_ok=True)
    (groups / "eng").write_text("route = 10.91.0.0/16\n")
    (groups / "ops").write_text("route = 10.92.0.0/16\n")
    overrides: dict[str, str | list[str]] = {
        "auth": f'"oidc[config={config},base-url={GATEWAY}]"',
        "config-per-group": str(groups),
        "max-ban-score": "50",
        "ban-points-wrong-password": "50",
        "ban-points-connection": "0",
        **(extra or {}),
    }
    if certificates is not None:  # auth lines are ANDed: certificate AND oidc.
        overrides["auth"] = ["certificate", str(overrides["auth"])]
        overrides["ca-cert"] = str(certificates.ca.cert_path)
        overrides["crl"] = str(certificates.crl_path)
        overrides["cert-user-oid"] = OID_UID.dotted_string
    return start_gateway(overrides)


def _browser_program(tmp_path: Path, user: str, password: str) -> Path:
    """openconnect's ``--external-browser`` takes a program name only: a wrapper with the user."""
    wrapper = tmp_path / f"browser-{user}.sh"
    command = shlex.join([sys.executable, str(BROWSER), "--user", user, "--password", password])
    wrapper.write_text(f'#!/bin/sh\nexec {command} "$@" 2>>{tmp_path}/browser.log\n')
    wrapper.chmod(0o755)
    return wrapper


def _script(pair: NetnsPair, *args: str) -> dict[str, object]:
    argv = [sys.executable, str(BROWSER), *args]
    proc = subprocess.run(
        pair.exec_argv(pair.client, argv), capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"{shlex.join(argv)}\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _mint(pair: NetnsPair, provider: OidcProvider, *, client: str = "ocgate") -> str:
    secret, redirect = {
        "ocgate": ("ocgate-client-secret", RETURN),
        "other-app": ("other-app-secret", "https://other.test/callback"),
    }[client]
    args = ["--mint", provider.issuer, "--client", client, "--secret", secret]
    result = _script(
        pair, *args, "--redirect-uri", redirect, "--user", "bob", "--password", "bobpass"
    )
    token = result["id_token"]
    assert isinstance(token, str)
    return token


def _split(env: dict[str, str]) -> list[str]:
    count = int(env.get("CISCO_SPLIT_INC", "0"))
    return sorted(env.get(f"CISCO_SPLIT_INC_{i}_ADDR", "") for i in range(count))


def _assert_banned(server: Server) -> None:
    server.wait_log(r"event=address-banned remote=198\.18\.0\.2", timeout=10)


# Successful logins --------------------------------------------------------------------------------


def test_external_browser_login_brings_up_the_tunnel_with_the_claimed_group(
    start_gateway: StartServer,
    provider: OidcProvider,
    openconnect: OpenConnectRunner,
    netns_pair: NetnsPair,
    tmp_path: Path,
) -> None:
    server = _gateway(start_gateway, provider, tmp_path)
    browser = _browser_program(tmp_path, "alice", "alicepass")
    client = openconnect.connect(server, extra=["--external-browser", str(browser)])
    env = client.wait_env(timeout=60)
    assert _split(env) == ["10.91.0.0"], env  # vpn-eng -> eng -> its config-per-group file.
    server.wait_log(r"event=login user='alice' group='eng' .*method=oidc", timeout=5)
    assert "sso-v2-browser-mode" not in client.output()  # openconnect never prints the XML.
    result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3)
    assert result.received == 3, result.output


def test_embedded_cookie_mode_with_the_anyconnect_user_agent(
    start_gateway: StartServer,
    provider: OidcProvider,
    openconnect: OpenConnectRunner,
    netns_pair: NetnsPair,
    tmp_path: Path,
) -> None:
    server = _gateway(start_gateway, provider, tmp_path)
    result = _script(netns_pair, "--embedded", GATEWAY, "--user", "bob", "--password", "bobpass")
    assert result["browser_mode"] is None, result  # Cisco's client keeps its embedded browser.
    assert result["final"] == f"{GATEWAY}/+CSCOE+/sso/final"
    cookie = result["session_token"]
    assert isinstance(cookie, str), result
    assert cookie
    server.wait_log(r"event=login user='bob' group='ops' .*method=oidc", timeout=5)
    client = openconnect.connect(server, cookie=f"webvpn={cookie}")
    env = client.wait_env(timeout=30)
    assert _split(env) == ["10.92.0.0"], env
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received == 3


def test_bearer_token_minted_by_the_provider(
    start_gateway: StartServer,
    provider: OidcProvider,
    openconnect: OpenConnectRunner,
    netns_pair: NetnsPair,
    tmp_path: Path,
) -> None:
    server = _gateway(start_gateway, provider, tmp_path, bearer_only=True)
    token = _mint(netns_pair, provider)
    client = openconnect.connect(server, extra=["--token-mode=oidc", f"--token-secret={token}"])
    env = client.wait_env(timeout=30)
    assert _split(env) == ["10.92.0.0"], env
    server.wait_log(r"event=login user='bob' group='ops' .*method=oidc-bearer", timeout=5)
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received == 3


# Refusals: each is shown to the client and counts toward a ban ---------------------------------


def test_tampered_bearer_token_is_refused_and_banned(
    start_gateway: StartServer,
    provider: OidcProvider,
    openconnect: OpenConnectRunner,
    netns_pair: NetnsPair,
    tmp_path: Path,
) -> None:
    server = _gateway(start_gateway, provider, tmp_path, bearer_only=True)
    header, payload, signature = _mint(netns_pair, provider).split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    run = openconnect.authenticate(
        server,
        user=None,
        stdin=NO_PASSWORD,
        extra=["--token-mode=oidc", f"--token-secret={tampered}"],
    )
    assert run.returncode != 0, run.describe()
    assert "signature does not verify" in run.stderr + run.stdout, run.describe()
    server.wait_log(r"event=login-failed .*signature does not verify", timeout=5)
    _assert_banned(server)


def test_expired_bearer_token_is_refused(
    start_gateway: StartServer,
    provider: OidcProvider,
    openconnect: OpenConnectRunner,
    netns_pair: NetnsPair,
    tmp_path: Path,
) -> None:
    server = _gateway(start_gateway, provider, tmp_path, bearer_only=True)
    provider.set_id_token_ttl(1)
    token = _mint(netns_pair, provider)
    time.sleep(2.5)
    run = openconnect.authenticate(
        server, user=None, stdin=NO_PASSWORD, extra=["--token-mode=oidc", f"--token-secret={token}"]
    )
    assert run.returncode != 0, run.describe()
    assert "the token has expired" in run.stderr + run.stdout, run.describe()
    _assert_banned(server)


def test_bearer_token_for_another_audience_is_refused(
    start_gateway: StartServer,
    provider: OidcProvider,
    openconnect: OpenConnectRunner,
    netns_pair: NetnsPair,
    tmp_path: Path,
) -> None:
    server = _gateway(start_gateway, provider, tmp_path, bearer_only=True)
    token = _mint(netns_pair, provider, client="other-app")
    run = openconnect.authenticate(
        server, user=None, stdin=NO_PASSWORD, extra=["--token-mode=oidc", f"--token-secret={token}"]
    )
    assert run.returncode != 0, run.describe()
    assert "required 'aud' claim" in run.stderr + run.stdout, run.describe()
    _assert_banned(server)


def test_browser_flow_with_the_wrong_audience_is_refused_through_openconnect(
    start_gateway: StartServer,
    provider: OidcProvider,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    # The gateway requires an audience the provider's ID tokens for "ocgate" do not carry: the
    # refusal travels back sealed, openconnect posts it and is shown the reason.
    server = _gateway(start_gateway, provider, tmp_path, audience="vpn.example.com")
    browser = _browser_program(tmp_path, "alice", "alicepass")
    run = openconnect.authenticate(
        server, user=None, stdin=NO_PASSWORD, extra=["--external-browser", str(browser)], timeout=60
    )
    assert run.returncode != 0, run.describe()
    assert "required 'aud' claim" in run.stderr + run.stdout, run.describe()
    server.wait_log(r"event=sso-return-refused .*required 'aud' claim", timeout=5)
    _assert_banned(server)


def test_replayed_and_foreign_tokens_are_refused(
    start_gateway: StartServer,
    provider: OidcProvider,
    netns_pair: NetnsPair,
    tmp_path: Path,
) -> None:
    server = _gateway(start_gateway, provider, tmp_path, extra={"max-ban-score": "200"})
    first = _script(
        netns_pair, "--embedded", GATEWAY, "--user", "bob", "--password", "bobpass",
        "--replay-return",
    )  # fmt: skip
    assert first["session_token"], first
    # The provider's answer replayed to the gateway: the login already has its verdict.
    assert first["replay_status"] == 400, first
    assert "already used" in str(first["replay_text"]), first
    # The token replayed on a new login (another dialog): bound to the login that asked for it.
    again = _script(
        netns_pair, "--embedded", GATEWAY, "--user", "bob", "--password", "bobpass",
        "--post-token", str(first["token"]),
    )  # fmt: skip
    assert again["session_token"] is None, again
    assert again["error"] == "the sign-in token was issued to another login", again
    # A token nobody issued.
    forged = _script(
        netns_pair, "--embedded", GATEWAY, "--user", "bob", "--password", "bobpass",
        "--post-token", "0" * 40,
    )  # fmt: skip
    assert forged["error"] == "the sign-in token is unknown or expired", forged
    log = server.log_text()
    assert log.count("event=login-failed") >= 2, server.describe()


# Certificate AND single sign-on ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("client-pki"))


@pytest.mark.parametrize(("browser_user", "accepted"), [("alice", True), ("bob", False)])
def test_certificate_and_sso_both_required_for_the_same_user(
    start_gateway: StartServer,
    provider: OidcProvider,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    pki: Pki,
    browser_user: str,
    accepted: bool,
) -> None:
    server = _gateway(
        start_gateway, provider, tmp_path, extra={"max-ban-score": "200"}, certificates=pki
    )
    password = {"alice": "alicepass", "bob": "bobpass"}[browser_user]
    browser = _browser_program(tmp_path, browser_user, password)
    cert = ["--certificate", str(pki.alice.cert_path), "--sslkey", str(pki.alice.key_path)]
    run = openconnect.authenticate(
        server,
        user=None,
        stdin=NO_PASSWORD,
        mode="--cookieonly",
        extra=[*cert, "--external-browser", str(browser)],
        timeout=60,
    )
    if accepted:
        assert run.returncode == 0, f"{run.describe()}\n{server.describe()}"
        server.wait_log(r"event=login user='alice' .*method=certificate\+oidc", timeout=5)
    else:
        assert run.returncode != 0, run.describe()
        refused = r"event=login-failed .*certificate is for user 'alice', not for 'bob'"
        server.wait_log(refused, timeout=5)
    # Without the certificate, no single sign-on is offered at all.
    bare = openconnect.authenticate(
        server, user=None, stdin=NO_PASSWORD, extra=["--external-browser", str(browser)]
    )
    assert bare.returncode != 0, bare.describe()


def test_logout_ends_the_session_and_signs_out_at_the_provider(
    start_gateway: StartServer,
    provider: OidcProvider,
    openconnect: OpenConnectRunner,
    netns_pair: NetnsPair,
    tmp_path: Path,
) -> None:
    server = _gateway(start_gateway, provider, tmp_path)
    result = _script(
        netns_pair, "--embedded", GATEWAY, "--user", "bob", "--password", "bobpass", "--logout"
    )
    # GET /logout went on to the provider's end-session page, which accepted the ID token hint
    # and the post-logout URI (node-oidc-provider answers 400 to a bad hint).
    visited = [str(url) for url in result["logout_visited"]]  # type: ignore[attr-defined]
    assert any(u.startswith(f"{provider.issuer}/session/end?id_token_hint=") for u in visited), (
        result
    )
    assert result["logout_status"] == 200, result
    server.wait_log(r"event=logout user='bob'", timeout=5)
    cookie = f"webvpn={result['session_token']}"
    client = openconnect.connect(server, cookie=cookie)
    assert client.wait(timeout=30) != 0  # The session is gone.
