"""Acceptance of issue 12 §3 (routes, DNS and per-user/per-group config), against both servers:
ocgate, and Debian's ocserv 1.1.6 with ``OCG_TEST_SERVER=ocserv``.

Each test writes the ocserv configuration that exercises one behaviour, connects the real
openconnect 9.01 and asserts what it received: the vpnc-script environment (``CISCO_SPLIT_*``,
``INTERNAL_IP*_DNS``, ``CISCO_SPLIT_DNS``, ``INTERNAL_IP6_*``) or the ``X-CSTP-*`` headers that
``openconnect -v`` prints. The iroute test also looks at the gateway namespace's routing table and
sends a packet from the gateway side to the LAN behind the client.

Default configuration (``_server.DEFAULT_OPTIONS``): routes 10.20.0.0/16, 10.30.0.0/16, fd20::/48;
no-routes 10.20.5.0/24, fd20:0:5::/64; DNS 10.77.0.53, fd77::53; split-dns corp.test, int.test.
alice is in group ``eng``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from pathlib import Path

import pytest

from ._netns import NetnsPair, netns_socket
from ._openconnect import OpenConnect, OpenConnectRunner
from ._server import SERVER_TUN4, Server, ServerKind, StartServer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

GLOBAL_V4 = ["10.20.0.0/16", "10.30.0.0/16"]
GLOBAL_EXC_V4 = ["10.20.5.0/24"]
_HEADER = re.compile(r"^(?:\[[^\]]*\] )?(X-CSTP-[A-Za-z0-9-]+): (.*)$", re.M)


def _files(tmp_path: Path, name: str, files: dict[str, str]) -> str:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    for entry, text in files.items():
        (directory / entry).write_text(text)
    return str(directory)


def _split(env: dict[str, str], kind: str, *, ipv6: bool = False) -> list[str]:
    """``CISCO_SPLIT_INC``/``EXC`` (or the ``CISCO_IPV6_`` ones) as sorted ``addr/len``
    (openconnect lists them in reverse order of the headers)."""
    prefix = f"CISCO_IPV6_SPLIT_{kind}" if ipv6 else f"CISCO_SPLIT_{kind}"
    count = int(env.get(prefix, "0"))
    found = [f"{env[f'{prefix}_{i}_ADDR']}/{env[f'{prefix}_{i}_MASKLEN']}" for i in range(count)]
    return sorted(found, key=_net_key)


def _net_key(text: str) -> tuple[int, int]:
    net = ipaddress.ip_network(text)
    return int(net.network_address), net.prefixlen


def _sorted(nets: list[str]) -> list[str]:
    return sorted(nets, key=_net_key)


def _dns(env: dict[str, str]) -> list[str]:
    return sorted(env.get("INTERNAL_IP4_DNS", "").split() + env.get("INTERNAL_IP6_DNS", "").split())


def _headers(client: OpenConnect) -> list[tuple[str, str]]:
    """The ``X-CSTP-*`` headers of the CONNECT reply, as ``openconnect -v`` printed them."""
    return [(name, value.strip()) for name, value in _HEADER.findall(client.output())]


def _connect(
    openconnect: OpenConnectRunner, server: Server, user: str, *extra: str
) -> tuple[OpenConnect, dict[str, str]]:
    client = openconnect.connect(server, user=user, password=f"{user}pass", extra=["-v", *extra])
    return client, client.wait_env(timeout=40)


# 1. Per-user and per-group dns, nbns, route, no-route, split-dns -------------------------------


@pytest.mark.parametrize("append", [False, True], ids=["replace", "append-routes"])
def test_per_user_and_group_files_replace_the_global_routes_and_dns(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path, append: bool
) -> None:
    groups = _files(
        tmp_path,
        "groups",
        {
            "eng": "route = 10.91.0.0/16\ndns = 10.91.0.53\nsplit-dns = eng.test\n"
            "nbns = 10.91.0.137\n"
        },
    )
    users = _files(
        tmp_path,
        "users",
        {
            "alice": "route = 10.81.0.0/255.255.0.0\nno-route = 10.81.9.0/24\n"
            "dns = 10.81.0.53\nsplit-dns = alice.test\nnbns = 10.81.0.137\n",
            "bob": "dns = 10.82.0.53\n",  # bob keeps the global routes and split-dns.
        },
    )
    overrides: dict[str, str | list[str] | None] = {
        "config-per-user": users,
        "config-per-group": groups,
    }
    if append:
        overrides["append-routes"] = "true"
    server = start_gateway(overrides)
    alice, env = _connect(openconnect, server, "alice")  # Her group: eng, the first she has.
    # The group's and the user's multi-value lines add up; together they replace the global ones.
    user_routes = ["10.91.0.0/16", "10.81.0.0/16"]
    assert _split(env, "INC") == _sorted(user_routes + GLOBAL_V4 if append else user_routes), env
    assert _split(env, "INC", ipv6=True) == (["fd20::/48"] if append else []), env
    exc = ["10.81.9.0/24", *GLOBAL_EXC_V4] if append else ["10.81.9.0/24"]
    assert _split(env, "EXC") == _sorted(exc), env
    assert _dns(env) == ["10.81.0.53", "10.91.0.53"], env
    assert sorted(env.get("CISCO_SPLIT_DNS", "").split(",")) == ["alice.test", "eng.test"], env
    assert sorted(env.get("INTERNAL_IP4_NBNS", "").split()) == ["10.81.0.137", "10.91.0.137"], env
    assert alice.stop() == 0, alice.describe()

    bob, env = _connect(openconnect, server, "bob")
    if not append:  # With append-routes ocserv appends the global routes to themselves.
        assert _split(env, "INC") == GLOBAL_V4, env
    assert _split(env, "EXC") == GLOBAL_EXC_V4, env
    assert _dns(env) == ["10.82.0.53"], env
    assert "INTERNAL_IP4_NBNS" not in env, env
    assert sorted(env.get("CISCO_SPLIT_DNS", "").split(",")) == ["corp.test", "int.test"], env
    assert bob.stop() == 0, bob.describe()
    server.assert_alive()


# 2. route = default with no-route entries ------------------------------------------------------


@pytest.mark.parametrize("where", ["global", "per-user"])
def test_default_route_still_sends_the_exclusions(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path, where: str
) -> None:
    if where == "global":
        server = start_gateway({"route": "default"})
    else:
        users = _files(tmp_path, "users", {"alice": "route = default\nno-route = 10.66.0.0/16\n"})
        server = start_gateway({"config-per-user": users})
    client, env = _connect(openconnect, server, "alice")
    headers = _headers(client)
    assert _split(env, "INC") == [], env  # Full tunnel: no split-includes at all.
    assert _split(env, "INC", ipv6=True) == [], env
    expected = GLOBAL_EXC_V4 if where == "global" else ["10.66.0.0/16"]
    assert _split(env, "EXC") == expected, env
    if where == "global":
        assert _split(env, "EXC", ipv6=True) == ["fd20:0:5::/64"], env
    if where == "per-user":  # ocserv 1.1.6 forces it only for a per-user default route.
        assert ("X-CSTP-Tunnel-All-DNS", "true") in headers, headers
    server.assert_alive()


# 3. Hundreds of routes ----------------------------------------------------------------------


def test_three_hundred_routes_all_reach_the_client(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    routes = [f"10.{100 + i // 200}.{i % 200}.0/24" for i in range(300)]
    no_routes = [f"10.{100 + i // 200}.{i % 200}.128/25" for i in range(0, 300, 10)]
    own = [f"172.{16 + i // 250}.{i % 250}.0/24" for i in range(300)]
    users = _files(tmp_path, "users", {"bob": "".join(f"route = {r}\n" for r in own)})
    server = start_gateway({"route": routes, "no-route": no_routes, "config-per-user": users})
    alice, env = _connect(openconnect, server, "alice")
    assert _split(env, "INC") == _sorted(routes), env.get("CISCO_SPLIT_INC")
    assert _split(env, "EXC") == _sorted(no_routes), env.get("CISCO_SPLIT_EXC")
    assert alice.stop() == 0, alice.describe()
    _, env = _connect(openconnect, server, "bob")  # 300 routes from a per-user file.
    assert _split(env, "INC") == _sorted(own), env.get("CISCO_SPLIT_INC")
    server.assert_alive()


# 4. iroute: routed to the client's TUN device while connected ----------------------------------


def _routes(pair: NetnsPair) -> str:
    return pair.run_in(pair.server, ["ip", "route", "show"]).stdout


def _wait_routes(pair: NetnsPair, pattern: str, *, present: bool, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        table = _routes(pair)
        if bool(re.search(pattern, table, re.M)) == present:
            return table
        assert time.monotonic() < deadline, f"route {pattern!r} present={not present}:\n{table}"
        time.sleep(0.2)


def test_iroutes_go_to_the_client_device_while_it_is_connected(
    netns_pair: NetnsPair, start_gateway: StartServer, openconnect: OpenConnectRunner,
    tmp_path: Path, kind: ServerKind,
) -> None:  # fmt: skip
    users = _files(tmp_path, "users", {"alice": "iroute = 192.168.5.0/24\n"})
    overrides: dict[str, str | list[str] | None] = {"config-per-user": users}
    if kind is ServerKind.OCSERV:  # ocserv 1.1.6 runs a command; ocgate ignores these keys.
        overrides["route-add-cmd"] = '"ip route add %{R} dev %{D}"'
        overrides["route-del-cmd"] = '"ip route delete %{R} dev %{D}"'
    server = start_gateway(overrides)
    pattern = r"^192\.168\.5\.0/24 dev (vpns\d+)"
    assert not re.search(pattern, _routes(netns_pair), re.M)
    client, env = _connect(openconnect, server, "alice")
    table = _wait_routes(netns_pair, pattern, present=True)
    match = re.search(pattern, table, re.M)
    assert match is not None, table
    assert match.group(1) in server.tun_links(), table

    # The LAN behind the client: 192.168.5.7 on the client namespace's loopback.
    pair = netns_pair
    pair.run_in(pair.client, ["ip", "addr", "add", "192.168.5.7/32", "dev", "lo"])
    try:
        listener = netns_socket(pair.client, socket.AF_INET, socket.SOCK_DGRAM)
        sender = netns_socket(pair.server, socket.AF_INET, socket.SOCK_DGRAM)
        try:
            listener.bind(("192.168.5.7", 5998))
            listener.settimeout(5)
            sender.sendto(b"to-the-lan-behind-the-client", ("192.168.5.7", 5998))
            data, source = listener.recvfrom(2048)
        finally:
            listener.close()
            sender.close()
        assert data == b"to-the-lan-behind-the-client"
        assert source[0] == SERVER_TUN4  # Sent from the gateway's end of the client's tunnel.
    finally:
        pair.run_in(pair.client, ["ip", "addr", "del", "192.168.5.7/32", "dev", "lo"], check=False)

    assert client.stop() == 0, client.describe()
    _wait_routes(netns_pair, pattern, present=False)
    assert env.get("INTERNAL_IP4_ADDRESS"), env
    server.assert_alive()


def test_a_reconnect_with_the_cookie_keeps_the_iroute(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    kind: ServerKind,
) -> None:
    """The new tunnel's device may be up while the old one still holds the route; the route must
    end up on the new device and stay there when the old one goes."""
    if kind is ServerKind.OCSERV:
        pytest.skip(
            "ocserv 1.1.6 races here: the new tunnel reuses the device name, and the old one's "
            "route-del-cmd (ip route delete NET dev vpns0) can remove the new tunnel's route"
        )
    users = _files(tmp_path, "users", {"alice": "iroute = 192.168.6.0/24\n"})
    server = start_gateway({"config-per-user": users})
    auth = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    assert auth.returncode == 0, auth.describe()
    pattern = r"^192\.168\.6\.0/24 dev (vpns\d+)"
    first = openconnect.connect(server, cookie=auth.cookie)
    first.wait_env(timeout=40)
    _wait_routes(netns_pair, pattern, present=True)
    second = openconnect.connect(server, cookie=auth.cookie)
    second.wait_env(timeout=40)
    first.wait(30)  # Told to disconnect: its device goes (its name may be reused).
    time.sleep(1.5)
    table = _routes(netns_pair)
    new = re.search(pattern, table, re.M)
    assert new is not None, f"the iroute went with the old device\n{table}"
    assert new.group(1) in server.tun_links(), table
    assert second.stop() == 0, second.describe()
    _wait_routes(netns_pair, pattern, present=False)
    server.assert_alive()


# 6. X-CSTP-Client-Bypass-Protocol ------------------------------------------------------------


@pytest.mark.parametrize("where", ["default", "global", "per-user"])
def test_client_bypass_protocol_header(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    kind: ServerKind,
    where: str,
) -> None:
    if where == "per-user" and kind is ServerKind.OCSERV:
        pytest.skip("ocserv 1.1.6 does not read client-bypass-protocol in per-user files")
    if where == "global":
        server = start_gateway({"client-bypass-protocol": "true"})
    elif where == "per-user":
        users = _files(tmp_path, "users", {"alice": "client-bypass-protocol = true\n"})
        server = start_gateway({"config-per-user": users})
    else:
        server = start_gateway()
    client, _ = _connect(openconnect, server, "alice")
    want = "false" if where == "default" else "true"
    bypass = [v for n, v in _headers(client) if n == "X-CSTP-Client-Bypass-Protocol"]
    assert bypass == [want], client.describe()
    if where == "per-user":  # bob, without the file, gets the default.
        assert client.stop() == 0
        bob, _ = _connect(openconnect, server, "bob")
        assert [v for n, v in _headers(bob) if n == "X-CSTP-Client-Bypass-Protocol"] == ["false"]
    server.assert_alive()


# 7. IPv6 by user agent ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "ipv6"),
    [
        (None, True),  # openconnect's own: "Open AnyConnect VPN Agent v9.01…"
        ("Open AnyConnect VPN Agent v3.02", False),
        ("Open AnyConnect VPN Agent v2.5", False),
        ("open anyconnect vpn agent v3", False),
        ("Some Unknown Agent 1.0", True),
    ],
    ids=["openconnect-9", "openconnect-v3", "openconnect-v2", "lower-case-v3", "unknown"],
)
def test_ipv6_routes_and_dns_by_user_agent(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    kind: ServerKind,
    agent: str | None,
    ipv6: bool,
) -> None:
    if kind is ServerKind.OCSERV and agent == "Some Unknown Agent 1.0":
        pytest.skip("ocserv 1.1.6 withholds IPv6 routes/DNS from unknown agents (later: given)")
    server = start_gateway()
    auth = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    assert auth.returncode == 0, auth.describe()
    assert auth.cookie, auth.describe()
    extra = ["-v"] + (["--useragent", agent] if agent is not None else [])
    client = openconnect.connect(server, cookie=auth.cookie, extra=extra)
    env = client.wait_env(timeout=40)
    v6_routes = _split(env, "INC", ipv6=True) + _split(env, "EXC", ipv6=True)
    # ocserv sends an IPv6 server in X-CSTP-DNS, ocgate in X-CSTP-DNS-IP6: look at both lists.
    v6_dns = [server for server in _dns(env) if ":" in server]
    if ipv6:
        assert v6_routes == ["fd20::/48", "fd20:0:5::/64"], env
        assert v6_dns == ["fd77::53"], env
    else:
        assert v6_routes == [], env
        assert v6_dns == [], env
    # The address itself is given to every agent (ocserv withholds only routes and DNS).
    assert env.get("INTERNAL_IP6_ADDRESS") or env.get("INTERNAL_IP6_NETMASK"), env
    # IPv4 is the same for every agent.
    assert _split(env, "INC") == GLOBAL_V4, env
    assert [server for server in _dns(env) if ":" not in server] == ["10.77.0.53"], env
    server.assert_alive()
