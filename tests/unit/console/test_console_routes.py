"""The console API route by route: CSRF, roles, audit, validation, backend errors."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from ocgate.console import ConsoleError
from ocgate.console._api import ROUTES, ApiRoute
from ocgate.control import Command
from tests.unit.console._fake import ADMIN, ADMIN_TOKEN, OTP_SECRET, READER, Harness

SAMPLE_BODIES: dict[str, dict[str, Any]] = {
    "add_user": {"username": "carol", "password": "s3cret-pass", "groups": ["staff", "ops"]},
    "set_password": {"password": "n3w-pass-word"},
    "set_groups": {"groups": ["ops"]},
}
CHANGES = [r for r in ROUTES if r.action]
MUTATING = [r for r in ROUTES if r.mutating and r.special != "login"]


def concrete(route: ApiRoute) -> str:
    path = route.path.replace("{id}", "7").replace("{name}", "alice")
    path = path.replace("{ip}", "192.0.2.9").replace("{path:path}", "flows")
    return "/api/v1" + path


def call(h: Harness, route: ApiRoute, headers: dict[str, str] | None = None) -> Any:
    body = SAMPLE_BODIES.get(route.handler)
    return h.client.request(route.method, concrete(route), json=body, headers=headers or {})


def audit(h: Harness) -> list[dict[str, Any]]:
    return [json.loads(line) for line in h.lines]


def test_route_table_is_complete() -> None:
    paths = {(r.method, r.path) for r in ROUTES}
    assert ("POST", "/sessions/{id}/disconnect") in paths
    assert ("DELETE", "/users/{name}/otp") in paths
    assert all(r.action for r in ROUTES if r.mutating and not r.special)
    assert not [r for r in ROUTES if not r.mutating and r.action]


@pytest.mark.parametrize("route", MUTATING, ids=lambda r: f"{r.method} {r.path}")
@pytest.mark.parametrize("token", [None, "", "forged-token-0123456789abcdef0123456"])
def test_csrf_refused_on_every_mutating_route(
    harness: Harness, route: ApiRoute, token: str | None
) -> None:
    harness.login()
    before = list(harness.backend.calls)
    headers = {} if token is None else {"X-CSRF-Token": token}
    response = call(harness, route, headers)
    assert response.status_code == 403
    assert response.json() == {"error": "CSRF token missing or invalid"}
    assert harness.backend.calls == before  # Nothing reached the backend.
    assert harness.client.get("/api/v1/me").status_code == 200  # Still logged in.
    entry = audit(harness)[-1]
    assert entry["outcome"] == "refused: CSRF token missing or invalid"
    assert entry["who"] == "root"


@pytest.mark.parametrize("route", CHANGES, ids=lambda r: f"{r.method} {r.path}")
def test_readonly_refused_on_every_change(harness: Harness, route: ApiRoute) -> None:
    csrf = harness.login(READER)
    before = list(harness.backend.calls)
    users = dict(harness.backend.users)
    response = call(harness, route, {"X-CSRF-Token": csrf})
    assert response.status_code == 403
    assert response.json() == {"error": "read-only account"}
    assert harness.backend.calls == before
    assert harness.backend.users == users
    entry = audit(harness)[-1]
    assert entry["action"] == route.action
    assert (entry["who"], entry["role"]) == ("viewer", "readonly")
    assert entry["outcome"] == "refused: read-only account"


@pytest.mark.parametrize("route", CHANGES, ids=lambda r: f"{r.method} {r.path}")
def test_every_change_is_audited_without_secrets(harness: Harness, route: ApiRoute) -> None:
    csrf = harness.login()
    response = call(harness, route, {"X-CSRF-Token": csrf})
    assert response.status_code == 200, response.text
    entry = audit(harness)[-1]
    assert entry["action"] == route.action
    assert (entry["who"], entry["role"], entry["outcome"]) == ("root", "admin", "ok")
    assert entry["source"] == "testclient"
    text = "\n".join(harness.lines)
    for secret in (ADMIN[1], ADMIN[2], OTP_SECRET, "s3cret-pass", "n3w-pass-word", csrf):
        assert secret not in text
    assert set(entry) == {"time", "who", "role", "source", "action", "target", "outcome"}


def test_audit_endpoint_lists_entries(harness: Harness) -> None:
    csrf = harness.login()
    harness.client.post("/api/v1/users/alice/lock", headers={"X-CSRF-Token": csrf})
    entries = harness.client.get("/api/v1/audit").json()["entries"]
    assert [e["action"] for e in entries] == ["login", "user.lock"]
    assert entries[-1]["target"] == "alice"
    assert entries == audit(harness)


def test_sessions_list_and_disconnect(harness: Harness) -> None:
    csrf = harness.login()
    users = harness.client.get("/api/v1/sessions").json()["users"]
    assert [(u["id"], u["username"], u["ipv4"], u["rx"]) for u in users] == [
        (7, "alice", "10.10.0.2", 1000)
    ]
    assert users[0]["dtls_cipher"].startswith("(DTLS1.2)")
    response = harness.client.post("/api/v1/sessions/7/disconnect", headers={"X-CSRF-Token": csrf})
    assert response.json() == {"ok": True}
    assert ("control", Command.DISCONNECT_ID, "7") in harness.backend.calls
    assert harness.client.get("/api/v1/sessions").json() == {"users": []}
    assert audit(harness)[-1]["target"] == "id 7"


def test_sessions_name_the_node_of_each_tunnel(harness: Harness) -> None:
    """With a session store shared by several gateways, ``show users`` lists the other nodes'
    tunnels too, each with the node that holds it (``daemon/_cluster.py`` ``remote_users``); a
    row from a server that names no node says ``""``."""
    alice = harness.backend.tunnels[7]
    harness.backend.tunnels = {
        7: dataclasses.replace(alice, node="gw-a"),
        9: dataclasses.replace(alice, id=9, username="bob", node="gw-b"),
        11: dataclasses.replace(alice, id=11, username="carol"),
    }
    harness.login(READER)
    users = harness.client.get("/api/v1/sessions").json()["users"]
    assert [(u["id"], u["username"], u["node"]) for u in users] == [
        (7, "alice", "gw-a"),
        (9, "bob", "gw-b"),
        (11, "carol", ""),
    ]


def test_control_error_is_409_with_message(harness: Harness) -> None:
    csrf = harness.login()
    response = harness.client.post("/api/v1/sessions/99/terminate", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 409
    assert response.json() == {"error": "ID 99 not found"}
    assert audit(harness)[-1]["outcome"] == "refused: ID 99 not found"


def test_backend_console_error_is_409(harness: Harness) -> None:
    csrf = harness.login()
    response = harness.client.post(
        "/api/v1/users",
        json={"username": "alice", "password": "pw"},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 409
    assert response.json() == {"error": "user 'alice' exists"}


def test_unexpected_error_is_500_without_detail(harness: Harness) -> None:
    csrf = harness.login()
    harness.backend.fail_with = RuntimeError("secret internal detail")
    response = harness.client.get("/api/v1/sessions")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    response = harness.client.post("/api/v1/server/reload", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 500
    assert "secret internal detail" not in response.text
    assert audit(harness)[-1]["outcome"] == "refused: internal error"


def test_console_error_from_control_read_is_409(harness: Harness) -> None:
    harness.login()
    harness.backend.fail_with = ConsoleError("the supervisor does not answer")
    response = harness.client.get("/api/v1/bans")
    assert response.status_code == 409
    assert response.json() == {"error": "the supervisor does not answer"}


def test_users_crud(harness: Harness) -> None:
    csrf = harness.login()
    h = {"X-CSRF-Token": csrf}
    body = {"username": "carol", "password": "pw-123", "groups": "staff, ops"}
    assert harness.client.post("/api/v1/users", json=body, headers=h).status_code == 200
    users = {u["username"]: u for u in harness.client.get("/api/v1/users").json()["users"]}
    assert users["carol"] == {"username": "carol", "groups": ["staff", "ops"], "locked": False,
                              "otp": False}  # fmt: skip
    assert audit(harness)[-1]["target"] == "carol groups=staff,ops"
    harness.client.put("/api/v1/users/carol/groups", json={"groups": ["dev"]}, headers=h)
    harness.client.post("/api/v1/users/carol/lock", headers=h)
    users = {u["username"]: u for u in harness.client.get("/api/v1/users").json()["users"]}
    assert users["carol"]["groups"] == ["dev"]
    assert users["carol"]["locked"] is True
    harness.client.post("/api/v1/users/carol/unlock", headers=h)
    assert harness.backend.users["carol"].locked is False
    assert harness.client.delete("/api/v1/users/carol", headers=h).status_code == 200
    assert "carol" not in harness.backend.users
    response = harness.client.delete("/api/v1/users/carol", headers=h)
    assert response.status_code == 409


def test_user_config_and_otp(harness: Harness) -> None:
    csrf = harness.login()
    h = {"X-CSRF-Token": csrf}
    assert harness.client.get("/api/v1/users/alice/config").json() == {
        "text": "route = 10.0.0.0/8\n"
    }
    enrolled = harness.client.post("/api/v1/users/bob/otp", headers=h).json()
    assert enrolled["secret"] == OTP_SECRET
    assert enrolled["uri"].startswith("otpauth://totp/")
    svg = enrolled["qr_svg"]
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert "<title>" in svg
    assert "<script" not in svg
    assert "style=" not in svg
    assert harness.backend.users["bob"].otp is True
    assert harness.client.delete("/api/v1/users/bob/otp", headers=h).status_code == 200
    assert harness.backend.users["bob"].otp is False


def test_bans_list_and_unban(harness: Harness) -> None:
    csrf = harness.login()
    bans = harness.client.get("/api/v1/bans").json()["bans"]
    assert bans == [{"ip": "192.0.2.9", "score": 80, "expires": 1_700_000_600.0, "since": 0.0}]
    response = harness.client.delete("/api/v1/bans/192.0.2.9", headers={"X-CSRF-Token": csrf})
    assert response.json() == {"ok": True}
    assert ("control", Command.UNBAN_IP, "192.0.2.9") in harness.backend.calls
    response = harness.client.delete("/api/v1/bans/not-an-ip", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 400
    assert response.json() == {"error": "ip: not an IP address"}


def test_server_status_and_reload(harness: Harness) -> None:
    csrf = harness.login()
    server = harness.client.get("/api/v1/server").json()
    assert server["status"]["server_pid"] == 10
    assert server["warnings"] == ["ocgate.conf:12: unknown key 'foo'"]
    assert harness.client.post("/api/v1/server/reload", headers={"X-CSRF-Token": csrf}).json() == {
        "ok": True
    }
    assert harness.backend.reloads == 1


BAD_INPUTS: list[tuple[str, str, Any, str]] = [
    ("POST", "/api/v1/users", {"username": "a:b", "password": "x"}, "username"),
    ("POST", "/api/v1/users", {"username": "", "password": "x"}, "username"),
    ("POST", "/api/v1/users", {"username": "#x", "password": "x"}, "username"),
    ("POST", "/api/v1/users", {"username": " x", "password": "x"}, "username"),
    ("POST", "/api/v1/users", {"username": "a\nb", "password": "x"}, "username"),
    ("POST", "/api/v1/users", {"username": "x" * 65, "password": "x"}, "username"),
    ("POST", "/api/v1/users", {"username": 5, "password": "x"}, "username"),
    ("POST", "/api/v1/users", {"username": "a\u2028b", "password": "x"}, "username"),
    ("POST", "/api/v1/users", {"username": "a\x85b", "password": "x"}, "username"),
    ("POST", "/api/v1/users", {"username": "a\ud800", "password": "x"}, "Unicode"),
    ("POST", "/api/v1/users", {"username": "ok", "password": "\udcff"}, "Unicode"),
    (
        "POST",
        "/api/v1/users",
        {"username": "ok", "password": "x", "groups": ["\udcffg"]},
        "Unicode",
    ),
    ("POST", "/api/v1/users", {"username": "ok", "password": ""}, "password"),
    ("POST", "/api/v1/users", {"username": "ok", "password": "a\x00"}, "password"),
    ("POST", "/api/v1/users", {"username": "ok", "password": "x" * 513}, "password"),
    ("POST", "/api/v1/users", {"username": "ok", "password": "x", "groups": ["a"]}, "groups"),
    ("POST", "/api/v1/users", {"username": "ok", "password": "x", "groups": ["a:b"]}, "groups"),
    ("POST", "/api/v1/users", {"username": "ok", "password": "x", "groups": [1]}, "groups"),
    ("POST", "/api/v1/users", {"username": "ok", "password": "x", "groups": 3}, "groups"),
    ("POST", "/api/v1/users", {"username": "ok", "password": "x", "admin": True}, "unknown"),
    ("POST", "/api/v1/users", ["ok"], "object"),
    ("PUT", "/api/v1/users/alice/groups", {"groups": ["ok"] * 33}, "groups"),
    ("PUT", "/api/v1/users/alice/password", {}, "password"),
    ("POST", "/api/v1/sessions/abc/disconnect", None, "id"),
    ("POST", "/api/v1/sessions/1234567890123456789/terminate", None, "id"),
    ("POST", "/api/v1/users/a%3Ab/lock", None, "name"),
]


@pytest.mark.parametrize(("method", "path", "body", "word"), BAD_INPUTS)
def test_input_validation(harness: Harness, method: str, path: str, body: Any, word: str) -> None:
    csrf = harness.login()
    before = dict(harness.backend.users)
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    content = None if body is None else json.dumps(body).encode()  # Escapes surrogates.
    response = harness.client.request(method, path, content=content, headers=headers)
    assert response.status_code == 400
    assert word in response.json()["error"]
    assert harness.backend.users == before
    assert audit(harness)[-1]["outcome"].startswith("refused: ")


def test_body_not_json_and_too_large(harness: Harness) -> None:
    csrf = harness.login()
    h = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    response = harness.client.post("/api/v1/users", content=b"{nope", headers=h)
    assert response.status_code == 400
    response = harness.client.post("/api/v1/users", content=b" " * 20000, headers=h)
    assert response.status_code == 413
    response = harness.client.post("/api/v1/users", content=b"[" * 9000, headers=h)
    assert response.status_code == 400


def test_login_body_validation(harness: Harness) -> None:
    harness.client.get("/login")
    token = harness.client.cookies["__Host-ocgate-csrf"]
    response = harness.client.post(
        "/api/v1/login", json={"username": "root"}, headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 400
    response = harness.client.post(
        "/api/v1/login",
        json={"username": "root", "password": "x", "otp": "1", "extra": 1},
        headers={"X-CSRF-Token": token},
    )
    assert response.status_code == 400
    assert "extra" in response.json()["error"]


@pytest.mark.parametrize(
    "path",
    ["flows", "endpoints", "endpoints/aabbcc/interfaces", "top", "timeline", "exporters"],
)
def test_telemetry_allowed_paths_reach_the_collector(harness: Harness, path: str) -> None:
    harness.login()
    response = harness.client.get(f"/api/v1/telemetry/{path}?user=alice&limit=5")
    assert response.status_code == 200
    assert response.json() == {"flows": [], "next_cursor": None}
    assert harness.backend.calls[-1] == ("telemetry", path, "user=alice&limit=5")


@pytest.mark.parametrize(
    "path",
    [
        "stream",
        "openapi.json",
        "flows/1",
        "endpoints/zz/interfaces",
        "endpoints/%2e%2e/flows",
        "x",
        "flows%3Fa",
    ],
)
def test_telemetry_path_allow_list(harness: Harness, path: str) -> None:
    harness.login()
    response = harness.client.get(f"/api/v1/telemetry/{path}")
    assert response.status_code == 404
    assert not [c for c in harness.backend.calls if c[0] == "telemetry"]


def test_telemetry_status_is_passed_through(harness: Harness) -> None:
    harness.login()
    harness.backend.telemetry_answer = (503, b'{"error":"no collector runs"}')
    response = harness.client.get("/api/v1/telemetry/flows")
    assert response.status_code == 503
    assert response.json() == {"error": "no collector runs"}


def test_telemetry_is_get_only(harness: Harness) -> None:
    response = harness.client.post(
        "/api/v1/telemetry/flows", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 405
    assert "error" in response.json()


def test_openapi_lists_every_route(harness: Harness) -> None:
    document = harness.client.get("/api/v1/openapi.json").json()
    for route in ROUTES:
        path = "/api/v1" + re.sub(r"\{([a-z_]+)(?::path)?\}", r"{\1}", route.path)
        assert route.method.lower() in document["paths"][path]


def test_openapi_document_is_valid(harness: Harness) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(harness.client.get("/api/v1/openapi.json").json())
