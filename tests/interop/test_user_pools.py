"""Acceptance of issue 12 §3, per-user and per-group address pools, against both servers: ocgate,
and Debian's ocserv 1.1.6 with ``OCG_TEST_SERVER=ocserv``.

ocserv reads ``ipv4-network`` (CIDR, or with ``ipv4-netmask``) in a per-user or per-group file
(``src/sup-config/file.c``) and leases the session's address from that network, the network's
first address being the server's end of the tunnel (``src/ip-lease.c``: "LIP = network address
+ 1"). The test writes such a file for alice (user file) or for her group ``eng`` (group file),
connects the real openconnect 9.01 with a cookie and asserts what its vpnc-script received
(``INTERNAL_IP4_ADDRESS``/``NETMASK``), that the gateway's end of that network answers a ping
through the tunnel, and that a cookie reconnect gets the same address. bob, without a file,
still leases from the global pool (10.77.0.0/24). With ocgate the session also outlives a
restart of the gateway (``session-store``; ocserv 1.1.6 keeps no sessions across a restart).
The same for ``ipv6-network`` in a user's file (``INTERNAL_IP6_ADDRESS``, ping to its first
address).
"""

from __future__ import annotations

import ipaddress
import re
import signal
from pathlib import Path

import pytest

from ._netns import NetnsPair
from ._openconnect import OpenConnectRunner
from ._server import POOL4, ServerKind, StartServer
from ._traffic import ping

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

_FILES = {
    "user": ("users", "alice", "ipv4-network = 10.88.0.0/24\n", "10.88.0.0/24"),
    "group": ("groups", "eng", "ipv4-network = 10.89.0.0\nipv4-netmask = 255.255.255.0\n",
              "10.89.0.0/24"),
}  # fmt: skip


def _gateway_end(network: ipaddress.IPv4Network) -> str:
    return str(network.network_address + 1)


def _tun_ends(pair: NetnsPair) -> set[tuple[str, str]]:
    """(local, peer) of each point-to-point IPv4 address in the gateway's namespace."""
    out = pair.run_in(pair.server, ["ip", "-o", "-4", "addr", "show"]).stdout
    return set(re.findall(r" inet ([0-9.]+) peer ([0-9.]+)/32 ", out))


@pytest.mark.parametrize("where", ["user", "group"])
def test_a_per_user_or_group_network_gives_the_address(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    kind: ServerKind,
    where: str,
) -> None:
    directory, name, text, cidr = _FILES[where]
    network = ipaddress.IPv4Network(cidr)
    files = tmp_path / directory
    files.mkdir()
    (files / name).write_text(text)
    # Random addresses with ocgate: only an address the session kept proves the reconnect resumed
    # it. ocserv 1.1.6 frees the lease with the tunnel and gets it back only by predictable-ips.
    overrides: dict[str, str | list[str] | None] = {
        f"config-per-{where}": str(files),
        "predictable-ips": "true" if kind is ServerKind.OCSERV else "false",
    }
    if kind is ServerKind.OCGATE:
        overrides["session-store"] = f"sqlite://{tmp_path / 'state' / 'sessions.sqlite'}"
    server = start_gateway(overrides)
    auth = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    assert auth.returncode == 0, auth.describe()
    assert auth.cookie, auth.describe()

    first = openconnect.connect(server, cookie=auth.cookie)
    env = first.wait_env(timeout=40)
    address = env["INTERNAL_IP4_ADDRESS"]
    assert ipaddress.IPv4Address(address) in network, env
    assert address not in (str(network.network_address), _gateway_end(network)), env
    assert env["INTERNAL_IP4_NETMASK"] == str(network.netmask), env
    # The gateway's end of alice's device is her network's first address (ocserv's LIP).
    assert (_gateway_end(network), address) in _tun_ends(netns_pair), server.describe()
    result = ping(netns_pair, netns_pair.client, _gateway_end(network), count=2)
    assert result.received == 2, f"{result.output}\n{server.describe()}"

    # Cookie reconnect (SIGHUP: detach without BYE, the cookie lives on): the same address.
    first.send_signal(signal.SIGHUP)
    first.wait(15)
    second = openconnect.connect(server, cookie=auth.cookie)
    env = second.wait_env(timeout=40)
    assert env["INTERNAL_IP4_ADDRESS"] == address, second.describe()
    result = ping(netns_pair, netns_pair.client, _gateway_end(network), count=2)
    assert result.received == 2, f"{result.output}\n{server.describe()}"

    # Without a file of his own, bob leases from the global pool, alongside alice.
    bob = openconnect.connect(server, user="bob", password="bobpass")
    bob_env = bob.wait_env(timeout=40)
    assert ipaddress.IPv4Address(bob_env["INTERNAL_IP4_ADDRESS"]) in ipaddress.IPv4Network(POOL4)
    assert bob.stop() == 0, bob.describe()

    if kind is ServerKind.OCGATE:  # The lease outlives a restart of the gateway.
        second.kill()
        server.stop()
        server = start_gateway(overrides)
        second = openconnect.connect(server, cookie=auth.cookie)
        env = second.wait_env(timeout=40)
        assert env["INTERNAL_IP4_ADDRESS"] == address, second.describe()
        result = ping(netns_pair, netns_pair.client, _gateway_end(network), count=2)
        assert result.received == 2, f"{result.output}\n{server.describe()}"
    assert second.stop(signal.SIGINT) == 0, second.describe()
    server.assert_alive()


def test_a_per_user_ipv6_network_gives_the_ipv6_address(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    kind: ServerKind,
) -> None:
    """``ipv6-network`` in alice's file (the global ``ipv6-subnet-prefix = 128`` applies): her
    IPv6 address is in that network, whose first address (ocserv: "LIP = network address + 1")
    answers through the tunnel; a cookie reconnect keeps it."""
    network = ipaddress.IPv6Network("fd88::/64")
    users = tmp_path / "users"
    users.mkdir()
    (users / "alice").write_text(f"ipv6-network = {network}\n")
    overrides: dict[str, str | list[str] | None] = {
        "config-per-user": str(users),
        "predictable-ips": "true" if kind is ServerKind.OCSERV else "false",
    }
    server = start_gateway(overrides)
    auth = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    assert auth.returncode == 0, auth.describe()
    gateway_end = str(network.network_address + 1)
    addresses = []
    for _ in range(2):
        client = openconnect.connect(server, cookie=auth.cookie, routes=(str(network),))
        env = client.wait_env(timeout=40)
        address = env.get("INTERNAL_IP6_ADDRESS", "")
        assert address, env
        assert ipaddress.IPv6Address(address) in network, env
        assert address != gateway_end, env
        assert ipaddress.IPv4Address(env["INTERNAL_IP4_ADDRESS"]) in ipaddress.IPv4Network(POOL4)
        result = ping(netns_pair, netns_pair.client, gateway_end, count=2)
        assert result.received == 2, f"{result.output}\n{server.describe()}"
        addresses.append(address)
        client.send_signal(signal.SIGHUP)  # Detach without BYE: the cookie lives on.
        client.wait(15)
    assert addresses[0] == addresses[1], addresses
    server.assert_alive()
