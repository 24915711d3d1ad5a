"""Acceptance (issue 16): the web console's defences, against the real gateway.

One gateway for the module (``admin-listen`` on the veth address). Requests come over TLS from
the client namespace (source ``198.18.0.2``); the ban test attacks from the server namespace
(source ``198.18.0.1``) so that the other tests' source stays clean. What is checked:

* no change without a valid CSRF token, on every mutating route (missing, wrong, another
  session's token, a cross-site ``Origin``), and nothing changed behind the refusal;
* the session cookie is ``Secure``, ``HttpOnly``, ``SameSite=Strict`` (``__Host-``: ``Path=/``,
  no ``Domain``);
* five wrong administrator passwords ban the source: the sixth attempt, right password and code,
  is refused (403) while another source still works;
* every change, and every refused one, is a line of ``admin-audit-log`` naming who, what, the
  target, when and the outcome, and no password, OTP secret, session cookie or CSRF token;
* bearer tokens: unknown 401, read-only 403 on a change;
* the console process is ``ocgate: console``, runs as ``nobody`` with ``NoNewPrivs`` and no
  capabilities.
"""

from __future__ import annotations

import pwd
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._certs import ServerCert
from ._console import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Admin,
    ConsoleGateway,
    ConsoleHttp,
    Reply,
    start_console_gateway,
)
from ._netns import NetnsPair, run
from ._server import ServerKind, server_kind
from .conftest import add_diagnostic

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(180),
    pytest.mark.skipif(server_kind() is ServerKind.OCSERV, reason="the web console is ocgate's"),
]

OPS = Admin("ops", "ops-Secret-pw1", "admin", bytes(range(40, 60)))
GUARD = Admin("guard", "guard-Secret-pw2", "admin", bytes(range(60, 80)))
VIEWER = Admin("viewer", "viewer-Secret-pw3", "readonly", bytes(range(80, 100)))
ADMIN_TOKEN = "admin-token-0123456789abcdef"
READONLY_TOKEN = "readonly-token-0123456789abcdef"
VPN_OTP = {"alice": bytes(range(1, 21)), "bob": bytes(range(21, 41))}
CSRF_REFUSED = "CSRF token missing or invalid"

# Every route that changes something, with a body where it takes one. Targets exist (carol is
# a locked VPN user of the default set) or not (session 424242): the CSRF check comes first.
MUTATING: tuple[tuple[str, str, object], ...] = (
    ("POST", "/api/v1/sessions/424242/disconnect", None),
    ("POST", "/api/v1/sessions/424242/terminate", None),
    ("POST", "/api/v1/users", {"username": "mallory", "password": "mallory-pw-1", "groups": []}),
    ("PUT", "/api/v1/users/carol/password", {"password": "changed-pw-1"}),
    ("PUT", "/api/v1/users/carol/groups", {"groups": ["evil"]}),
    ("POST", "/api/v1/users/carol/lock", None),
    ("POST", "/api/v1/users/carol/unlock", None),
    ("DELETE", "/api/v1/users/carol", None),
    ("POST", "/api/v1/users/carol/otp", None),
    ("DELETE", "/api/v1/users/carol/otp", None),
    ("DELETE", "/api/v1/bans/192.0.2.7", None),
    ("POST", "/api/v1/server/reload", None),
    ("POST", "/api/v1/logout", None),
)
_IDS = [f"{m} {p}" for m, p, _ in MUTATING]


@pytest.fixture(scope="module")
def console(
    netns_pair: NetnsPair, server_cert: ServerCert, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleGateway]:
    workdir = tmp_path_factory.mktemp("console-security")
    tokens = workdir / "admin-tokens"
    tokens.write_text(f"{ADMIN_TOKEN} admin\n{READONLY_TOKEN} readonly\n")
    gateway = start_console_gateway(
        pair=netns_pair,
        cert=server_cert,
        workdir=workdir,
        admins=(OPS, GUARD, VIEWER),
        vpn_otp=VPN_OTP,
        overrides={"admin-token-file": str(tokens)},
    )
    try:
        yield gateway
    finally:
        gateway.server.stop()


@pytest.fixture(autouse=True)
def _server_log_on_failure(request: pytest.FixtureRequest, console: ConsoleGateway) -> None:
    add_diagnostic(request, "server log (console gateway)", console.server.describe)


@pytest.fixture(scope="module")
def ops(console: ConsoleGateway) -> ConsoleHttp:
    """The module's one administrator session (a TOTP step is accepted once per account)."""
    return console.admin_http(OPS.name)


def _passwd_text(console: ConsoleGateway) -> str:
    return console.vpn_passwd_path.read_text()


def _users(client: ConsoleHttp) -> dict[str, Any]:
    reply = client.get("/api/v1/users")
    assert reply.status == 200, reply.describe()
    return {u["username"]: u for u in reply.json()["users"]}


# Cookies ---------------------------------------------------------------------------------------


def test_session_cookie_is_secure_httponly_samesite_strict(ops: ConsoleHttp) -> None:
    assert ops.login_reply is not None
    cookie = ops.login_reply.set_cookies()[SESSION_COOKIE]
    assert "secure" in cookie, cookie
    assert "httponly" in cookie, cookie
    assert cookie.get("samesite", "").lower() == "strict", cookie
    assert cookie.get("path") == "/", cookie  # __Host-: Path=/ and no Domain.
    assert "domain" not in cookie, cookie
    assert len(cookie["value"]) >= 32, "a 32-byte random token, encoded"
    assert ops.csrf
    assert ops.csrf != cookie["value"]


def test_login_csrf_cookie_is_secure_and_same_site(console: ConsoleGateway) -> None:
    reply = console.http().request("GET", "/login", cookies={}, csrf=None)
    cookie = reply.set_cookies()[CSRF_COOKIE]
    assert "secure" in cookie, cookie
    assert cookie.get("samesite", "").lower() == "strict", cookie


def test_security_headers(console: ConsoleGateway, ops: ConsoleHttp) -> None:
    page = ops.get("/sessions")
    api = ops.get("/api/v1/me")
    for reply in (page, api):
        assert reply.status == 200, reply.describe()
        csp = reply.header("Content-Security-Policy") or ""
        assert "default-src 'self'" in csp, csp
        assert "frame-ancestors 'none'" in csp, csp
        assert "unsafe-inline" not in csp, csp
        assert reply.header("X-Content-Type-Options") == "nosniff"
        assert reply.header("Referrer-Policy") == "no-referrer"
    assert "no-store" in (api.header("Cache-Control") or "")
    assert api.json()["username"] == OPS.name
    assert api.json()["role"] == "admin"


# CSRF ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), MUTATING, ids=_IDS)
def test_no_change_without_a_valid_csrf_token(
    console: ConsoleGateway, ops: ConsoleHttp, method: str, path: str, body: object
) -> None:
    before_users = _users(ops)
    before_passwd = _passwd_text(console)
    for token in (None, "", "wrong-token", (ops.csrf or "") + "x", (ops.csrf or "")[:-1]):
        headers = {} if token is None else {"X-CSRF-Token": token}
        reply = ops.request(method, path, body=body, csrf=None, headers=headers)
        assert reply.status == 403, f"X-CSRF-Token: {token!r}\n{reply.describe()}"
        assert reply.json() == {"error": CSRF_REFUSED}, reply.describe()
    # The right token from a cross-site page is refused too.
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        reply = ops.request(method, path, body=body, headers=headers)
        assert reply.status == 403, f"{headers}\n{reply.describe()}"
    assert _users(ops) == before_users
    assert _passwd_text(console) == before_passwd
    assert ops.get("/api/v1/me").status == 200, "the session still works (logout was refused)"


def test_the_right_csrf_token_is_accepted(console: ConsoleGateway, ops: ConsoleHttp) -> None:
    # The control for the test above: the same session and a valid token change things.
    reply = ops.request("PUT", "/api/v1/users/bob/groups", body={"groups": ["csrf-ok"]})
    assert reply.status == 200, reply.describe()
    assert _users(ops)["bob"]["groups"] == ["csrf-ok"]
    assert re.search(r"^bob:csrf-ok:", _passwd_text(console), re.MULTILINE)


def test_login_needs_the_double_submit_token(console: ConsoleGateway) -> None:
    client = console.http()
    body = {"username": VIEWER.name, "password": VIEWER.password, "otp": "000000"}
    token, page = client.login_csrf()
    assert token, page.describe()
    for cookies, csrf in (({}, None), ({CSRF_COOKIE: token}, None), ({}, token),
                          ({CSRF_COOKIE: token}, token + "x")):  # fmt: skip
        reply = client.request("POST", "/api/v1/login", body=body, cookies=cookies, csrf=csrf)
        assert reply.status == 403, f"cookies={cookies} csrf={csrf}\n{reply.describe()}"
        assert SESSION_COOKIE not in reply.set_cookies()


def test_unauthenticated_requests_are_refused(console: ConsoleGateway) -> None:
    client = console.http()
    reply = client.get("/api/v1/sessions")
    assert reply.status == 401, reply.describe()
    page = client.get("/users")
    assert page.status in (302, 303, 307), page.describe()
    assert (page.header("Location") or "").endswith("/login"), page.describe()
    forged = client.get("/api/v1/sessions", cookies={SESSION_COOKIE: "A" * 43})
    assert forged.status == 401, forged.describe()


# Bearer tokens ---------------------------------------------------------------------------------


def test_bearer_tokens(console: ConsoleGateway) -> None:
    client = console.http()

    def bearer(token: str, method: str, path: str) -> Reply:
        auth = {"Authorization": f"Bearer {token}"}
        return client.request(method, path, headers=auth, cookies={}, csrf=None)

    assert bearer("unknown-token-0123456789abcdef", "GET", "/api/v1/sessions").status == 401
    assert bearer(READONLY_TOKEN, "GET", "/api/v1/sessions").status == 200
    refused = bearer(READONLY_TOKEN, "POST", "/api/v1/users/carol/unlock")
    assert refused.status == 403, refused.describe()
    assert refused.json() == {"error": "read-only account"}
    assert bearer(ADMIN_TOKEN, "GET", "/api/v1/users").status == 200


# Bans ------------------------------------------------------------------------------------------


def test_five_wrong_passwords_ban_the_source(console: ConsoleGateway, ops: ConsoleHttp) -> None:
    attacker = console.http(console.pair.server)  # Source 198.18.0.1.
    token, page = attacker.login_csrf()
    assert token, page.describe()
    for attempt in range(5):
        reply = attacker.try_login(GUARD.name, f"wrong-{attempt}", "000000", token=token)
        assert reply.status == 401, f"attempt {attempt + 1}\n{reply.describe()}"
        assert SESSION_COOKIE not in reply.set_cookies()
    code = console.clock.code(GUARD.name, GUARD.secret)
    banned = attacker.try_login(GUARD.name, GUARD.password, code, token=token)
    assert banned.status == 403, f"the sixth attempt was not refused\n{banned.describe()}"
    assert SESSION_COOKIE not in banned.set_cookies()
    with_token = attacker.get(
        "/api/v1/sessions", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert with_token.status == 403, f"banned, even with a token\n{with_token.describe()}"
    # Only that source: the client namespace's session still works.
    assert ops.get("/api/v1/me").status == 200
    logins = [
        e for e in console.audit_entries() if e["who"] == GUARD.name and e["action"] == "login"
    ]
    assert len(logins) >= 5, logins
    assert all(e["source"] == console.pair.server_addr for e in logins), logins
    assert all(e["outcome"].startswith("refused") for e in logins), logins
    assert GUARD.password not in console.audit_log.read_text()


# Audit log -------------------------------------------------------------------------------------


def _new_entries(console: ConsoleGateway, seen: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        entries = console.audit_entries()[seen:]
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.1)


def test_every_change_is_in_the_audit_log(console: ConsoleGateway, ops: ConsoleHttp) -> None:
    secret_password = "frank-Secret-pw9"
    new_user = {"username": "frank", "password": secret_password, "groups": ["audit"]}
    changes: list[tuple[str, str, object, str]] = [
        ("POST", "/api/v1/users", new_user, "frank"),
        ("PUT", "/api/v1/users/frank/password", {"password": secret_password + "2"}, "frank"),
        ("PUT", "/api/v1/users/frank/groups", {"groups": ["audit", "more"]}, "frank"),
        ("POST", "/api/v1/users/frank/lock", None, "frank"),
        ("POST", "/api/v1/users/frank/unlock", None, "frank"),
        ("POST", "/api/v1/users/frank/otp", None, "frank"),
        ("DELETE", "/api/v1/users/frank/otp", None, "frank"),
        ("DELETE", "/api/v1/users/frank", None, "frank"),
        ("POST", "/api/v1/server/reload", None, ""),
        ("POST", "/api/v1/sessions/424242/disconnect", None, "424242"),  # No such session.
    ]
    secrets = [secret_password, ops.session or "", ops.csrf or ""]
    start = time.time() - 1
    for method, path, body, target in changes:
        seen = len(console.audit_entries())
        reply = ops.request(method, path, body=body)
        if path.endswith("/otp") and method == "POST":
            assert reply.status == 200, reply.describe()
            secrets.append(reply.json()["secret"])
        entries = _new_entries(console, seen)
        assert len(entries) == 1, f"{method} {path} -> {reply.status}: {entries}"
        entry = entries[0]
        assert entry["who"] == OPS.name, entry
        assert entry["role"] == "admin", entry
        assert entry["source"] == console.pair.client_addr, entry
        assert entry["action"], entry
        assert target in entry["target"], entry
        assert start <= float(entry["time"]) <= time.time() + 1, entry
        if 200 <= reply.status < 300:
            assert entry["outcome"] == "ok", (reply.describe(), entry)
        else:
            assert entry["outcome"].startswith("refused"), (reply.describe(), entry)
    actions = [e["action"] for e in console.audit_entries()[-len(changes) :]]
    assert len(set(actions)) == len(changes), f"actions should tell changes apart: {actions}"
    text = console.audit_log.read_text()
    for secret in secrets:
        assert secret
        assert secret not in text, "a secret is in the audit log"
    api = ops.get("/api/v1/audit").json()["entries"]
    assert [e["action"] for e in api[-len(changes) :]] == actions
    log = console.server.log_text()
    for secret in secrets:
        assert secret not in log, "a secret is in the gateway's log"


def test_readonly_refusals_are_audited(console: ConsoleGateway) -> None:
    viewer = console.admin_http(VIEWER.name)
    seen = len(console.audit_entries())
    reply = viewer.request("POST", "/api/v1/users/carol/unlock")
    assert reply.status == 403, reply.describe()
    assert reply.json() == {"error": "read-only account"}
    entries = [e for e in _new_entries(console, seen) if e.get("who") == VIEWER.name]
    assert entries, console.audit_entries()[seen:]
    assert entries[-1]["outcome"].startswith("refused"), entries
    assert "carol" in entries[-1]["target"], entries


# The console process ---------------------------------------------------------------------------


def _child_titles(pid: int) -> dict[int, str]:
    """The supervisor's children as ``ps`` names them: pid -> title."""
    out = run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], check=False).stdout
    titles: dict[int, str] = {}
    for line in out.splitlines():
        pid_text, _, title = line.strip().partition(" ")
        titles[int(pid_text)] = title.strip()
    return titles


def _status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def test_console_process_is_unprivileged(console: ConsoleGateway, ops: ConsoleHttp) -> None:
    titles = _child_titles(console.server.pid)
    consoles = [pid for pid, title in titles.items() if title.startswith("ocgate: console")]
    assert len(consoles) == 1, f"one child named 'ocgate: console': {titles}"
    status = _status(consoles[0])
    nobody = pwd.getpwnam("nobody")
    assert status["Uid"].split() == [str(nobody.pw_uid)] * 4, status["Uid"]
    assert status["Gid"].split() == [str(nobody.pw_gid)] * 4, status["Gid"]
    assert status["NoNewPrivs"] == "1"
    for cap in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert int(status[cap], 16) == 0, f"{cap} = {status[cap]}"
    assert ops.get("/api/v1/me").status == 200  # And that is the process serving it.
