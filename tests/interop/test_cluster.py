"""Acceptance of issue 14: two gateways behind HAProxy sharing one Redis act as one.

Topology (every namespace is the test's own; nothing touches the host's network)::

    client ns 198.18.0.2 --- 198.18.0.1 server ns: HAProxy :8443 (both nodes), :8444 (only gw-a),
                                        |          :8445 (only gw-b); redis-server 198.18.0.1:6390
                  198.18.2.1 ------------+------------ 198.18.3.1
                      |                                    |
              node ns gw-a 198.18.2.2              node ns gw-b 198.18.3.2
              ocgate :443, /health :9100           ocgate :443, /health :9100

Both gateways run the same configuration but for their ``node-name`` (``gw-a``, ``gw-b``), with
``listen-proxy-proto = true`` (HAProxy's server lines send PROXY protocol v2), one address pool
and ``session-store = redis://:PASSWORD@198.18.0.1:6390/0``. HAProxy balances round-robin over
both on :8443 and checks each node's ``GET /health`` (``health-listen``); :8444 and :8445 reach a
single node, so a test can choose where a login or a CONNECT lands. The real openconnect 9.01
runs in the client namespace; the mass test uses the raw AggAuth client (``_rawclient.py``).

Asserted: a tunnel moves to the surviving node when its node is killed, with its cookie, its
addresses and no new login; 200 logins over both nodes get 200 distinct addresses; wrong
passwords through one node ban the client's real address on the other; ``ctl`` on one node lists
and terminates the other node's users; Redis stopped for 10 s costs established tunnels nothing,
refuses logins cleanly, and after it returns logins work and no address is leased twice.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import ipaddress
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyotp
import pytest

from ._certs import ServerCert
from ._haproxy import Balancer, haproxy_missing, run_haproxy
from ._netns import CLIENT_ADDR, SERVER_ADDR, NetnsPair, enter_netns, run, tcp_port_open
from ._openconnect import OpenConnect, OpenConnectRunner, StaticEndpoint
from ._rawclient import Conn, aggauth_login, client_context, connect_tunnel, open_conn
from ._redis import RedisServer, redis_missing
from ._server import (
    POOL4,
    POOL6,
    PORT,
    SERVER_TUN4,
    Server,
    ServerKind,
    server_kind,
    start_server,
)
from ._traffic import iperf3, ping
from .conftest import add_diagnostic
from .test_drain import _haproxy_status
from .test_ops import ctl, wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        server_kind() is ServerKind.OCSERV, reason="ocserv has no shared session store"
    ),
    pytest.mark.skipif(haproxy_missing(), reason="needs haproxy (Debian package; make test)"),
    pytest.mark.skipif(redis_missing(), reason="needs redis-server (Debian package; make test)"),
]

NODES = ("gw-a", "gw-b")
HEALTH_PORT = 9100
FRONT_ANY = 8443
FRONT_NODE = {"gw-a": 8444, "gw-b": 8445}
REDIS_PASSWORD = "cluster-test-redis-pass"
COOKIE_REJECTED = 2
OUTAGE_MESSAGE = "session store is unavailable"
MASS_LOGINS = 200


@dataclass(frozen=True, slots=True)
class NodeNetns:
    """A gateway's namespace, joined to the server namespace (the balancer's) by a veth pair:
    ``link`` 198.18.N.1/30 in the server namespace, ``veth-n`` 198.18.N.2/30 here, and a default
    route back through it (the node reaches Redis at the server namespace's 198.18.0.1)."""

    pair: NetnsPair
    name: str
    link: str
    addr: str
    peer: str

    @classmethod
    def create(cls, pair: NetnsPair, index: int) -> NodeNetns:
        node = cls(
            pair=pair,
            name=f"ocgn{index}{os.getpid()}",
            link=f"vnode{index}",
            addr=f"198.18.{2 + index}.2",
            peer=f"198.18.{2 + index}.1",
        )
        node.destroy()
        try:
            run(["ip", "netns", "add", node.name])
            run(["ip", "-n", node.name, "link", "set", "lo", "up"])
            run(["ip", "-n", pair.server, "link", "add", node.link, "type", "veth",
                 "peer", "name", "veth-n", "netns", node.name])  # fmt: skip
            for ns, dev, addr in ((pair.server, node.link, node.peer),
                                  (node.name, "veth-n", node.addr)):  # fmt: skip
                run(["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev])
                run(["ip", "-n", ns, "link", "set", dev, "up"])
            run(["ip", "-n", node.name, "route", "add", "default", "via", node.peer])
        except BaseException:
            node.destroy()
            raise
        return node

    @property
    def gateway_view(self) -> NetnsPair:
        """The pair ``start_server`` drives: the gateway here, probed from the balancer's side."""
        return NetnsPair(
            server=self.name,
            client=self.pair.server,
            server_addr=self.addr,
            client_addr=self.peer,
        )

    @property
    def tunnel_view(self) -> NetnsPair:
        """The pair a tunnel joins: this node's namespace and the client's (for iperf3)."""
        return NetnsPair(
            server=self.name,
            client=self.pair.client,
            server_addr=self.addr,
            client_addr=self.pair.client_addr,
        )

    def kill_everything(self) -> None:
        """SIGKILL every process in the namespace at once: the node dies, as on a power cut."""
        view = self.gateway_view
        for pid in view.pids(self.name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def destroy(self) -> None:
        view = self.gateway_view
        with contextlib.suppress(Exception):
            view.kill_in(self.name)
        if Path("/run/netns", self.name).exists():
            run(["ip", "netns", "del", self.name], check=False)
        run(["ip", "-n", self.pair.server, "link", "del", self.link], check=False)


@dataclass
class Node:
    """One running gateway of the cluster."""

    name: str
    netns: NodeNetns
    server: Server
    sock: Path

    def ctl(self, *words: str, json_output: bool = False, check: bool = True) -> str:
        return ctl(self.sock, *words, json_output=json_output, check=check)

    def users(self) -> list[dict[str, object]]:
        """``ctl --json show users`` on this node (every node's users)."""
        users = json.loads(self.ctl("show", "users", json_output=True))
        assert isinstance(users, list)
        return users

    def own_users(self) -> list[dict[str, object]]:
        """The users this node serves itself (``Node`` = its name)."""
        return [u for u in self.users() if u.get("Node") == self.name]

    def logins(self) -> int:
        """Successful logins in this node's log."""
        return self.server.log_text().count("event=login ")


@dataclass
class Cluster:
    """Redis, HAProxy and the two gateways; :meth:`start` brings the gateways and the balancer
    up with a test's extra configuration keys."""

    pair: NetnsPair
    cert: ServerCert
    workdir: Path
    redis: RedisServer
    netns: dict[str, NodeNetns]
    request: pytest.FixtureRequest
    nodes: dict[str, Node] = field(default_factory=dict)
    balancer: Balancer | None = None

    @property
    def stats_socket(self) -> Path:
        return self.workdir / "haproxy.sock"

    def endpoint(self, node: str | None = None) -> StaticEndpoint:
        """The balancer (``node=None``: round-robin over the healthy nodes) or one node via it."""
        port = FRONT_ANY if node is None else FRONT_NODE[node]
        return StaticEndpoint(f"https://{SERVER_ADDR}:{port}/", self.cert.pin)

    def start(
        self,
        extra: Mapping[str, str] | None = None,
        *,
        per_node: Callable[[str, Path], Mapping[str, str]] | None = None,
    ) -> None:
        """Start both gateways with the ``extra`` keys (and ``per_node(name, workdir)``'s),
        then HAProxy, and wait until HAProxy's health checks see both nodes up."""
        for name in NODES:
            own = per_node(name, self.workdir / name) if per_node is not None else {}
            self.nodes[name] = self._start_node(name, {**(extra or {}), **own})
        self.balancer = self._start_balancer()
        add_diagnostic(self.request, "haproxy", self.balancer.describe)
        for name in NODES:
            wait_for(
                lambda n=name: _haproxy_status(self.stats_socket, n) == "UP",
                20,
                f"{name} UP in HAProxy",
            )

    def _start_node(self, name: str, extra: Mapping[str, str]) -> Node:
        netns = self.netns[name]
        workdir = self.workdir / name
        sock = self.workdir / f"{name}.ctl.sock"
        overrides = {
            "listen-proxy-proto": "true",
            "use-occtl": "true",
            "occtl-socket-file": str(sock),
            "session-store": self.redis.url(0),
            "node-name": name,
            "health-listen": f"{netns.addr}:{HEALTH_PORT}",
            "workers": "1",
            "max-clients": "256",
            **extra,
        }
        server = start_server(
            pair=netns.gateway_view, workdir=workdir, cert=self.cert, overrides=overrides
        )
        add_diagnostic(self.request, f"server log {name}", server.describe)
        return Node(name, netns, server, sock)

    def _start_balancer(self) -> Balancer:
        path = self.workdir / "haproxy" / "haproxy.cfg"
        path.parent.mkdir(parents=True, exist_ok=True)
        a, b = (self.netns[n] for n in NODES)
        path.write_text(
            f"""\
global
    maxconn 2048
    stats socket {self.stats_socket} mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 300s
    timeout server 300s
    timeout check 2s
    retries 3
    option redispatch
frontend vpn
    bind {SERVER_ADDR}:{FRONT_ANY}
    default_backend gateways
frontend via-gw-a
    bind {SERVER_ADDR}:{FRONT_NODE["gw-a"]}
    default_backend only-gw-a
frontend via-gw-b
    bind {SERVER_ADDR}:{FRONT_NODE["gw-b"]}
    default_backend only-gw-b
backend gateways
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server check port {HEALTH_PORT} inter 500ms fall 2 rise 2 send-proxy-v2
    server gw-a {a.addr}:{PORT}
    server gw-b {b.addr}:{PORT}
backend only-gw-a
    server gw-a {a.addr}:{PORT} send-proxy-v2
backend only-gw-b
    server gw-b {b.addr}:{PORT} send-proxy-v2
"""
        )
        return run_haproxy(self.pair, path, port=FRONT_ANY)

    def node_of(self, client: OpenConnect) -> Node:
        """The node whose tun carries ``client``'s tunnel (by its address in the node's table)."""
        env = client.wait_env()
        ipv4 = env["INTERNAL_IP4_ADDRESS"]
        for node in self.nodes.values():
            if node.server.proc.poll() is None and any(
                u.get("IPv4") == ipv4 for u in node.own_users()
            ):
                return node
        raise AssertionError(f"no node serves {ipv4}: {[n.users() for n in self.alive()]}")

    def alive(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.server.proc.poll() is None]

    def stop(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        for node in self.nodes.values():
            node.server.stop()


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest,
    netns_pair: NetnsPair,
    server_cert: ServerCert,
    tmp_path: Path,
) -> Iterator[Cluster]:
    """Redis in the server namespace and two node namespaces; the test calls ``start()``."""
    netns: dict[str, NodeNetns] = {}
    redis = RedisServer(
        tmp_path / "redis", host=SERVER_ADDR, ns=netns_pair.server, password=REDIS_PASSWORD
    )
    add_diagnostic(request, "redis", redis.describe)
    cluster = None
    try:
        for index, name in enumerate(NODES):
            netns[name] = NodeNetns.create(netns_pair, index)
        redis.start()
        cluster = Cluster(netns_pair, server_cert, tmp_path, redis, netns, request)
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        redis.stop()
        for node_ns in netns.values():
            node_ns.destroy()


def _ipv6(value: object) -> str:
    return str(value).partition("/")[0]


def test_a_tunnel_moves_to_the_other_node_when_its_node_dies(
    netns_pair: NetnsPair, cluster: Cluster, openconnect: OpenConnectRunner
) -> None:
    cluster.start()
    client = openconnect.connect(cluster.endpoint(), user="alice", password="alicepass")
    env = client.wait_env()
    ipv4, ipv6 = env["INTERNAL_IP4_ADDRESS"], _ipv6(env["INTERNAL_IP6_ADDRESS"])
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received == 3
    home = cluster.node_of(client)
    [other] = [n for n in cluster.nodes.values() if n is not home]
    logins = sum(n.logins() for n in cluster.nodes.values())
    assert logins == 1, [n.server.log_text() for n in cluster.nodes.values()]
    other_offset = other.server.log_size()

    home.netns.kill_everything()
    assert home.server.proc.wait(10) == -signal.SIGKILL
    wait_for(
        lambda: "DOWN" in _haproxy_status(cluster.stats_socket, home.name), 10, "dead node DOWN"
    )

    def moved() -> bool:
        return any(u.get("Username") == "alice" for u in other.own_users())

    wait_for(moved, timeout=90, what=f"alice's reconnect to {other.name}")
    [user] = [u for u in other.own_users() if u.get("Username") == "alice"]
    assert (user["Node"], user["IPv4"], _ipv6(user["IPv6"])) == (other.name, ipv4, ipv6), user
    assert client.proc.poll() is None, client.describe()
    # openconnect kept its tun as it was: the addresses did not change under it.
    tun = netns_pair.run_in(
        netns_pair.client, ["ip", "-o", "addr", "show", "dev", client.interface]
    )
    assert f"inet {ipv4}/" in tun.stdout, tun.stdout
    assert f"inet6 {ipv6}/" in tun.stdout, tun.stdout
    result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=5, deadline=15)
    assert result.received >= 3, f"{result.output}\n{client.describe()}"
    # A cookie reconnect (CONNECT on the other node), not a new login.
    assert other.logins() + home.logins() == 1, other.server.log_since(other_offset)
    assert f"remote={CLIENT_ADDR}" in other.server.log_since(other_offset)
    assert other.server.tun_links(), other.server.describe()


def _login_and_connect(index: int, cluster: Cluster) -> tuple[Conn, str, str, str]:
    """One raw login through one node and its CONNECT through one node (all four pairings in
    turn); returns the open tunnel connection, the node it is on, its IPv4 and IPv6."""
    login_node = NODES[index % 2]
    tunnel_node = NODES[(index // 2) % 2]
    context = client_context()

    def conn_to(node: str) -> Conn:
        return open_conn(
            cluster.pair.client,
            SERVER_ADDR,
            FRONT_NODE[node],
            pin=cluster.cert.pin,
            context=context,
            timeout=30,
        )

    login = conn_to(login_node)
    try:
        cookie = aggauth_login(login, f"https://{SERVER_ADDR}/", "alice", ["alicepass"])
    finally:
        login.close()
    tunnel = conn_to(tunnel_node)
    response = connect_tunnel(tunnel, cookie)
    if response is None or response.status != 200:
        tunnel.close()
        raise AssertionError(f"CONNECT {index} via {tunnel_node}: {response}")
    ipv4 = response.header("X-CSTP-Address") or ""
    ipv6 = _ipv6(response.header("X-CSTP-Address-IP6") or "")
    return tunnel, tunnel_node, ipv4, ipv6


def test_200_logins_over_both_nodes_get_200_distinct_addresses(cluster: Cluster) -> None:
    cluster.start(
        {"max-same-clients": "0", "max-ban-score": "0", "max-clients": "512", "workers": "2"}
    )
    tunnels: list[Conn] = []
    results: list[tuple[str, str, str]] = []
    started = time.monotonic()

    def worker(index: int) -> tuple[str, str, str]:
        conn, node, ipv4, ipv6 = _login_and_connect(index, cluster)
        tunnels.append(conn)
        return node, ipv4, ipv6

    # Threads that joined the client namespace make their sockets there without a helper thread.
    def join_client_ns() -> None:
        enter_netns(cluster.pair.client)

    try:
        with concurrent.futures.ThreadPoolExecutor(8, initializer=join_client_ns) as pool:
            results = list(pool.map(worker, range(MASS_LOGINS)))
        took = time.monotonic() - started
        ipv4s = [ipv4 for _, ipv4, _ in results]
        ipv6s = [ipv6 for _, _, ipv6 in results]
        assert all(ipv4s), results
        assert all(ipv6s), results
        assert len(set(ipv4s)) == MASS_LOGINS, _duplicates(ipv4s)
        assert len(set(ipv6s)) == MASS_LOGINS, _duplicates(ipv6s)
        pool4, pool6 = ipaddress.ip_network(POOL4), ipaddress.ip_network(POOL6)
        assert all(ipaddress.ip_address(a) in pool4 for a in ipv4s), ipv4s
        assert all(ipaddress.ip_address(a) in pool6 for a in ipv6s), ipv6s
        per_node = {n: sum(1 for node, _, _ in results if node == n) for n in NODES}
        assert per_node == {"gw-a": MASS_LOGINS // 2, "gw-b": MASS_LOGINS // 2}, per_node

        # Both nodes agree: every node's listing holds all 200, each address once.
        for node in cluster.nodes.values():

            def complete(node: Node = node) -> bool:
                return sorted(str(u["IPv4"]) for u in node.users()) == sorted(ipv4s)

            wait_for(complete, 20, f"the 200 tunnels in {node.name}'s listing")
            nodes = {str(u["Node"]) for u in node.users()}
            assert nodes == set(NODES), nodes
        print(f"\n{MASS_LOGINS} logins + CONNECTs over two nodes in {took:.1f} s")
        assert took < 90, f"{MASS_LOGINS} logins took {took:.0f} s"
    finally:
        for conn in tunnels:
            conn.close()
    for node in cluster.nodes.values():
        node.server.assert_alive()


def _duplicates(values: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return {k: v for k, v in counts.items() if v > 1}


def test_wrong_passwords_through_one_node_ban_the_real_address_on_the_other(
    cluster: Cluster, openconnect: OpenConnectRunner
) -> None:
    cluster.start(
        {
            "max-ban-score": "50",
            "ban-points-wrong-password": "10",
            "ban-points-connection": "1",
            "ban-time": "600",
        }
    )
    gw_a, gw_b = cluster.nodes["gw-a"], cluster.nodes["gw-b"]
    via_a = cluster.endpoint("gw-a")
    for _ in range(5):
        bad = openconnect.authenticate(via_a, user="alice", stdin="nope\n", mode="--cookieonly")
        assert bad.returncode != 0, bad.describe()
    gw_a.server.wait_log(rf"event=address-banned remote={re.escape(CLIENT_ADDR)}\b", timeout=5)
    assert "event=login-failed" not in gw_b.server.log_text()  # Every try went to gw-a.

    wait_for(lambda: CLIENT_ADDR in gw_b.ctl("show", "ip", "bans"), 10, "the ban on gw-b")
    bans = gw_b.ctl("show", "ip", "bans")
    for balancer_side in (SERVER_ADDR, gw_a.netns.peer, gw_b.netns.peer):
        assert balancer_side not in bans, bans
    [ban] = json.loads(gw_b.ctl("show", "ip", "bans", json_output=True))
    assert ban["IP"] == CLIENT_ADDR, ban

    offset = gw_b.server.log_size()
    refused = openconnect.authenticate(
        cluster.endpoint("gw-b"), user="alice", stdin="alicepass\n", mode="--cookieonly"
    )
    assert refused.returncode != 0, refused.describe()
    gw_b.server.wait_log(
        rf"event=connection-refused remote={re.escape(CLIENT_ADDR)} reason='address is banned'",
        since=offset,
        timeout=5,
    )
    assert "event=login " not in gw_b.server.log_text()

    # An unban on one node lifts the ban on both.
    gw_b.ctl("unban", "ip", CLIENT_ADDR)
    wait_for(lambda: CLIENT_ADDR not in gw_a.ctl("show", "ip", "bans"), 10, "the unban on gw-a")
    again = openconnect.authenticate(via_a, user="alice", stdin="alicepass\n", mode="--cookieonly")
    assert again.returncode == 0, again.describe()


def test_ctl_on_one_node_lists_and_terminates_the_other_nodes_users(
    cluster: Cluster, openconnect: OpenConnectRunner
) -> None:
    cluster.start()
    gw_a, gw_b = cluster.nodes["gw-a"], cluster.nodes["gw-b"]
    alice = openconnect.connect(cluster.endpoint("gw-a"), user="alice", password="alicepass")
    bob_auth = openconnect.authenticate(cluster.endpoint("gw-b"), user="bob", stdin="bobpass\n")
    assert bob_auth.returncode == 0, bob_auth.describe()
    bob = openconnect.connect(cluster.endpoint("gw-b"), cookie=bob_auth.cookie)
    env_a, env_b = alice.wait_env(), bob.wait_env()

    def both_listed(node: Node) -> bool:
        return {str(u["Username"]) for u in node.users()} == {"alice", "bob"}

    for node in (gw_a, gw_b):
        wait_for(lambda n=node: both_listed(n), 20, f"both users in {node.name}'s listing")
        by_name = {u["Username"]: u for u in node.users()}
        assert (by_name["alice"]["Node"], by_name["alice"]["IPv4"]) == (
            "gw-a",
            env_a["INTERNAL_IP4_ADDRESS"],
        ), by_name
        assert (by_name["bob"]["Node"], by_name["bob"]["IPv4"]) == (
            "gw-b",
            env_b["INTERNAL_IP4_ADDRESS"],
        ), by_name
    table = gw_a.ctl("show", "users")
    rows = {line.split()[1]: line for line in table.splitlines()[1:] if line.strip()}
    assert set(rows) == {"alice", "bob"}, table
    assert env_b["INTERNAL_IP4_ADDRESS"] in rows["bob"], table
    # The node, in the text too: the table's last column, and the user's block.
    assert table.splitlines()[0].split()[-1] == "node", table
    assert rows["bob"].split()[-1] == "gw-b", table
    assert rows["alice"].split()[-1] == "gw-a", table
    detail = gw_a.ctl("show", "user", "bob")
    assert re.search(r"\bNode: gw-b\b", detail), detail

    offset = gw_b.server.log_size()
    gw_a.ctl("terminate", "user", "bob")
    bob.wait(timeout=20)
    gw_b.server.wait_log(r"event=tunnel-down user='bob'", since=offset, timeout=10)
    wait_for(lambda: not gw_b.server.tun_links(), 10, "bob's tun gone on gw-b")
    wait_for(
        lambda: {str(u["Username"]) for u in gw_a.users()} == {"alice"}, 20, "bob gone from ctl"
    )
    # The session is dead everywhere: its cookie is refused by the other node too.
    again = openconnect.connect(cluster.endpoint("gw-a"), cookie=bob_auth.cookie)
    assert again.wait(timeout=30) == COOKIE_REJECTED, again.describe()
    assert alice.proc.poll() is None, alice.describe()
    assert gw_a.server.tun_links(), gw_a.server.describe()


def test_a_redis_outage_keeps_tunnels_refuses_logins_and_duplicates_no_lease(
    netns_pair: NetnsPair, cluster: Cluster, openconnect: OpenConnectRunner
) -> None:
    cluster.start()
    alice = openconnect.connect(cluster.endpoint("gw-a"), user="alice", password="alicepass")
    bob = openconnect.connect(cluster.endpoint("gw-b"), user="bob", password="bobpass")
    env_a = alice.wait_env()
    bob.wait_env()
    gw_a, gw_b = cluster.nodes["gw-a"], cluster.nodes["gw-b"]
    # Both tunnels route the pool; gw-a's end of it (10.77.0.1 there) goes through alice's.
    netns_pair.run_in(
        netns_pair.client, ["ip", "route", "replace", f"{SERVER_TUN4}/32", "dev", alice.interface]
    )
    offsets = {n.name: n.server.log_size() for n in (gw_a, gw_b)}

    cluster.redis.stop()
    down_at = time.monotonic()
    # Established tunnels pass traffic: iperf3 through alice's tunnel to gw-a's end of it.
    rate = iperf3(gw_a.netns.tunnel_view, server_addr=SERVER_TUN4, seconds=3)
    assert rate > 1e6, f"{rate:.0f} bit/s through gw-a during the outage"
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received == 3

    # A login during the outage fails with a clear message; both gateways stay up.
    for node in (gw_a, gw_b):
        failed = openconnect.authenticate(
            cluster.endpoint(node.name), user="bob", stdin="bobpass\n"
        )
        assert failed.returncode != 0, failed.describe()
        said = (failed.stdout + failed.stderr).lower()
        assert OUTAGE_MESSAGE in said, failed.describe()
        node.server.assert_alive()
    # Not counted toward a ban (the store's failure is not the client's).
    assert "event=address-banned" not in gw_a.server.log_since(offsets["gw-a"])

    time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))
    assert alice.proc.poll() is None, alice.describe()
    assert bob.proc.poll() is None, bob.describe()
    cluster.redis.start()

    # Logins work again (the nodes reconnect to Redis on their own).
    def login_works() -> bool:
        result = openconnect.authenticate(
            cluster.endpoint("gw-b"), user="bob", stdin="bobpass\n", mode="--cookieonly"
        )
        return result.returncode == 0

    wait_for(login_works, timeout=30, what="a login after Redis returned")

    # alice again, on the *other* node: predictable-ips makes it ask for the same address as
    # her tunnel on gw-a, which gw-b may only grant if gw-a did not re-assert its lease.
    second = openconnect.connect(cluster.endpoint("gw-b"), user="alice", password="alicepass")
    env_second = second.wait_env()
    assert env_second["INTERNAL_IP4_ADDRESS"] != env_a["INTERNAL_IP4_ADDRESS"]
    assert _ipv6(env_second["INTERNAL_IP6_ADDRESS"]) != _ipv6(env_a["INTERNAL_IP6_ADDRESS"])

    sessions = gw_a.own_users() + gw_b.own_users()
    assert len(sessions) == 3, sessions
    ipv4s = [str(u["IPv4"]) for u in sessions]
    ipv6s = [_ipv6(u["IPv6"]) for u in sessions]
    assert len(set(ipv4s)) == 3, sessions
    assert len(set(ipv6s)) == 3, sessions
    rate = iperf3(gw_a.netns.tunnel_view, server_addr=SERVER_TUN4, seconds=2)
    assert rate > 1e6
    for node in (gw_a, gw_b):
        node.server.assert_alive()
        assert "Traceback" not in node.server.log_since(offsets[node.name]), node.server.describe()
    assert tcp_port_open(netns_pair.client, SERVER_ADDR, FRONT_ANY)


def test_disconnect_id_on_one_node_ends_that_tunnel_on_the_other(
    cluster: Cluster, openconnect: OpenConnectRunner
) -> None:
    """The ``ID`` of ``show users`` names one tunnel in the whole cluster, so ``disconnect id``
    given to any node ends that tunnel and no other (occtl's IDs are per process; two nodes
    numbering their tunnels alike would make the listing ambiguous)."""
    cluster.start()
    gw_a, gw_b = cluster.nodes["gw-a"], cluster.nodes["gw-b"]
    alice = openconnect.connect(cluster.endpoint("gw-a"), user="alice", password="alicepass")
    bob = openconnect.connect(cluster.endpoint("gw-b"), user="bob", password="bobpass")
    alice.wait_env()
    bob.wait_env()
    wait_for(lambda: len(gw_a.users()) == 2, 20, "both users in gw-a's listing")
    ids = {str(u["Username"]): int(str(u["ID"])) for u in gw_a.users()}
    assert ids["alice"] != ids["bob"], f"two tunnels, one ID: {gw_a.ctl('show', 'users')}"

    gw_a.ctl("disconnect", "id", str(ids["bob"]))
    bob.wait(timeout=30)
    wait_for(lambda: not gw_b.server.tun_links(), 10, "bob's tun gone on gw-b")
    assert alice.proc.poll() is None, alice.describe()
    assert gw_a.server.tun_links(), gw_a.server.describe()
    assert [u["Username"] for u in gw_b.users()] == ["alice"]


def test_nodes_share_a_redis_over_tls_and_never_log_its_password(
    cluster: Cluster, openconnect: OpenConnectRunner
) -> None:
    """``rediss://`` with ``requirepass``: a cookie from one node opens a tunnel on the other, and
    neither log holds the password."""
    cluster.redis.stop()
    cluster.redis.tls = (cluster.cert.cert_path, cluster.cert.key_path)  # Its own CA.
    cluster.redis.start()
    assert cluster.redis.url().startswith("rediss://")
    cluster.start()
    gw_a, gw_b = cluster.nodes["gw-a"], cluster.nodes["gw-b"]
    auth = openconnect.authenticate(cluster.endpoint("gw-a"), user="alice", stdin="alicepass\n")
    assert auth.returncode == 0, auth.describe()
    client = openconnect.connect(cluster.endpoint("gw-b"), cookie=auth.cookie)
    env = client.wait_env()
    [user] = gw_b.own_users()
    assert (user["Username"], user["IPv4"]) == ("alice", env["INTERNAL_IP4_ADDRESS"])
    assert "event=login " in gw_a.server.log_text()
    assert "event=login " not in gw_b.server.log_text()
    for node in (gw_a, gw_b):
        log = node.server.log_text()
        assert re.search(r"event=session-store-up url=rediss://:\*\*\*@", log), log
        assert REDIS_PASSWORD not in log
        assert REDIS_PASSWORD not in node.ctl("show", "status")


def test_draining_a_node_moves_its_tunnels_to_the_other(
    netns_pair: NetnsPair, cluster: Cluster, openconnect: OpenConnectRunner
) -> None:
    """The patching procedure of docs/CLUSTER.md: ``ctl stop drain`` on the node that serves a
    tunnel takes it out of HAProxy at once, and the tunnel moves to the other node with its
    cookie and addresses when the grace ends; the drained node exits 0."""
    cluster.start()
    client = openconnect.connect(cluster.endpoint(), user="alice", password="alicepass")
    env = client.wait_env()
    home = cluster.node_of(client)
    [other] = [n for n in cluster.nodes.values() if n is not home]

    assert home.ctl("stop", "drain", "3").startswith("Server draining")
    wait_for(lambda: "DOWN" in _haproxy_status(cluster.stats_socket, home.name), 10, "drained DOWN")
    # Out of rotation: a new login through the balancer lands on the other node.
    bob = openconnect.authenticate(cluster.endpoint(), user="bob", stdin="bobpass\n")
    assert bob.returncode == 0, bob.describe()
    assert "user='bob'" in other.server.wait_log(r"event=login user='bob'", timeout=5)
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received == 3  # Still home.

    assert home.server.proc.wait(timeout=40) == 0, home.server.describe()

    def moved() -> bool:
        return any(u.get("Username") == "alice" for u in other.own_users())

    wait_for(moved, timeout=60, what=f"alice's reconnect to {other.name}")
    [user] = [u for u in other.own_users() if u.get("Username") == "alice"]
    assert (user["IPv4"], _ipv6(user["IPv6"])) == (
        env["INTERNAL_IP4_ADDRESS"],
        _ipv6(env["INTERNAL_IP6_ADDRESS"]),
    ), user
    assert client.proc.poll() is None, client.describe()
    assert "Received server disconnect" not in client.output(), client.describe()
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=5, deadline=15).received >= 3
    assert "event=login user='alice'" not in other.server.log_text()


TOTP_KEY = bytes(range(1, 21))


def test_an_otp_code_used_on_one_node_is_refused_on_the_other(
    cluster: Cluster, openconnect: OpenConnectRunner
) -> None:
    """Each node checks codes against its own copy of the OTP file (whose replay state is its
    own), so only the shared store can refuse a code another node accepted a moment ago."""

    def otp_auth(name: str, workdir: Path) -> dict[str, str]:
        otp = cluster.workdir / f"{name}.oath"
        otp.write_text(f"HOTP/T30 alice - {TOTP_KEY.hex()}\n")
        return {"auth": f'"plain[passwd={workdir / "ocpasswd"},otp={otp}]"'}

    cluster.start(per_node=otp_auth)
    totp = pyotp.TOTP(base64.b32encode(TOTP_KEY).decode())
    if time.time() % 30 > 24:  # Keep the four logins inside one 30 s step.
        time.sleep(31 - time.time() % 30)
    step = int(time.time() // 30)
    previous, current = totp.at((step - 1) * 30), totp.at(step * 30)  # Both in the ±1 window.

    def login(node: str, code: str) -> int:
        result = openconnect.authenticate(
            cluster.endpoint(node), user="alice", stdin=f"alicepass\n{code}\n", mode="--cookieonly"
        )
        return result.returncode

    assert login("gw-a", previous) == 0, openconnect.describe()
    assert login("gw-b", previous) != 0, "gw-b accepted a code gw-a had just accepted"
    assert login("gw-b", current) == 0, openconnect.describe()  # gw-b's OTP check works.
    assert login("gw-a", current) != 0, "gw-a accepted a code gw-b had just accepted"
    assert int(time.time() // 30) <= step + 1
