"""Acceptance: a CSTP tunnel (``--no-dtls``) carries real traffic, configured as the config says."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from ._netns import NetnsPair
from ._openconnect import OpenConnect, OpenConnectRunner
from ._server import POOL4, POOL6, SERVER_TUN4, SERVER_TUN6, Server
from ._traffic import iperf3, ping

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
