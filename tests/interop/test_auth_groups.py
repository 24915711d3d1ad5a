"""Acceptance: group selection (``--authgroup``), per-group config files and unsafe names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._openconnect import OpenConnectRunner
from ._server import DEFAULT_USERS, Server, ServerKind, StartServer, User, server_kind

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(180),
    pytest.mark.skipif(server_kind() is ServerKind.OCSERV, reason="ocgate's group set-up"),
]

USERS = (
    User("alice", "alicepass", ("eng", "ops")),
    User("test6", "test6pass", ("../escape",)),
    *DEFAULT_USERS[1:],
)


def _start(start_gateway: StartServer, tmp_path: Path) -> Server:
    groups = tmp_path / "groups"
    groups.mkdir(exist_ok=True)
    (groups / "eng").write_text("route = 10.91.0.0/16\n")
    (groups / "ops").write_text("route = 10.92.0.0/16\nroute = 10.93.0.0/16\n")
    (tmp_path / "escape").write_text("route = 10.66.0.0/16\n")
    return start_gateway(
        {
            "select-group": ["eng[Engineering]", "ops[Operations]"],
            "config-per-group": str(groups),
        },
        users=USERS,
    )


def _split(env: dict[str, str]) -> list[str]:
    count = int(env.get("CISCO_SPLIT_INC", "0"))
    return sorted(env.get(f"CISCO_SPLIT_INC_{i}_ADDR", "") for i in range(count))


@pytest.mark.parametrize(
    ("authgroup", "group", "routes"),
    [
        ("Engineering", "eng", ["10.91.0.0"]),
        ("Operations", "ops", ["10.92.0.0", "10.93.0.0"]),
    ],
)
def test_authgroup_selects_the_group_routes(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    authgroup: str,
    group: str,
    routes: list[str],
) -> None:
    server = _start(start_gateway, tmp_path)
    client = openconnect.connect(
        server, user="alice", password="alicepass", extra=["--authgroup", authgroup]
    )
    env = client.wait_env(timeout=30)
    assert _split(env) == routes, env
    server.wait_log(rf"event=login user='alice' group='{group}'", timeout=5)


def test_group_name_with_a_path_is_refused(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    groups = tmp_path / "groups"
    groups.mkdir()
    (tmp_path / "escape").write_text("route = 10.66.0.0/16\n")
    server = start_gateway({"config-per-group": str(groups)}, users=USERS)
    result = openconnect.authenticate(
        server, user="test6", stdin="test6pass\n", mode="--cookieonly"
    )
    assert result.returncode != 0, result.describe()
    server.wait_log(r"login-failed user='test6'.*not a single path component", timeout=10)


def test_broken_per_user_file_refuses_that_user(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    users = tmp_path / "users"
    users.mkdir()
    (users / "alice").write_text("route = not-a-route\n")
    server = start_gateway({"config-per-user": str(users)}, users=USERS)
    result = openconnect.authenticate(
        server, user="alice", stdin="alicepass\n", mode="--cookieonly"
    )
    assert result.returncode != 0, result.describe()
    server.wait_log(r"login-failed user='alice'.*users/alice:1: route", timeout=10)
    ok = openconnect.authenticate(server, user="bob", stdin="bobpass\n", mode="--cookieonly")
    assert ok.returncode == 0, ok.describe()
