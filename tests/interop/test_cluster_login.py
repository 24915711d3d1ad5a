"""A login's rounds on two gateways sharing one Redis (issue 14 §1, "the per-login context").

The password goes to one node and the OTP code to the other, each on its own TLS connection
through HAProxy (a Cisco client that loses its connection between the two rounds reconnects, and
the balancer chooses anew): the ``webvpncontext`` cookie of the OTP form names a login the second
node takes from the shared store, and the session works on either node. The set-up (two
gateways, HAProxy with PROXY protocol, Redis) is ``test_cluster.py``'s.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest

from ._netns import SERVER_ADDR
from ._rawclient import Conn, LoginFailed, aggauth_login, connect_tunnel, open_conn
from .test_cluster import FRONT_NODE, Cluster
from .test_cluster import cluster as cluster  # The fixture.

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

TOTP_KEY = bytes(range(1, 21))


def _otp_file(_name: str, workdir: Path) -> dict[str, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    otp = workdir / "users.oath"
    otp.write_text(f"HOTP/T30 alice - {TOTP_KEY.hex()}\n")
    return {"auth": f'"plain[passwd={workdir / "ocpasswd"},otp={otp}]"'}


def _alternating(cluster: Cluster, first: str) -> Callable[[], Conn]:
    """Each call opens a connection through HAProxy to the next node, ``first`` first."""
    order = itertools.cycle([first, *(n for n in FRONT_NODE if n != first)])
    pin = cluster.cert.pin

    def connect() -> Conn:
        node = next(order)
        return open_conn(cluster.pair.client, SERVER_ADDR, FRONT_NODE[node], pin=pin)

    return connect


def test_the_otp_round_of_a_login_completes_on_the_other_node(cluster: Cluster) -> None:
    cluster.start(per_node=_otp_file)
    code = pyotp.TOTP(base64.b32encode(TOTP_KEY).decode()).now()
    # init on gw-a, the password on gw-b, the OTP code on gw-a again.
    connect = _alternating(cluster, "gw-a")
    url = f"https://{SERVER_ADDR}:{FRONT_NODE['gw-a']}/"
    cookie = aggauth_login(connect(), url, "alice", ["alicepass", code], reconnect=connect)
    resumed = sum(n.server.log_text().count("event=login-resumed") for n in cluster.nodes.values())
    assert resumed == 1, [n.server.describe() for n in cluster.nodes.values()]
    tunnel = open_conn(cluster.pair.client, SERVER_ADDR, FRONT_NODE["gw-b"], pin=cluster.cert.pin)
    response = connect_tunnel(tunnel, cookie)
    tunnel.close()
    assert response is not None
    assert response.status == 200


def test_a_login_context_serves_one_login_only(cluster: Cluster) -> None:
    cluster.start(per_node=_otp_file)
    connect = _alternating(cluster, "gw-b")
    url = f"https://{SERVER_ADDR}:{FRONT_NODE['gw-b']}/"
    with pytest.raises(LoginFailed, match="401"):
        aggauth_login(connect(), url, "alice", ["alicepass", "000000", "000001", "000002"],
                      reconnect=connect)  # fmt: skip
    failed = sum(n.server.log_text().count("event=login-failed") for n in cluster.nodes.values())
    assert failed == 3  # The try limit holds across the nodes, as across connections.
