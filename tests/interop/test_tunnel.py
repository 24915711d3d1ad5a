"""Acceptance: a CSTP tunnel (``--no-dtls``) carries real traffic, configured as the config says."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocgate.daemon import _offload

from ._netns import NetnsPair
from ._openconnect import OpenConnect, OpenConnectRunner
from ._server import POOL4, POOL6, SERVER_TUN4, SERVER_TUN6, Server, ServerKind, StartServer
from ._traffic import iperf3, ping

OCGATE = str(Path(sys.executable).parent / "ocgate")

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


@dataclass(frozen=True, slots=True)
class Tunnel:
    client: OpenConnect
    env: dict[str, str]


@pytest.fixture
def tunnel(server: Server, openconnect: OpenConnectRunner) -> Tunnel:
    client = openconnect.connect(server, user="alice", password="alicepass")
    return Tunnel(client, client.wait_env(timeout=30))


def test_tunnel_carries_ping_v4_and_v6(
    netns_pair: NetnsPair, tunnel: Tunnel, server: Server
) -> None:
    for addr in (SERVER_TUN4, SERVER_TUN6):
        result = ping(netns_pair, netns_pair.client, addr, count=5)
        assert result.transmitted == 5, result.output
        assert result.received == 5, (
            f"{result.output}\n{tunnel.client.describe()}\n{server.describe()}"
        )
    server.assert_alive()


@pytest.mark.parametrize("reverse", [False, True], ids=["client-to-server", "server-to-client"])
def test_iperf3_through_the_tunnel(
    netns_pair: NetnsPair, tunnel: Tunnel, server: Server, reverse: bool
) -> None:
    bps = iperf3(netns_pair, server_addr=SERVER_TUN4, seconds=3, reverse=reverse)
    direction = "server -> client" if reverse else "client -> server"
    print(f"\niperf3 {server.kind.value} CSTP {direction}: {bps / 1e6:.1f} Mbit/s")
    assert bps > 1e6, f"{bps} bit/s is not a working tunnel\n{server.describe()}"
    server.assert_alive()


def _split(env: dict[str, str], prefix: str) -> list[tuple[str, str, str]]:
    count = int(env.get(prefix, "0"))
    return [
        (
            env.get(f"{prefix}_{i}_ADDR", ""),
            env.get(f"{prefix}_{i}_MASK", ""),
            env.get(f"{prefix}_{i}_MASKLEN", ""),
        )
        for i in range(count)
    ]


def test_vpnc_script_environment_matches_config(tunnel: Tunnel) -> None:
    env = tunnel.env
    context = "\n".join(f"{k}={v!r}" for k, v in sorted(env.items()) if k.isupper())
    assert env["reason"] == "connect"

    addr4 = ipaddress.ip_address(env["INTERNAL_IP4_ADDRESS"])
    assert addr4 in ipaddress.ip_network(POOL4), context
    assert addr4 != ipaddress.ip_address(SERVER_TUN4), context
    assert env["INTERNAL_IP4_NETMASK"] == "255.255.255.0", context
    mtu = int(env["INTERNAL_IP4_MTU"])
    assert 1200 <= mtu <= 1400, context

    dns = env.get("INTERNAL_IP4_DNS", "").split() + env.get("INTERNAL_IP6_DNS", "").split()
    assert "10.77.0.53" in dns, context
    assert "fd77::53" in dns, context

    addr6 = ipaddress.ip_address(env["INTERNAL_IP6_ADDRESS"])
    assert addr6 in ipaddress.ip_network(POOL6), context
    assert env["INTERNAL_IP6_NETMASK"] == f"{env['INTERNAL_IP6_ADDRESS']}/128", context

    # openconnect lists split routes with the last header received at index 0.
    assert _split(env, "CISCO_SPLIT_INC") == [
        ("10.30.0.0", "255.255.0.0", "16"),
        ("10.20.0.0", "255.255.0.0", "16"),
    ], context
    assert _split(env, "CISCO_SPLIT_EXC") == [("10.20.5.0", "255.255.255.0", "24")], context
    assert _split(env, "CISCO_IPV6_SPLIT_INC") == [("fd20::", "", "48")], context
    assert _split(env, "CISCO_IPV6_SPLIT_EXC") == [("fd20:0:5::", "", "64")], context
    assert env.get("CISCO_SPLIT_DNS") == "int.test,corp.test", context
    assert env.get("CISCO_DEF_DOMAIN") == "corp.test", context


# The TLS data path: on the worker's C thread (a TLS pipe, ocgate.daemon._offload) where
# ocgate._fastpath is built, on the event loop with OCGATE_OFFLOAD=off; TLS 1.2 and TLS 1.3.
_OLD = ":-VERS-TLS1.1:-VERS-TLS1.0"  # Debian's GnuTLS NORMAL still has them.
TLS_VERSIONS = {
    "tls12": "NORMAL:%SERVER_PRECEDENCE:-VERS-TLS1.3" + _OLD,
    "tls13": "NORMAL:%SERVER_PRECEDENCE:-VERS-TLS1.2" + _OLD,
}


@pytest.mark.parametrize("datapath", ["thread", "loop"])
@pytest.mark.parametrize("version", list(TLS_VERSIONS))
def test_tls_data_path_carries_traffic_and_counts_it(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kind: ServerKind,
    version: str,
    datapath: str,
) -> None:
    if kind is not ServerKind.OCGATE:
        pytest.skip("ocgate's data paths")
    if datapath == "loop":
        monkeypatch.setenv("OCGATE_OFFLOAD", "off")  # The server inherits it.
    elif not _offload.ENABLED:
        pytest.skip("no compiled data-path thread")
    sock = tmp_path / "occtl.sock"
    server = start_gateway(
        {
            "tls-priorities": TLS_VERSIONS[version],
            "use-occtl": "true",
            "occtl-socket-file": str(sock),
        }
    )
    client = openconnect.connect(server, user="alice", password="alicepass")
    client.wait_env(timeout=30)
    for addr in (SERVER_TUN4, SERVER_TUN6):
        result = ping(netns_pair, netns_pair.client, addr, count=5)
        assert result.received == 5, f"{result.output}\n{server.describe()}"
    moved = 0.0
    for reverse in (False, True):
        bps = iperf3(
            netns_pair, server_addr=SERVER_TUN4, seconds=2, reverse=reverse, port=5201 + reverse
        )
        print(f"\niperf3 TLS {version} {datapath} reverse={reverse}: {bps / 1e6:.1f} Mbit/s")
        assert bps > 1e6, server.describe()
        moved += bps * 2 / 8
    on_thread = "event=tls-offload session=" in server.log_text()
    assert on_thread == (datapath == "thread"), server.describe()
    # The thread's counters reach occtl: both directions together carried what iperf3 moved.
    users = json.loads(_ctl(sock, "--json", "show", "users"))
    assert len(users) == 1, users
    counted = int(users[0]["RX"]) + int(users[0]["TX"])
    assert counted >= 0.9 * moved, (counted, moved, users)
    # The client's DISCONNECT (a frame the thread hands back) ends the session as a logout.
    offset = server.log_size()
    client.stop()
    server.wait_log(r"event=bye session=\S+", since=offset, timeout=10)
    server.assert_alive()


def _ctl(sock: Path, *words: str) -> str:
    argv = [OCGATE, "ctl", "-s", str(sock), *words]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 0, f"{argv}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout
