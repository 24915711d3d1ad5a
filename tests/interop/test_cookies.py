"""Acceptance: a session cookie survives a detach and dies with a logout (BYE)."""

from __future__ import annotations

import contextlib
import signal

import pytest

from ._netns import NetnsPair
from ._openconnect import OpenConnectRunner
from ._rawclient import aggauth_login, connect_tunnel, open_conn
from ._server import SERVER_TUN4, ServerKind, StartServer
from ._traffic import ping
from .test_ops import wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

# openconnect exit status when the server refuses the cookie ("401 Cookie is not acceptable").
COOKIE_REJECTED = 2


@pytest.mark.parametrize("detach", [signal.SIGHUP, signal.SIGKILL], ids=["sighup", "sigkill"])
def test_cookie_reconnect_keeps_address_and_logout_kills_cookie(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    detach: signal.Signals,
    kind: ServerKind,
) -> None:
    # Random addresses: with predictable-ips a fresh login would get the same address anyway, so
    # only an address kept by the session proves that the reconnect resumed it. ocserv 1.1.6 frees
    # the lease when the tunnel goes and honours only the X-CSTP-Address hint of an in-process
    # reconnect (a new openconnect process sends none), so it passes only with predictable-ips.
    predictable = "true" if kind is ServerKind.OCSERV else "false"
    server = start_gateway({"predictable-ips": predictable})
    auth = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    assert auth.returncode == 0, auth.describe()
    cookie = auth.cookie
    assert cookie, auth.describe()

    first = openconnect.connect(server, cookie=cookie)
    env_a = first.wait_env()
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=1).received == 1

    # SIGHUP: detach without BYE; SIGKILL: the client just vanishes. Either way the cookie lives on.
    first.send_signal(detach)
    first.wait(15)

    second = openconnect.connect(server, cookie=cookie)
    env_b = second.wait_env()
    assert env_b["INTERNAL_IP4_ADDRESS"] == env_a["INTERNAL_IP4_ADDRESS"], second.describe()
    assert env_b.get("INTERNAL_IP6_ADDRESS") == env_a.get("INTERNAL_IP6_ADDRESS"), second.describe()
    result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=2)
    assert result.received == 2, f"{result.output}\n{server.describe()}"

    # SIGINT: BYE = logout. The cookie must be dead afterwards.
    assert second.stop(signal.SIGINT) == 0, second.describe()
    third = openconnect.connect(server, cookie=cookie)
    status = third.wait(30)
    assert status == COOKIE_REJECTED, f"a logged-out cookie was accepted\n{third.describe()}"
    assert not third.env_file.exists()
    server.assert_alive()


def test_a_client_gone_during_its_connect_leaks_nothing_and_keeps_its_cookie(
    netns_pair: NetnsPair, start_gateway: StartServer
) -> None:
    # A CONNECT's steps (the claim at sec-mod, the TUN device from the supervisor, TunnelUp) run
    # to their end when the client leaves, and then give back what they took: no device, no
    # tunnel sec-mod believes up, no answer from another process left without its request.
    server = start_gateway()
    conn = open_conn(netns_pair.client, server.host, server.port, pin=server.pin)
    cookie = aggauth_login(conn, server.url, "alice", ["alicepass"])
    conn.close()
    for _ in range(20):
        conn = open_conn(netns_pair.client, server.host, server.port, pin=server.pin)
        conn.timeout = 0.001  # Send the CONNECT, do not wait for its answer.
        with contextlib.suppress(TimeoutError):
            connect_tunnel(conn, cookie)
        conn.close()
    wait_for(lambda: server.tun_links() == [], what="every abandoned tunnel's device gone")
    stats = server.stats()
    assert (stats["tunnels"], stats["sessions"]) == (0, 1), stats
    assert "reply to no request" not in server.log_text()
    conn = open_conn(netns_pair.client, server.host, server.port, pin=server.pin)
    response = connect_tunnel(conn, cookie)
    assert response is not None
    assert response.status == 200, response
    assert len(server.tun_links()) == 1
    conn.close()
    wait_for(lambda: server.tun_links() == [], what="the tunnel's device gone")
    server.assert_alive()
