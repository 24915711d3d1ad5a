"""Acceptance: any name the password file holds logs in (issue 12 §1, first bullet).

ocserv checks a user name only where it becomes a file name: the per-user config lookup
(``config-per-user``; ocserv 1.5.1 refuses a name that is not one safe path component there and
logs why). Without a per-user directory, ``sp@c/al``, quotes and UTF-8 log in like anyone else.
The password file is written by each server's own ``ocpasswd``-compatible tool.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ._openconnect import OpenConnectRunner
from ._server import DEFAULT_USERS, ServerKind, StartServer, User, server_kind

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

ODD_USERS = (
    User("sp@c/al", "!@#$%^&*()<>"),
    User("o'ne\"il!", 'it\'s "quoted"'),
    User("jürgen.müller", "pässwörd€"),
    User("user@example.com", "mail pass"),
)


@pytest.mark.parametrize("user", ODD_USERS, ids=["slash-at", "quotes-bang", "utf8", "email"])
def test_any_name_in_the_password_file_logs_in(
    start_gateway: StartServer, openconnect: OpenConnectRunner, user: User
) -> None:
    server = start_gateway(users=(*DEFAULT_USERS, *ODD_USERS))
    offset = server.log_size()
    result = openconnect.authenticate(
        server, user=user.name, stdin=user.password + "\n", mode="--cookieonly"
    )
    assert result.returncode == 0, result.describe()
    assert result.cookie, result.describe()
    # The tunnel comes up with the cookie as well (the CONNECT finds the session by it).
    client = openconnect.connect(server, cookie=result.cookie)
    env = client.wait_env()
    assert env.get("INTERNAL_IP4_ADDRESS"), client.describe()
    if server.kind is ServerKind.OCGATE:
        pattern = re.escape(f"event=login user={user.name!r}")
        server.wait_log(pattern, since=offset, timeout=10)
    assert user.password not in server.log_text(), "the password must never be logged"


@pytest.mark.xfail(
    server_kind() is ServerKind.OCSERV,
    reason="ocserv 1.1.6 logs sp@c/al in, looking up config-per-user/sp@c/al (the name check "
    "came with ocserv 1.5.1)",
    strict=True,
)
def test_per_user_lookup_refuses_a_name_that_is_not_one_path_component(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    users = tmp_path / "users"
    users.mkdir()
    (users / "alice").write_text("route = 10.44.0.0/16\n")
    server = start_gateway({"config-per-user": str(users)}, users=(*DEFAULT_USERS, ODD_USERS[0]))
    offset = server.log_size()
    refused = openconnect.authenticate(
        server, user="sp@c/al", stdin="!@#$%^&*()<>\n", mode="--cookieonly"
    )
    assert refused.returncode != 0, refused.describe()
    assert not refused.stdout.strip(), refused.describe()
    server.wait_log(
        r"event=login-failed user='sp@c/al' .*session settings refused: "
        r"user 'sp@c/al' is not a single path component",
        since=offset,
        timeout=10,
    )
    # A safe name in the same configuration gets its per-user file.
    ok = openconnect.authenticate(server, user="alice", stdin="alicepass\n", mode="--cookieonly")
    assert ok.returncode == 0, ok.describe()
    server.assert_alive()


UTF8_GROUP = "Ingeniería-開発"
UTF8_LABEL = "Ingeniería — Madrid"


def _response_heads(stderr: str) -> list[list[str]]:
    """The header lines of each response in openconnect's ``--dump-http-traffic`` output."""
    heads: list[list[str]] = []
    inside = False
    for line in stderr.splitlines():
        if line.startswith("Got HTTP response:"):
            heads.append([])
            inside = True
        elif line.startswith("HTTP body length") or not line.strip():
            inside = False
        elif inside:
            heads[-1].append(line.rstrip())
    return heads


@pytest.mark.xfail(
    server_kind() is ServerKind.OCSERV,
    reason="ocserv 1.1.6 sends 'Content-Type: text/xml' without a charset",
    strict=True,
)
def test_utf8_group_names_reach_the_form_intact_and_select(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    groups = tmp_path / "groups"
    groups.mkdir()
    (groups / UTF8_GROUP).write_text("route = 10.91.0.0/16\n")
    users = (User("alice", "alicepass", (UTF8_GROUP, "ops")), *DEFAULT_USERS[1:])
    server = start_gateway(
        {"select-group": [f"{UTF8_GROUP}[{UTF8_LABEL}]", "ops"], "config-per-group": str(groups)},
        users=users,
    )
    offset = server.log_size()
    result = openconnect.authenticate(
        server,
        user="alice",
        stdin="alicepass\n",
        mode="--authenticate",
        extra=["--authgroup", UTF8_LABEL, "-v", "-v", "--dump-http-traffic"],
    )
    assert result.returncode == 0, result.describe()
    assert result.cookie, result.describe()
    # The form's option arrives byte-for-byte (openconnect prints the body lines it received).
    assert f'<option value="{UTF8_GROUP}"' in result.stderr, result.describe()
    assert f">{UTF8_LABEL}</option>" in result.stderr, result.describe()
    # Every AggAuth reply declares UTF-8, in the XML declaration and in Content-Type.
    heads = _response_heads(result.stderr)
    assert heads, result.describe()
    for head in heads:
        assert any(h.lower() == "content-type: text/xml; charset=utf-8" for h in head), head
    declarations = [line for line in result.stderr.splitlines() if line.startswith("< <?xml")]
    assert len(declarations) == len(heads), result.describe()
    assert all('encoding="UTF-8"' in line for line in declarations), declarations
    if server.kind is ServerKind.OCGATE:
        server.wait_log(
            re.escape(f"event=login user='alice' group={UTF8_GROUP!r}"), since=offset, timeout=10
        )
    # The group's own file (a UTF-8 file name) applies to the tunnel.
    client = openconnect.connect(server, cookie=result.cookie)
    env = client.wait_env()
    count = int(env.get("CISCO_SPLIT_INC", "0"))
    routes = {env.get(f"CISCO_SPLIT_INC_{i}_ADDR") for i in range(count)}
    assert routes == {"10.91.0.0"}, env
