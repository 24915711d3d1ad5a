"""Login, sessions, cookies, bans, rate limits and bearer tokens of the console."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from tests.unit.console._fake import (
    ADMIN,
    ADMIN_TOKEN,
    BASE,
    READ_TOKEN,
    READER,
    Harness,
    make_harness,
)


def _login(h: Harness, username: str, password: str, otp: str) -> tuple[int, dict[str, str]]:
    h.client.get("/login")
    token = h.client.cookies.get("__Host-ocgate-csrf")
    response = h.client.post(
        "/api/v1/login",
        json={"username": username, "password": password, "otp": otp},
        headers={"X-CSRF-Token": token or ""},
    )
    return response.status_code, response.json()


def test_login_success_sets_strict_cookie_and_returns_csrf(harness: Harness) -> None:
    harness.client.get("/login")
    token = harness.client.cookies["__Host-ocgate-csrf"]
    response = harness.client.post(
        "/api/v1/login",
        json={"username": ADMIN[0], "password": ADMIN[1], "otp": ADMIN[2]},
        headers={"X-CSRF-Token": token},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "root"
    assert body["role"] == "admin"
    assert len(body["csrf"]) >= 40
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("__Host-ocgate-console="))
    attributes = [part.strip() for part in session.split(";")]
    assert "Secure" in attributes
    assert "HttpOnly" in attributes
    assert "SameSite=Strict" in attributes
    assert "Path=/" in attributes
    assert not any(a.lower().startswith("domain") for a in attributes)
    value = attributes[0].split("=", 1)[1]
    assert len(value) >= 43  # 32 random bytes, base64url.
    me = harness.client.get("/api/v1/me").json()
    assert me == {"username": "root", "role": "admin", "csrf": body["csrf"]}
    assert json.loads(harness.lines[-1])["action"] == "login"
    assert json.loads(harness.lines[-1])["outcome"] == "ok"


def test_login_page_sets_double_submit_cookie(harness: Harness) -> None:
    response = harness.client.get("/login")
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("__Host-ocgate-csrf=")
    )
    assert "Secure" in cookie
    assert "SameSite=Strict" in cookie
    token = harness.client.cookies["__Host-ocgate-csrf"]
    assert f'<meta name="csrf-token" content="{token}">' in response.text


@pytest.mark.parametrize(
    ("password", "otp"),
    [("wrong password", ADMIN[2]), (ADMIN[1], "000000"), (ADMIN[1], "12ab56")],
    ids=["password", "totp", "malformed-otp"],
)
def test_login_failure(harness: Harness, password: str, otp: str) -> None:
    status, body = _login(harness, ADMIN[0], password, otp)
    assert status == 401
    assert body == {"error": "invalid user name, password or code"}
    assert "__Host-ocgate-console" not in harness.client.cookies
    assert harness.client.get("/api/v1/me").status_code == 401
    entry = json.loads(harness.lines[-1])
    assert entry["action"] == "login"
    assert entry["outcome"].startswith("refused")
    for key, value in entry.items():
        if key != "time":
            assert password not in value
            assert otp not in value


def test_unknown_admin_fails_like_wrong_password(harness: Harness) -> None:
    assert _login(harness, "nobody", "x", "123456")[0] == 401


def test_login_without_double_submit_token_is_refused(harness: Harness) -> None:
    harness.client.get("/login")
    response = harness.client.post(
        "/api/v1/login", json={"username": ADMIN[0], "password": ADMIN[1], "otp": ADMIN[2]}
    )
    assert response.status_code == 403
    assert response.json() == {"error": "CSRF token missing or invalid"}
    response = harness.client.post(
        "/api/v1/login",
        json={"username": ADMIN[0], "password": ADMIN[1], "otp": ADMIN[2]},
        headers={"X-CSRF-Token": "not-the-cookie-value-at-all-0123456789"},
    )
    assert response.status_code == 403
    assert not [c for c in harness.backend.calls if c[0] == "verify_admin"]


def test_five_failures_ban_the_source(harness: Harness) -> None:
    for _ in range(4):
        assert _login(harness, ADMIN[0], "bad", ADMIN[2])[0] == 401
    assert _login(harness, ADMIN[0], "bad", ADMIN[2])[0] == 401
    # Banned now: even the right credentials are refused, and so is the API.
    status, body = _login(harness, *ADMIN)
    assert status == 403
    assert "failed logins" in body["error"]
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert harness.client.get("/api/v1/sessions", headers=headers).status_code == 403
    assert any(json.loads(line)["action"] == "source.ban" for line in harness.lines)
    # The ban ends after ban_seconds (600 s by default).
    harness.clock.now += 601
    assert _login(harness, *ADMIN)[0] == 200


def test_failures_outside_the_window_do_not_ban(harness: Harness) -> None:
    for _ in range(4):
        assert _login(harness, ADMIN[0], "bad", ADMIN[2])[0] == 401
    harness.clock.now += 301
    assert _login(harness, ADMIN[0], "bad", ADMIN[2])[0] == 401
    assert _login(harness, *ADMIN)[0] == 200


def test_success_clears_failures(harness: Harness) -> None:
    for _ in range(4):
        _login(harness, ADMIN[0], "bad", ADMIN[2])
    assert _login(harness, *ADMIN)[0] == 200
    harness.client.cookies.clear()
    for _ in range(4):
        assert _login(harness, ADMIN[0], "bad", ADMIN[2])[0] == 401
    assert _login(harness, *ADMIN)[0] == 200


def test_login_rate_limit() -> None:
    h = make_harness(max_failures=100)
    with h.client:
        for _ in range(10):
            assert _login(h, ADMIN[0], "bad", ADMIN[2])[0] == 401
        status, body = _login(h, *ADMIN)
        assert status == 429
        assert "error" in body
        h.clock.now += 61
        assert _login(h, *ADMIN)[0] == 200


def test_unknown_bearer_tokens_count_towards_the_ban(harness: Harness) -> None:
    for _ in range(5):
        response = harness.client.get(
            "/api/v1/sessions", headers={"Authorization": "Bearer wrong-token-0123456789"}
        )
        assert response.status_code == 401
        assert response.json() == {"error": "invalid bearer token"}
    response = harness.client.get(
        "/api/v1/sessions", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 403


def test_bearer_tokens_need_no_cookie_nor_csrf(harness: Harness) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert harness.client.get("/api/v1/sessions", headers=headers).status_code == 200
    response = harness.client.post("/api/v1/server/reload", headers=headers)
    assert response.status_code == 200
    assert harness.backend.reloads == 1
    me = harness.client.get("/api/v1/me", headers=headers).json()
    assert me["role"] == "admin"
    assert me["username"].startswith("token:")
    assert ADMIN_TOKEN not in "".join(harness.lines)


def test_readonly_bearer_token_cannot_change(harness: Harness) -> None:
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert harness.client.get("/api/v1/users", headers=headers).status_code == 200
    response = harness.client.post("/api/v1/server/reload", headers=headers)
    assert response.status_code == 403
    assert response.json() == {"error": "read-only account"}
    assert harness.backend.reloads == 0


@pytest.mark.parametrize("header", ["Basic cm9vdDpwdw==", "Bearer", "Bearer " + "x" * 600])
def test_malformed_authorization_is_401(harness: Harness, header: str) -> None:
    response = harness.client.get("/api/v1/sessions", headers={"Authorization": header})
    assert response.status_code == 401


def test_api_without_credentials_is_401(harness: Harness) -> None:
    response = harness.client.get("/api/v1/sessions")
    assert response.status_code == 401
    assert response.json() == {"error": "not logged in"}


def test_logout_ends_the_session(harness: Harness) -> None:
    csrf = harness.login()
    response = harness.client.post("/api/v1/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200
    assert any("Max-Age=0" in c for c in response.headers.get_list("set-cookie"))
    assert harness.client.get("/api/v1/me").status_code == 401
    entry = json.loads(harness.lines[-1])
    assert (entry["action"], entry["who"], entry["outcome"]) == ("logout", "root", "ok")


def test_stolen_cookie_is_useless_after_logout(harness: Harness) -> None:
    csrf = harness.login()
    cookie = harness.client.cookies["__Host-ocgate-console"]
    harness.client.post("/api/v1/logout", headers={"X-CSRF-Token": csrf})
    other = TestClient(harness.client.app, base_url=BASE)
    other.cookies.set("__Host-ocgate-console", cookie)
    assert other.get("/api/v1/me").status_code == 401


def test_session_idle_and_absolute_expiry() -> None:
    h = make_harness(session_idle=100.0, session_max=250.0)
    with h.client:
        h.login()
        h.clock.now += 90
        assert h.client.get("/api/v1/me").status_code == 200
        h.clock.now += 90
        assert h.client.get("/api/v1/me").status_code == 200
        h.clock.now += 90  # 270 s after login: past the absolute limit.
        assert h.client.get("/api/v1/me").status_code == 401
        h.login()
        h.clock.now += 101
        assert h.client.get("/api/v1/me").status_code == 401


def test_session_table_is_bounded() -> None:
    h = make_harness(max_sessions=2)
    with h.client:
        first = TestClient(h.client.app, base_url=BASE)
        h.login(client=first)
        for _ in range(2):
            h.login(client=TestClient(h.client.app, base_url=BASE))
        assert first.get("/api/v1/me").status_code == 401  # The oldest was evicted.


def test_readonly_login(harness: Harness) -> None:
    harness.login(READER)
    assert harness.client.get("/api/v1/me").json()["role"] == "readonly"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.test"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_requests_are_refused(harness: Harness, headers: dict[str, str]) -> None:
    csrf = harness.login()
    response = harness.client.post(
        "/api/v1/server/reload", headers={"X-CSRF-Token": csrf, **headers}
    )
    assert response.status_code == 403
    assert response.json() == {"error": "cross-site request refused"}
    assert harness.backend.reloads == 0


def test_same_origin_headers_are_accepted(harness: Harness) -> None:
    csrf = harness.login()
    headers = {"X-CSRF-Token": csrf, "Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    assert harness.client.post("/api/v1/server/reload", headers=headers).status_code == 200


def test_cross_site_login_is_refused(harness: Harness) -> None:
    harness.client.get("/login")
    token = harness.client.cookies["__Host-ocgate-csrf"]
    response = harness.client.post(
        "/api/v1/login",
        json={"username": ADMIN[0], "password": ADMIN[1], "otp": ADMIN[2]},
        headers={"X-CSRF-Token": token, "Origin": "https://evil.test"},
    )
    assert response.status_code == 403
