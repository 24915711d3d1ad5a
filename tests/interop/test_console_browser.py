"""Acceptance (issue 16): the web console in headless Chromium, against the real gateway.

One gateway for the module: the console on ``198.18.0.1:8443``, VPN logins with password and
TOTP (``plain[passwd,otp]``), and the NVM collector on UDP 2055. The browser (Debian's chromium
driven by Playwright, :mod:`._browser`) runs in the client namespace, as a remote administrator's
would; openconnect runs there too. Each page is photographed into
``test-artifacts/console-screenshots/`` for review.

The scenario of the issue, step by step:

* an administrator logs in with password and TOTP (a wrong code first: the page says so);
* a real openconnect client's session appears on ``/sessions`` without a reload; the admin
  disconnects it (confirmation dialog), the row goes, and the client does not come back: as with
  ``occtl disconnect`` in ocserv, the session's cookie dies with it, so openconnect exits and the
  cookie is refused afterwards;
* the admin creates a user on ``/users``, enrolls OTP on ``/users/NAME`` and reads the secret
  shown once; that user logs in with openconnect (password and a code computed from the
  secret); the admin locks the user and the next login fails;
* ``/telemetry`` shows flows from the bench's nvzFlow generator and a flow exported from inside a
  tunnel, attributed to the tunnel's VPN user, with a bar chart;
* a read-only administrator sees the pages but the server refuses every change made with that
  session's own cookie and CSRF token (403), whatever the page shows.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyotp
import pytest

from tests.unit.nvm.nvm_collector_lib import TEMPLATES

from ._browser import PageProblems, chromium, missing, new_page, screenshot
from ._certs import ServerCert
from ._console import (
    SESSION_COOKIE,
    Admin,
    ConsoleGateway,
    ConsoleHttp,
    b32,
    start_console_gateway,
)
from ._netns import NetnsPair, enter_netns
from ._openconnect import OpenConnect, OpenConnectRunner
from ._rawclient import AGGAUTH_HEADERS, LoginFailed, aggauth_login, init_xml, open_conn
from ._server import SERVER_TUN4, ServerKind, server_kind
from .conftest import add_diagnostic
from .test_nvm_gateway import SEND, _flow_267

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(240),
    pytest.mark.skipif(server_kind() is ServerKind.OCSERV, reason="the web console is ocgate's"),
    pytest.mark.skipif(missing() is not None, reason=missing() or ""),
]

ROOT = Admin("root", "root-Secret-pw1", "admin", bytes(range(100, 120)))
ALPHA = Admin("alpha", "alpha-Secret-pw2", "admin", bytes(range(120, 140)))
VIEWER = Admin("viewer", "viewer-Secret-pw3", "readonly", bytes(range(140, 160)))
VPN_OTP = {"alice": bytes(range(1, 21)), "bob": bytes(range(21, 41))}
BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_nvm_ingest.py"
GENERATOR_HOST = "bench-generator.example"
COOKIE_REJECTED = 2  # openconnect's exit status when the server refuses the cookie.
UI_TIMEOUT_MS = 15_000
# What the telemetry page shows: VPN users of the flow rows, the keys of the bar charts.
_TELEMETRY_SNAPSHOT = """() => {
  const all = (selector) => Array.from(document.querySelectorAll(selector));
  return {
    users: all("#flows-table tr.flow td.vpn-user").map((e) => e.textContent.trim()),
    talkers: all("svg#chart-top-talkers rect.bar").map((e) => e.getAttribute("data-key")),
    destinations: all("svg#chart-top-destinations rect.bar").map((e) => e.getAttribute("data-key")),
    timeline: all("svg#chart-timeline rect.bar").length,
  };
}"""


@pytest.fixture(scope="module")
def console(
    netns_pair: NetnsPair, server_cert: ServerCert, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleGateway]:
    workdir = tmp_path_factory.mktemp("console-browser")
    gateway = start_console_gateway(
        pair=netns_pair,
        cert=server_cert,
        workdir=workdir,
        admins=(ROOT, ALPHA, VIEWER),
        vpn_otp=VPN_OTP,
        overrides={
            "nvm-listen": "udp://0.0.0.0:2055",
            "nvm-store": f"sqlite:///{workdir}/nvm.sqlite",
            "nvm-allow": f"{netns_pair.client_addr}/32",  # The generator; besides the VPN pool.
            # Three wrong VPN passwords ban a source (the bans page test); connections are free.
            "max-ban-score": "30",
            "ban-points-wrong-password": "10",
            "ban-points-connection": "0",
        },
    )
    try:
        yield gateway
    finally:
        gateway.server.stop()


@pytest.fixture(scope="module")
def browser(console: ConsoleGateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with chromium(console.pair.client, tmp_path_factory.mktemp("chromium")) as found:
        yield found


def _login_page(page: Page, admin: Admin, code: str) -> None:
    page.fill("#username", admin.name)
    page.fill("#password", admin.password)
    page.fill("#otp", code)
    page.click("#login")


@pytest.fixture(scope="module")
def admin_state(browser: Browser, console: ConsoleGateway) -> Any:
    """The cookies of one administrator login through the login page (reused by the tests)."""
    page = new_page(browser)
    page.goto(f"{console.url}/login")
    _login_page(page, ROOT, console.clock.code(ROOT.name, ROOT.secret))
    page.wait_for_url(f"{console.url}/sessions", timeout=UI_TIMEOUT_MS)
    state = page.context.storage_state()
    page.context.close()
    return state


@pytest.fixture
def admin_page(browser: Browser, admin_state: Any) -> Iterator[Page]:
    page = new_page(browser, storage_state=admin_state)
    problems = PageProblems(page)
    try:
        yield page
    finally:
        page.context.close()
    problems.assert_none()


@pytest.fixture(autouse=True)
def _server_log_on_failure(request: pytest.FixtureRequest, console: ConsoleGateway) -> None:
    add_diagnostic(request, "server log (console gateway)", console.server.describe)


@pytest.fixture
def vpn(
    request: pytest.FixtureRequest, netns_pair: NetnsPair, tmp_path: Path
) -> Iterator[OpenConnectRunner]:
    """openconnect in the client namespace; unlike the ``openconnect`` fixture this leaves the
    namespace's other processes (the module's browser) alone at teardown."""
    runner = OpenConnectRunner(netns_pair, tmp_path / "openconnect")
    add_diagnostic(request, "openconnect", runner.describe)
    try:
        yield runner
    finally:
        runner.close_all()


def _cookie(
    vpn: OpenConnectRunner, console: ConsoleGateway, user: str, password: str, code: str
) -> str:
    auth = vpn.authenticate(console.server, user=user, stdin=f"{password}\n{code}\n")
    assert auth.returncode == 0, f"{auth.describe()}\n{console.server.describe()}"
    assert auth.cookie, auth.describe()
    return auth.cookie


def _tunnel(vpn: OpenConnectRunner, console: ConsoleGateway, user: str) -> OpenConnect:
    password = console.vpn_users[user].password
    code = console.clock.code(f"vpn:{user}", b32(console.vpn_otp[user]))
    client = vpn.connect(console.server, cookie=_cookie(vpn, console, user, password, code))
    client.wait_env()
    return client


# Login -----------------------------------------------------------------------------------------


def test_admin_logs_in_with_password_and_totp(browser: Browser, console: ConsoleGateway) -> None:
    page = new_page(browser)
    problems = PageProblems(page)
    try:
        page.goto(f"{console.url}/users")
        page.wait_for_url(f"{console.url}/login")  # Not logged in: sent to the login page.
        screenshot(page, "01-login")
        wrong = pyotp.TOTP(b32(bytes(20))).now()  # A code of another secret.
        _login_page(page, ALPHA, wrong)
        # The page says why (the box is always laid out: wait for text in it).
        page.locator("#login-error", has_text=re.compile(r"\S")).wait_for(timeout=UI_TIMEOUT_MS)
        assert page.get_attribute("#login-error", "role") == "alert"
        assert page.url == f"{console.url}/login"
        screenshot(page, "02-login-refused")
        _login_page(page, ALPHA, console.clock.code(ALPHA.name, ALPHA.secret))
        page.wait_for_url(f"{console.url}/sessions", timeout=UI_TIMEOUT_MS)
        assert page.inner_text("#whoami").strip() == "alpha (admin)"
        for href in ("/sessions", "/users", "/bans", "/server", "/telemetry"):
            assert page.locator(f'nav a[href="{href}"]').count() == 1, href
        cookies = {c["name"]: c for c in page.context.cookies()}
        session = cookies[SESSION_COOKIE]
        assert session["secure"]
        assert session["httpOnly"]
        assert session["sameSite"] == "Strict"
        assert page.evaluate("document.cookie").find(SESSION_COOKIE) == -1, "HttpOnly"
        page.click("#logout")
        page.wait_for_url(f"{console.url}/login")
        page.goto(f"{console.url}/sessions")
        page.wait_for_url(f"{console.url}/login")  # The session ended on the server.
    finally:
        page.context.close()
    problems.assert_none()
    logins = [e for e in console.audit_entries() if e.get("who") == ALPHA.name]
    assert [e["outcome"] == "ok" for e in logins[:2]] == [False, True], logins


# Sessions --------------------------------------------------------------------------------------


def test_session_appears_and_disconnect_ends_it(
    admin_page: Page, console: ConsoleGateway, vpn: OpenConnectRunner
) -> None:
    page = admin_page
    page.goto(f"{console.url}/sessions")
    page.evaluate("window.ocgateNoReload = 1")  # Gone if the page reloads.
    assert page.locator('#sessions-table tr[data-user="alice"]').count() == 0
    password = console.vpn_users["alice"].password
    code = console.clock.code("vpn:alice", b32(VPN_OTP["alice"]))
    cookie = _cookie(vpn, console, "alice", password, code)
    client = vpn.connect(console.server, cookie=cookie)
    address = client.wait_env()["INTERNAL_IP4_ADDRESS"]
    row = page.locator('#sessions-table tr[data-user="alice"]')
    row.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    assert page.evaluate("window.ocgateNoReload") == 1, "the table updated without a reload"
    text = row.inner_text()
    for expected in ("alice", "eng", address, console.pair.client_addr):
        assert expected in text, f"{expected!r} not in the row: {text!r}"
    assert row.get_attribute("data-id")
    screenshot(page, "03-sessions")
    dialog = page.locator("dialog#confirm")
    row.locator("button.disconnect").click()
    dialog.wait_for(state="visible")
    page.click("#confirm-no")  # Changed their mind: nothing happens.
    dialog.wait_for(state="hidden")
    time.sleep(2.5)
    assert row.is_visible(), "a declined confirmation disconnected the session"
    assert client.proc.poll() is None, client.describe()
    row.locator("button.disconnect").click()
    dialog.wait_for(state="visible")
    screenshot(page, "04-sessions-confirm")
    page.click("#confirm-yes")
    row.wait_for(state="detached", timeout=UI_TIMEOUT_MS)
    flash = page.locator("#flash")
    assert flash.inner_text().strip(), "the page reported the disconnect"
    assert flash.get_attribute("class") != "error", flash.inner_text()
    # ocserv semantics: a disconnected session's cookie is dead, so openconnect gives up.
    client.wait(30)
    again = vpn.connect(console.server, cookie=cookie)
    assert again.wait(30) == COOKIE_REJECTED, again.describe()
    assert not again.env_file.exists(), again.describe()
    time.sleep(2.5)  # One more refresh of the page: alice did not come back.
    assert page.locator('#sessions-table tr[data-user="alice"]').count() == 0


# Users and OTP ---------------------------------------------------------------------------------


def test_create_user_enroll_otp_login_then_lock(
    admin_page: Page, console: ConsoleGateway, vpn: OpenConnectRunner
) -> None:
    page = admin_page
    page.goto(f"{console.url}/users")
    page.locator("#users-table").wait_for()
    page.fill("#new-username", "erin")
    page.fill("#new-password", "erin-Secret-pw4")
    page.fill("#new-groups", "eng, ops")
    page.click("#add-user-submit")
    row = page.locator('#users-table tr[data-user="erin"]')
    row.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    assert row.locator("td.locked").inner_text().strip() == "no"
    line = next(
        x for x in console.vpn_passwd_path.read_text().splitlines() if x.startswith("erin:")
    )
    assert line.split(":")[1] == "eng,ops", line  # The same file `ocgate passwd` edits.
    assert "erin-Secret-pw4" not in line
    screenshot(page, "05-users")

    row.locator("a.user-detail").click()
    page.wait_for_url(f"{console.url}/users/erin")
    screenshot(page, "06-user")
    page.click("#otp-enroll")
    page.locator("#otp-secret").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    secret = page.inner_text("#otp-secret").strip()
    assert re.fullmatch(r"[A-Z2-7]{16,}=*", secret), secret
    uri = page.inner_text("#otp-uri").strip()
    assert uri.startswith("otpauth://totp/"), uri
    assert pyotp.parse_uri(uri).secret == secret
    assert page.locator("#otp-qr svg").count() == 1, "the QR code is an inline SVG"
    screenshot(page, "07-user-otp")
    page.reload()  # Shown once: a new visit does not show the secret again.
    assert secret not in page.content()

    code = pyotp.TOTP(secret).now()
    _cookie(vpn, console, "erin", "erin-Secret-pw4", code)

    page.goto(f"{console.url}/users")
    row = page.locator('#users-table tr[data-user="erin"]')
    row.locator("button.lock").click()
    page.locator('#users-table tr[data-user="erin"] td.locked', has_text="yes").wait_for(
        timeout=UI_TIMEOUT_MS
    )
    screenshot(page, "08-users-locked")
    offset = console.server.log_size()
    next_code = pyotp.TOTP(secret).at(time.time() + 30)  # Valid but for the lock.
    refused = vpn.authenticate(console.server, user="erin", stdin=f"erin-Secret-pw4\n{next_code}\n")
    assert refused.returncode != 0, refused.describe()
    assert "COOKIE=" not in refused.stdout, refused.describe()
    console.server.wait_log(r"login-failed user='erin'.*locked", since=offset, timeout=10)


# Telemetry -------------------------------------------------------------------------------------


def test_telemetry_shows_generator_and_tunnel_flows(
    admin_page: Page, console: ConsoleGateway, vpn: OpenConnectRunner
) -> None:
    pair = console.pair
    client = _tunnel(vpn, console, "bob")
    vpn_ip = client.wait_env()["INTERNAL_IP4_ADDRESS"]
    now = int(time.time())
    messages = [TEMPLATES.hex(), _flow_267(vpn_ip, now, "tunnel-probe.exe").hex()]
    pair.run_in(pair.client, [sys.executable, "-c", SEND, vpn_ip, SERVER_TUN4, *messages])
    _run_generator(pair)

    page = admin_page
    page.goto(f"{console.url}/telemetry")
    flows = page.locator("#flows-table tr.flow")
    deadline = time.monotonic() + 20
    while True:
        rows = [flows.nth(i).inner_text() for i in range(flows.count())]
        if any("tunnel-probe.exe" in r for r in rows) and any(GENERATOR_HOST in r for r in rows):
            break
        assert time.monotonic() < deadline, f"flows shown: {rows}\n{console.server.describe()}"
        page.click("#f-submit")
        time.sleep(1)
    tunnel_row = flows.filter(has_text="tunnel-probe.exe").first
    assert tunnel_row.locator("td.vpn-user").inner_text().strip() == "bob"
    generated = flows.filter(has_text=GENERATOR_HOST).first
    assert generated.locator("td.vpn-user").inner_text().strip() in ("", "-", "—")
    screenshot(page, "09-telemetry")

    page.fill("#f-user", "bob")
    page.click("#f-submit")
    wanted = {"users": ["bob"], "talkers": ["bob"], "destinations": ["intranet.corp.test"]}
    deadline = time.monotonic() + 15
    while True:  # The page redraws asynchronously: read table and charts in one go.
        shown = page.evaluate(_TELEMETRY_SNAPSHOT)
        if {k: sorted(set(shown[k])) for k in wanted} == wanted and shown["timeline"] >= 1:
            break
        assert time.monotonic() < deadline, f"filtered on bob, the page shows {shown}"
        time.sleep(0.3)
    for chart in ("top-talkers", "top-destinations", "timeline"):
        svg = page.locator(f"svg#chart-{chart}")
        named = svg.get_attribute("aria-labelledby") or svg.get_attribute("aria-label")
        assert named or svg.locator("title").count(), f"chart {chart} has no accessible name"
    screenshot(page, "10-telemetry-bob")
    # Done with bob's tunnel: the other button of the sessions page ends it for good too.
    page.goto(f"{console.url}/sessions")
    row = page.locator('#sessions-table tr[data-user="bob"]')
    row.locator("button.terminate").click()
    page.locator("dialog#confirm").wait_for(state="visible")
    page.click("#confirm-yes")
    row.wait_for(state="detached", timeout=UI_TIMEOUT_MS)
    client.wait(30)


def _bench_generator() -> Callable[..., int]:
    """``send_flows`` of bench/bench_nvm_ingest.py (the ingest benchmark's traffic)."""
    spec = importlib.util.spec_from_file_location("bench_nvm_ingest", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    send_flows: Callable[..., int] = module.send_flows
    return send_flows


def _run_generator(pair: NetnsPair) -> None:
    """Send a burst of the bench generator's flows from the client namespace (an exporter
    outside the tunnel: stored without a VPN user), labelled with GENERATOR_HOST."""
    send_flows = _bench_generator()
    errors: list[BaseException] = []

    def send() -> None:
        try:
            enter_netns(pair.client)  # This thread only; its sockets live in the namespace.
            send_flows(pair.server_addr, 2055, 40, hostname=GENERATOR_HOST, process="bench.exe")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=send, name="bench-generator")
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the generator did not finish"
    if errors:
        raise errors[0]


# Bans, server, narrow window -------------------------------------------------------------------


def _unbanned_row_shown(row: Locator) -> bool:
    """The row is gone or says "not banned". The live table is redrawn every few seconds, so the
    row may go between two calls: read its text once, without waiting for it to come back."""
    texts = row.all_inner_texts()
    return not texts or "not banned" in texts[0]


def test_bans_server_and_narrow_pages(
    admin_page: Page, browser: Browser, admin_state: Any, console: ConsoleGateway
) -> None:
    page = admin_page
    banned = _ban_the_server_namespace(console)
    page.goto(f"{console.url}/bans")
    row = page.locator(f'#bans-table tr[data-ip="{banned}"]')
    row.wait_for(timeout=UI_TIMEOUT_MS)
    screenshot(page, "11-bans")
    row.locator("button.unban").click()
    page.locator("#flash", has_text=banned).wait_for(timeout=UI_TIMEOUT_MS)
    deadline = time.monotonic() + 10
    while not _unbanned_row_shown(row):
        assert time.monotonic() < deadline, f"still banned: {row.all_inner_texts()}"
        time.sleep(0.2)
    assert _vpn_login_form(console, console.pair.server), "the unbanned address is still refused"
    page.goto(f"{console.url}/server")
    page.locator("#status dt").first.wait_for(timeout=UI_TIMEOUT_MS)
    audit = page.locator("#audit-table")
    audit.locator("text=root").first.wait_for(timeout=UI_TIMEOUT_MS)
    screenshot(page, "12-server")
    seen = len(console.audit_entries())
    page.click("#reload")
    page.locator("#flash", has_text=re.compile(r"\S")).wait_for(timeout=UI_TIMEOUT_MS)
    assert page.get_attribute("#flash", "class") != "error", page.inner_text("#flash")
    reloads = [e for e in console.audit_entries()[seen:] if e["who"] == ROOT.name]
    assert [e["outcome"] for e in reloads] == ["ok"], reloads
    narrow = new_page(browser, storage_state=admin_state, width=400, height=800)
    try:
        narrow.goto(f"{console.url}/sessions")
        narrow.locator("#sessions-table").wait_for()
        width = narrow.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"the page is {width}px wide in a 400px window"
        screenshot(narrow, "13-sessions-400px")
    finally:
        narrow.context.close()


def _vpn_login_form(console: ConsoleGateway, ns: str) -> bool:
    """Whether a new connection from ``ns`` gets the VPN login form (a banned source does not)."""
    try:
        conn = open_conn(ns, console.host, 443, pin=console.server.pin)
    except OSError:
        return False
    try:
        init = init_xml(console.server.url)
        reply = conn.request("POST", "/", headers=AGGAUTH_HEADERS, body=init)
    except OSError:
        return False
    finally:
        conn.close()
    return reply is not None and reply.status == 200 and b"<form" in reply.body


def _ban_the_server_namespace(console: ConsoleGateway) -> str:
    """Wrong VPN passwords from the server namespace until the gateway bans 198.18.0.1."""
    source = console.pair.server_addr
    pattern = rf"event=address-banned remote={re.escape(source)}\b"
    offset = console.server.log_size()
    for attempt in range(6):
        if re.search(pattern, console.server.log_since(offset)):
            break
        conn = open_conn(console.pair.server, console.host, 443, pin=console.server.pin)
        with pytest.raises(LoginFailed):
            aggauth_login(conn, console.server.url, "alice", [f"wrong-{attempt}"])
        conn.close()
    console.server.wait_log(pattern, since=offset, timeout=10)
    assert not _vpn_login_form(console, console.pair.server), "banned, yet served a login form"
    return source


# Read-only -------------------------------------------------------------------------------------


def test_readonly_account_cannot_change_anything(browser: Browser, console: ConsoleGateway) -> None:
    page = new_page(browser)
    problems = PageProblems(page)
    try:
        page.goto(f"{console.url}/login")
        # With the keyboard only: the form starts focused, Tab moves on, Enter submits.
        assert page.evaluate("document.activeElement.id") == "username"
        code = console.clock.code(VIEWER.name, VIEWER.secret)
        for text in (VIEWER.name, VIEWER.password):
            page.keyboard.type(text)
            page.keyboard.press("Tab")
        page.keyboard.type(code)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{console.url}/sessions", timeout=UI_TIMEOUT_MS)
        assert page.inner_text("#whoami").strip() == "viewer (readonly)"
        page.goto(f"{console.url}/users")
        page.locator('#users-table tr[data-user="alice"]').wait_for(timeout=UI_TIMEOUT_MS)
        # The page offers no change (the server would refuse it: below).
        assert page.locator("#add-user").is_hidden()
        assert page.locator('#users-table tr[data-user="alice"] button.lock').is_hidden()
        screenshot(page, "14-readonly-users")
        cookie = {c["name"]: c["value"] for c in page.context.cookies()}[SESSION_COOKIE]
    finally:
        page.context.close()
    problems.assert_none()
    # The server, not the page, refuses: the session's own cookie and CSRF token.
    viewer = ConsoleHttp(console.pair.client, console.host, 8443, console.cert.cert_path)
    viewer.session = cookie
    me = viewer.get("/api/v1/me")
    assert me.status == 200, me.describe()
    viewer.csrf = me.json()["csrf"]
    passwd_before = console.vpn_passwd_path.read_text()
    otp_before = console.vpn_otp_path.read_text()
    changes: list[tuple[str, str, object]] = [
        ("POST", "/api/v1/users", {"username": "eve", "password": "eve-pw-12345", "groups": []}),
        ("PUT", "/api/v1/users/alice/password", {"password": "hijacked-pw-1"}),
        ("PUT", "/api/v1/users/alice/groups", {"groups": ["admins"]}),
        ("POST", "/api/v1/users/alice/lock", None),
        ("POST", "/api/v1/users/carol/unlock", None),
        ("DELETE", "/api/v1/users/bob", None),
        ("POST", "/api/v1/users/alice/otp", None),
        ("DELETE", "/api/v1/users/alice/otp", None),
        ("POST", "/api/v1/sessions/1/disconnect", None),
        ("POST", "/api/v1/sessions/1/terminate", None),
        ("DELETE", "/api/v1/bans/192.0.2.9", None),
        ("POST", "/api/v1/server/reload", None),
    ]
    for method, path, body in changes:
        reply = viewer.request(method, path, body=body)
        assert reply.status == 403, f"{method} {path}\n{reply.describe()}"
        assert reply.json() == {"error": "read-only account"}, reply.describe()
    assert console.vpn_passwd_path.read_text() == passwd_before
    assert console.vpn_otp_path.read_text() == otp_before
    assert viewer.get("/api/v1/sessions").status == 200  # Looking is allowed.
