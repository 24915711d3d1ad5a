"""Pages, static assets and security headers of the console."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from ocgate.console._app import CSP
from ocgate.console._pages import PAGES
from tests.unit.console._fake import ADMIN_TOKEN, READER, Harness

PAGE_PATHS = ["/sessions", "/users", "/users/alice", "/bans", "/server", "/telemetry"]
EXPECTED_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'"
)
SELECTORS: dict[str, list[str]] = {
    "/sessions": ['id="sessions-table"', 'id="confirm"', 'id="confirm-yes"', 'id="confirm-no"'],
    "/users": [
        'id="add-user"',
        'id="new-username"',
        'id="new-password"',
        'id="new-groups"',
        'id="add-user-submit"',
        'id="users-table"',
    ],
    "/users/alice": [
        'id="set-password"',
        'id="password-new"',
        'id="password-submit"',
        'id="groups-form"',
        'id="groups-input"',
        'id="groups-submit"',
        'id="otp-enroll"',
        'id="otp-secret"',
        'id="otp-uri"',
        'id="otp-qr"',
        'id="otp-reset"',
        'id="user-config"',
    ],
    "/bans": ['id="bans-table"'],
    "/server": ['id="status"', 'id="warnings"', 'id="reload"', 'id="audit-table"'],
    "/telemetry": [
        'id="flow-filter"',
        *(f'id="f-{name}"' for name in ("user", "udid", "process", "host", "since", "until")),
        'id="f-search"',
        'id="flows-table"',
        'svg id="chart-top-talkers"',
        'svg id="chart-top-destinations"',
        'svg id="chart-timeline"',
        'id="endpoints-table"',
        'id="exporters-table"',
    ],
}


def test_csp_is_the_contract_one() -> None:
    assert CSP == EXPECTED_CSP


@pytest.mark.parametrize(
    "path", ["/login", "/sessions", "/api/v1/me", "/static/console.js", "/nope", "/api/v1/x"]
)
def test_security_headers_on_every_response(harness: Harness, path: str) -> None:
    response = harness.client.get(path)
    assert response.headers["content-security-policy"] == EXPECTED_CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "server" not in response.headers or "uvicorn" not in response.headers["server"]


def test_api_and_pages_are_not_cached(harness: Harness) -> None:
    harness.login()
    for path in ["/api/v1/me", "/sessions", "/login"]:
        assert harness.client.get(path).headers["cache-control"] == "no-store"


def test_unknown_route_is_json_404(harness: Harness) -> None:
    response = harness.client.get("/api/v1/nothing")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}


@pytest.mark.parametrize("path", PAGE_PATHS)
def test_pages_redirect_to_login_without_session(harness: Harness, path: str) -> None:
    response = harness.client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_pages_ignore_bearer_tokens(harness: Harness) -> None:
    response = harness.client.get("/sessions", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 303


def test_root_and_login_redirect_when_logged_in(harness: Harness) -> None:
    assert harness.client.get("/").headers["location"] == "/sessions"
    harness.login()
    response = harness.client.get("/login")
    assert response.status_code == 303
    assert response.headers["location"] == "/sessions"


def test_login_page_selectors(harness: Harness) -> None:
    html = harness.client.get("/login").text
    for selector in ['id="username"', 'id="password"', 'id="otp"', 'id="login"']:
        assert selector in html
    assert re.search(r'<p id="login-error" role="alert">', html)
    assert 'for="username"' in html
    assert 'for="otp"' in html


@pytest.mark.parametrize("path", PAGE_PATHS)
def test_page_shell(harness: Harness, path: str) -> None:
    csrf = harness.login(READER)
    response = harness.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    for href in ["/sessions", "/users", "/bans", "/server", "/telemetry"]:
        assert f'<a href="{href}"' in html
    assert 'id="logout"' in html
    assert '<span id="whoami">viewer (readonly)</span>' in html
    assert '<div id="flash" role="status" aria-live="polite">' in html
    assert f'<meta name="csrf-token" content="{csrf}">' in html
    for selector in SELECTORS[path]:
        assert selector in html, selector
    # The CSP forbids inline code and style: the pages have none.
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)
    # Every input has a label.
    for input_id in re.findall(r'<input id="([^"]+)"', html):
        assert f'for="{input_id}"' in html, input_id


def test_user_page_escapes_the_name(harness: Harness) -> None:
    harness.login()
    html = harness.client.get("/users/a%3Cb%3E%26c").text
    assert "a&lt;b&gt;&amp;c" in html
    assert "<b>" not in html


def test_user_page_refuses_bad_names(harness: Harness) -> None:
    harness.login()
    assert harness.client.get("/users/a%3Ab").status_code == 404


def test_every_page_has_a_route() -> None:
    assert set(PAGES) == {"sessions", "users", "user", "bans", "server", "telemetry"}


@pytest.mark.parametrize(
    ("name", "media"), [("console.js", "text/javascript"), ("console.css", "text/css")]
)
def test_static_assets_are_served_from_the_package(harness: Harness, name: str, media: str) -> None:
    response = harness.client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)
    packaged = (resources.files("ocgate.console") / "static" / name).read_bytes()
    assert response.content == packaged
    assert len(packaged) > 1000


def test_unknown_static_asset_is_404(harness: Harness) -> None:
    assert harness.client.get("/static/other.js").status_code == 404
    assert harness.client.get("/static/..%2F_app.py").status_code == 404


def test_script_uses_no_third_party_code_nor_html_injection() -> None:
    script = (resources.files("ocgate.console") / "static" / "console.js").read_text()
    assert "innerHTML" not in script
    assert "eval(" not in script
    urls = set(re.findall(r"https?://[^\"'\s]+", script))
    assert urls == {"http://www.w3.org/2000/svg"}
    # The API paths the pages call exist in the route table.
    for selector in ["#sessions-table", "#users-table", "#bans-table", "#flows-table"]:
        assert selector in script
    assert "rect" in script
    assert '"bar"' in script
    assert '"data-key"' in script


def test_stylesheet_has_no_external_resources() -> None:
    css = (resources.files("ocgate.console") / "static" / "console.css").read_text()
    assert "url(" not in css
    assert "@import" not in css


def test_sessions_page_has_a_node_column_hidden_until_several_nodes(harness: Harness) -> None:
    """``ocgate ctl show users`` adds a node column when its listing spans several gateways
    (``control/_format_text.py`` ``format_users``); the sessions table has the same column,
    hidden in the page and shown by the script only when the rows name more than one node."""
    harness.login(READER)
    html = harness.client.get("/sessions").text
    head = re.search(r'<table id="sessions-table">.*?</thead>', html, re.DOTALL)
    assert head is not None
    headers = re.findall(r'<th scope="col"([^>]*)>([^<]*)</th>', head.group(0))
    assert [name for _, name in headers] == [
        "User",
        "Group",
        "Remote",
        "VPN address",
        "Transport",
        "DTLS cipher",
        "RX",
        "TX",
        "Rate RX / TX",
        "Since",
        "Node",
        "Actions",
    ]
    assert headers[10][0] == ' class="node" hidden'
    script = (resources.files("ocgate.console") / "static" / "console.js").read_text()
    assert '"#sessions-table th.node"' in script
    assert 'user.node || ""' in script
    assert "nodeHeader.hidden = !showNodes" in script
