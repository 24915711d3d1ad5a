"""``max-same-clients`` holds at CONNECT, not only at login (hostile peers §4, ocserv §2).

A login checks the user's tunnels, but cookies outlive logins: a user who collects several cookies
while no tunnel is up could otherwise connect them all. With a limit above 1 the extra CONNECT is
refused; with a limit of 1 the newest connection wins and the older session is ended (its
openconnect is told to disconnect and exits; its cookie is dead).
"""

from __future__ import annotations

import re

import pytest

from ._openconnect import OpenConnectRunner
from ._server import Server, ServerKind, StartServer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(150)]

COOKIE_REJECTED = 2  # openconnect's exit status for "401 Cookie is not acceptable".


def _cookies(server: Server, openconnect: OpenConnectRunner, count: int) -> list[str]:
    cookies = []
    for _ in range(count):
        auth = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
        assert auth.returncode == 0, auth.describe()
        assert auth.cookie, auth.describe()
        cookies.append(auth.cookie)
    return cookies


def test_a_third_cookie_cannot_connect_with_max_same_clients_2(
    start_gateway: StartServer, openconnect: OpenConnectRunner, kind: ServerKind
) -> None:
    if kind is ServerKind.OCSERV:
        pytest.skip("ocserv 1.1.6 checks max-same-clients at login only")
    server = start_gateway({"max-same-clients": "2"})
    first, second, third = _cookies(server, openconnect, 3)  # No tunnel yet: all logins pass.
    a = openconnect.connect(server, cookie=first)
    a.wait_env()
    b = openconnect.connect(server, cookie=second)
    b.wait_env()
    offset = server.log_size()
    c = openconnect.connect(server, cookie=third)
    assert c.wait(30) != 0, c.describe()
    assert not c.env_file.exists(), "the third tunnel came up"
    server.wait_log(re.escape("max-same-clients (2) reached"), since=offset, timeout=10)
    assert a.proc.poll() is None, server.describe()
    assert b.proc.poll() is None, server.describe()


def test_with_max_same_clients_1_the_newest_session_replaces_the_older(
    start_gateway: StartServer, openconnect: OpenConnectRunner, kind: ServerKind
) -> None:
    if kind is ServerKind.OCSERV:
        pytest.skip("ocserv 1.1.6 refuses the second login instead")
    server = start_gateway({"max-same-clients": "1"})
    (first,) = _cookies(server, openconnect, 1)
    a = openconnect.connect(server, cookie=first)
    a.wait_env()
    (second,) = _cookies(server, openconnect, 1)  # A login with a tunnel up: allowed at limit 1.
    b = openconnect.connect(server, cookie=second)
    b.wait_env()
    assert a.wait(30) == 0 or a.proc.poll() is not None, a.describe()  # Told to disconnect.
    assert b.proc.poll() is None, b.describe()
    again = openconnect.connect(server, cookie=first)
    assert again.wait(30) == COOKIE_REJECTED, again.describe()  # The older session is over.
    server.assert_alive()
