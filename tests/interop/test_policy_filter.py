"""Acceptance of issue 11 (tunnel source addresses, restrict-user-to-routes/-ports).

openconnect 9.01 keeps a tunnel up (over CSTP with ``--no-dtls``, or over DTLS) while the test
sends real packets from the client namespace to addresses "behind the gateway": addresses on the
server namespace's loopback, so a packet the gateway writes into its TUN device is delivered there
(the server namespace's ``rp_filter`` is off for the test, so the kernel would accept a forged
source: only ocgate's filter stands between the client and the listener).

    client ns: app / raw socket ─▶ ocN ─▶ openconnect ═CSTP/DTLS═▶ ocgate ─▶ vpnsN ─▶ lo
                                                                            10.20.1.1 (route)
                                                                            10.20.5.1 (no-route)
                                                                            10.40.1.1 (no route)
                                                                            10.77.0.53 (DNS)
                                                                            fd20::1, fd40::1

Forged sources are built by hand (IPv4/IPv6 + UDP with ``struct``) and sent through a raw socket
(``IPPROTO_RAW``, the header included) in the client namespace, so the kernel routes them into the
tun and openconnect carries them like any packet. Every blocked probe has a twin that must pass,
so an empty listener always means "dropped by the gateway", never "the probe did not work".
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._metrics import sample, scrape
from ._netns import NetnsPair, netns_socket, tcp_port_open
from ._openconnect import OpenConnect, OpenConnectRunner
from ._rawclient import aggauth_login, connect_tunnel, open_conn
from ._server import Server, ServerKind, StartServer, server_kind
from ._traffic import ping

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        server_kind() is ServerKind.OCSERV,
        reason="ocgate's packet filter, control socket and metrics (ocserv leaves source "
        "checks to rp_filter and restrictions to ocserv-fw's iptables rules)",
    ),
]

OCGATE = str(Path(sys.executable).parent / "ocgate")
BEHIND4, NO_ROUTE4, OUTSIDE4, DNS4 = "10.20.1.1", "10.20.5.1", "10.40.1.1", "10.77.0.53"
BEHIND6, OUTSIDE6 = "fd20::1", "fd40::1"
LOOPBACK_ADDRS = (BEHIND4, NO_ROUTE4, OUTSIDE4, DNS4, BEHIND6, OUTSIDE6)
# Routed into the tunnel by the client whatever the gateway says (vpnc-script-test OCG_ROUTES).
CLIENT_ROUTES = ("fd77::/64", "10.40.0.0/16", "fd40::/48")
METRICS_PORT = 9097
TCP_ALLOWED, TCP_DENIED = 8443, 2222
PROBE_WAIT = 1.5
ESTABLISHED = re.compile(r"Established DTLS connection")
TRANSPORTS = ["cstp", "dtls"]
RP_FILTER_KEYS = ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter")


# --- The network behind the gateway -----------------------------------------------------------


@pytest.fixture
def behind(netns_pair: NetnsPair) -> Iterator[None]:
    """The test addresses on the server namespace's loopback, reverse-path filtering off."""
    ns = netns_pair.server
    saved = {
        key: netns_pair.run_in(ns, ["sysctl", "-n", key]).stdout.strip() for key in RP_FILTER_KEYS
    }
    for key in RP_FILTER_KEYS:
        netns_pair.run_in(ns, ["sysctl", "-q", "-w", f"{key}=0"])
    added: list[str] = []
    try:
        for addr in LOOPBACK_ADDRS:
            prefix = "/128" if ":" in addr else "/32"
            extra = ["nodad"] if ":" in addr else []
            netns_pair.run_in(ns, ["ip", "addr", "add", addr + prefix, "dev", "lo", *extra])
            added.append(addr + prefix)
        yield
    finally:
        for cidr in added:
            netns_pair.run_in(ns, ["ip", "addr", "del", cidr, "dev", "lo"], check=False)
        for key, value in saved.items():
            netns_pair.run_in(ns, ["sysctl", "-q", "-w", f"{key}={value}"], check=False)


class UdpListener:
    """A UDP socket on an address behind the gateway; :meth:`received` drains what arrived."""

    def __init__(self, pair: NetnsPair, addr: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.sock = netns_socket(pair.server, family, socket.SOCK_DGRAM)
        self.sock.bind((addr, port))
        self.addr, self.port = addr, port

    def received(self, wait: float = PROBE_WAIT) -> list[bytes]:
        datagrams: list[bytes] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                datagrams.append(self.sock.recv(65535))
            except TimeoutError:
                break
        return datagrams

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listeners(netns_pair: NetnsPair, behind: None) -> Iterator[dict[tuple[str, int], UdpListener]]:
    """UDP listeners behind the gateway (and TCP listeners on BEHIND4/6, ports 8443 and 2222;
    not 443, where the gateway itself listens on every address)."""
    made: dict[tuple[str, int], UdpListener] = {}
    tcp: list[socket.socket] = []
    for addr, port in (
        (BEHIND4, 5353), (BEHIND4, 1500), (BEHIND4, 3000), (OUTSIDE4, 5353), (OUTSIDE4, 1500),
        (NO_ROUTE4, 5353), (DNS4, 53), (BEHIND6, 5353), (OUTSIDE6, 5353),
    ):  # fmt: skip
        made[(addr, port)] = UdpListener(netns_pair, addr, port)
    for addr in (BEHIND4, BEHIND6):
        for port in (TCP_ALLOWED, TCP_DENIED):
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sock = netns_socket(netns_pair.server, family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((addr, port))
            sock.listen(16)  # The kernel completes handshakes: nobody needs to accept.
            tcp.append(sock)
    try:
        yield made
    finally:
        for listener in made.values():
            listener.close()
        for sock in tcp:
            sock.close()


# --- Packets from the client ------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def forged_udp(src: str, dst: str, port: int, payload: bytes) -> bytes:
    """An IPv4 or IPv6 packet with a UDP datagram (RFC 791/8200, RFC 768), checksums filled."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    length = 8 + len(payload)
    if a.version == 4:
        pseudo = a.packed + b.packed + struct.pack("!BBH", 0, 17, length)
    else:
        pseudo = a.packed + b.packed + struct.pack("!IxxxB", length, 17)
    udp = struct.pack("!HHHH", 40000, port, length, 0) + payload
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    if a.version == 6:
        return struct.pack("!IHBB16s16s", 6 << 28, length, 17, 64, a.packed, b.packed) + udp
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, 17, 0, a.packed, b.packed)
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + udp


_RAW_SEND = """
import socket, sys
for item in sys.argv[1:]:
    family, dst, data = item.split("=", 2)
    kind = socket.AF_INET6 if family == "6" else socket.AF_INET
    with socket.socket(kind, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.sendto(bytes.fromhex(data), (dst, 0))
"""


def send_raw(pair: NetnsPair, packets: Sequence[bytes]) -> None:
    """Send whole IP packets from the client namespace (raw sockets, the header included)."""
    args = []
    for packet in packets:
        v6 = packet[0] >> 4 == 6
        dst = ipaddress.ip_address(packet[24:40] if v6 else packet[16:20])
        args.append(f"{6 if v6 else 4}={dst}={packet.hex()}")
    pair.run_in(pair.client, [sys.executable, "-c", _RAW_SEND, *args])


def send_udp(pair: NetnsPair, addr: str, port: int, payload: bytes) -> None:
    """An ordinary datagram from the client namespace (its source is the tunnel address)."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with netns_socket(pair.client, family, socket.SOCK_DGRAM) as sock:
        sock.sendto(payload, (addr, port))


def tcp_open(pair: NetnsPair, addr: str, port: int) -> bool:
    if ":" not in addr:
        return tcp_port_open(pair.client, addr, port, timeout=PROBE_WAIT)
    sock = netns_socket(pair.client, socket.AF_INET6, socket.SOCK_STREAM)
    sock.settimeout(PROBE_WAIT)
    try:
        sock.connect((addr, port))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def pings(pair: NetnsPair, addr: str) -> bool:
    """Whether a ping from the client namespace gets an answer (3 tries within 3 s)."""
    return ping(pair, pair.client, addr, count=3, interval=0.2, deadline=3).received > 0


# --- The gateway and its client ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gateway:
    server: Server
    sock: Path

    def ctl(self, *words: str, json_output: bool = False) -> str:
        argv = [OCGATE, "ctl", "-s", str(self.sock), *(["--json"] if json_output else []), *words]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        assert proc.returncode == 0, f"{argv}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def user(self, name: str) -> dict[str, object]:
        users = json.loads(self.ctl("show", "user", name, json_output=True))
        assert len(users) == 1, users
        user: dict[str, object] = users[0]
        return user

    def metric(self, pair: NetnsPair, name: str) -> float:
        return sample(scrape(pair, METRICS_PORT), name)


def start(
    start_gateway: StartServer,
    tmp_path: Path,
    transport: str,
    overrides: dict[str, str | list[str] | None] | None = None,
) -> Gateway:
    sock = tmp_path / "occtl.sock"
    options: dict[str, str | list[str] | None] = {
        "use-occtl": "true",
        "occtl-socket-file": str(sock),
        "metrics-listen": f"127.0.0.1:{METRICS_PORT}",
        **(overrides or {}),
    }
    if transport == "dtls":
        options["udp-port"] = "443"
    return Gateway(start_gateway(options), sock)


def connect(
    openconnect: OpenConnectRunner, gateway: Gateway, transport: str, user: str = "alice"
) -> tuple[OpenConnect, dict[str, str]]:
    """A tunnel of ``user`` over ``transport``; with DTLS, wait until DTLS carries the data."""
    client = openconnect.connect(
        gateway.server,
        user=user,
        password=f"{user}pass",
        dtls=transport == "dtls",
        routes=CLIENT_ROUTES,
    )
    env = client.wait_env(timeout=30)
    if transport == "dtls":
        deadline = time.monotonic() + 20
        while not ESTABLISHED.search(client.output()):
            assert time.monotonic() < deadline, f"no DTLS\n{client.describe()}"
            time.sleep(0.2)
        assert gateway.user(user).get("DTLS cipher"), "the gateway reports no DTLS"
    return client, env


def dropped(gateway: Gateway, user: str, reason: str) -> int:
    value = gateway.user(user)[f"dropped_{reason.replace('-', '_')}"]
    assert isinstance(value, int)
    return value


# --- 1. Source addresses ----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_forged_sources_reach_nothing_and_are_counted(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    listeners: dict[tuple[str, int], UdpListener],
    tmp_path: Path,
    transport: str,
) -> None:
    users = tmp_path / "users"
    users.mkdir()
    (users / "alice").write_text("iroute = 192.168.5.0/24\niroute = fd55::/64\n")
    gateway = start(start_gateway, tmp_path, transport, {"config-per-user": str(users)})
    client, env = connect(openconnect, gateway, transport)
    lease4, lease6 = env["INTERNAL_IP4_ADDRESS"], env["INTERNAL_IP6_ADDRESS"]
    forged = [
        # Another address of the pool (another user's lease), an address of the server's own
        # network, and (IPv6) another pool address.
        forged_udp("10.77.0.200", BEHIND4, 5353, b"forged-pool"),
        forged_udp("198.18.0.1", BEHIND4, 5353, b"forged-veth"),
        forged_udp("10.20.1.7", BEHIND4, 5353, b"forged-inside"),
        forged_udp("fd77::200", BEHIND6, 5353, b"forged-v6-pool"),
        forged_udp("fd20::7", BEHIND6, 5353, b"forged-v6-inside"),
    ]
    genuine = [
        forged_udp(lease4, BEHIND4, 5353, b"genuine-v4"),
        forged_udp(lease6, BEHIND6, 5353, b"genuine-v6"),
        # The LAN behind the client (its per-user iroutes) is a valid source too.
        forged_udp("192.168.5.7", BEHIND4, 5353, b"iroute-v4"),
        forged_udp("fd55::7", BEHIND6, 5353, b"iroute-v6"),
    ]
    send_raw(netns_pair, forged)
    send_raw(netns_pair, genuine)  # Same builder, same raw socket: the path works.

    assert listeners[(BEHIND4, 5353)].received() == [b"genuine-v4", b"iroute-v4"]
    assert listeners[(BEHIND6, 5353)].received() == [b"genuine-v6", b"iroute-v6"]
    # Without a restriction every destination the client routes into the tunnel is reached:
    # the blocked probes of the restriction tests below fail because of the gateway only.
    for addr in (OUTSIDE4, NO_ROUTE4, OUTSIDE6):
        send_udp(netns_pair, addr, 5353, b"unrestricted")
        assert listeners[(addr, 5353)].received() == [b"unrestricted"], addr
    assert dropped(gateway, "alice", "spoofed-source") == len(forged)
    text = gateway.ctl("show", "user", "alice")
    assert re.search(rf"\tDropped packets: \d+ \(spoofed-source {len(forged)},", text), text
    assert "\tiRoutes: 192.168.5.0/255.255.255.0" in text, text
    by_id = gateway.ctl("show", "id", str(gateway.user("alice")["ID"]))
    assert re.search(rf"\tDropped packets: \d+ \(spoofed-source {len(forged)},", by_id), by_id
    name = 'ocgate_tunnel_dropped_packets_total{reason="spoofed-source"}'
    assert gateway.metric(netns_pair, name) == len(forged)
    # The tunnel is unharmed.
    assert pings(netns_pair, BEHIND4)
    assert client.proc.poll() is None
    gateway.server.assert_alive()


def test_a_client_cannot_pick_its_first_address(
    netns_pair: NetnsPair, start_gateway: StartServer
) -> None:
    server = start_gateway()
    offset = server.log_size()
    conn = open_conn(netns_pair.client, server.host, server.port, pin=server.pin)
    try:
        cookie = aggauth_login(conn, server.url, "alice", ["alicepass"])
        response = connect_tunnel(conn, cookie, extra=[("X-CSTP-Address", "10.77.0.77")])
        assert response is not None
        assert response.status == 200, response
        assert response.header("X-CSTP-Address") != "10.77.0.77"
    finally:
        conn.close()
    server.wait_log(
        r"event=address-request-ignored user='alice' .* asked=10\.77\.0\.77", since=offset
    )


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"bob": "explicit-ipv4 = 192.168.99.9\n"}, "outside the address pool"),
        ({"bob": "explicit-ipv6 = fd99::9\n"}, "outside the address pool"),
        (
            {"alice": "explicit-ipv4 = 10.77.0.9\n", "bob": "explicit-ipv4 = 10.77.0.9\n"},
            "leased to another session",
        ),
    ],
    ids=["v4-outside", "v6-outside", "collision"],
)
def test_a_bad_explicit_address_gets_no_tunnel(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    tmp_path: Path,
    files: dict[str, str],
    reason: str,
) -> None:
    users = tmp_path / "users"
    users.mkdir()
    for name, text in files.items():
        (users / name).write_text(text)
    server = start_gateway({"config-per-user": str(users)})
    if "alice" in files:  # alice holds 10.77.0.9 first.
        holder = open_conn(netns_pair.client, server.host, server.port, pin=server.pin)
        cookie = aggauth_login(holder, server.url, "alice", ["alicepass"])
        granted = connect_tunnel(holder, cookie)
        assert granted is not None
        assert granted.status == 200
        assert granted.header("X-CSTP-Address") == "10.77.0.9"
    offset = server.log_size()
    conn = open_conn(netns_pair.client, server.host, server.port, pin=server.pin)
    try:
        cookie = aggauth_login(conn, server.url, "bob", ["bobpass"])
        response = connect_tunnel(conn, cookie)
        assert response is not None
        assert response.status == 503, response
    finally:
        conn.close()
        if "alice" in files:
            holder.close()
    line = server.wait_log(r"event=address-refused user='bob'", since=offset)
    assert reason in line, line
    assert "event=tunnel-up user='bob'" not in server.log_since(offset)


# --- 2. restrict-user-to-routes ---------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_restrict_user_to_routes(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    listeners: dict[tuple[str, int], UdpListener],
    tmp_path: Path,
    transport: str,
) -> None:
    gateway = start(start_gateway, tmp_path, transport, {"restrict-user-to-routes": "true"})
    connect(openconnect, gateway, transport)
    # Inside a route: passes. Outside every route or inside a no-route: dropped.
    assert pings(netns_pair, BEHIND4)
    assert pings(netns_pair, BEHIND6)
    assert not pings(netns_pair, OUTSIDE4)
    assert not pings(netns_pair, NO_ROUTE4)
    assert not pings(netns_pair, OUTSIDE6)
    for addr in (BEHIND4, OUTSIDE4, NO_ROUTE4, BEHIND6, OUTSIDE6):
        send_udp(netns_pair, addr, 5353, f"to {addr}".encode())
    send_udp(netns_pair, DNS4, 53, b"query")  # A DNS server outside the routes: always allowed.
    assert listeners[(BEHIND4, 5353)].received() == [f"to {BEHIND4}".encode()]
    assert listeners[(BEHIND6, 5353)].received() == [f"to {BEHIND6}".encode()]
    assert listeners[(DNS4, 53)].received() == [b"query"]
    assert listeners[(OUTSIDE4, 5353)].received(0.2) == []
    assert listeners[(NO_ROUTE4, 5353)].received(0.2) == []
    assert listeners[(OUTSIDE6, 5353)].received(0.2) == []
    user = gateway.user("alice")
    assert user["Restricted to routes"] == "True"
    assert dropped(gateway, "alice", "restricted-route") >= 3 + 3 + 3 + 3  # pings + datagrams
    assert dropped(gateway, "alice", "restricted-port") == 0
    name = 'ocgate_tunnel_dropped_packets_total{reason="restricted-route"}'
    assert gateway.metric(netns_pair, name) >= 12


# --- 3. restrict-user-to-ports ----------------------------------------------------------------

ALLOW = f'"tcp({TCP_ALLOWED}), udp(1000-2000), icmp()"'
DENY = f'"!(tcp({TCP_DENIED}), udp(1000-2000), icmp())"'


def _assert_ports(
    pair: NetnsPair, listeners: dict[tuple[str, int], UdpListener], deny: bool
) -> None:
    """The allow list lets TCP 8443, UDP 1000-2000 and ICMP through; the deny list the opposite
    (TCP 2222 is blocked by both: not listed in one, listed in the other)."""
    assert tcp_open(pair, BEHIND4, TCP_ALLOWED)
    assert tcp_open(pair, BEHIND6, TCP_ALLOWED)
    assert not tcp_open(pair, BEHIND4, TCP_DENIED)
    assert not tcp_open(pair, BEHIND6, TCP_DENIED)
    send_udp(pair, BEHIND4, 1500, b"in-range")
    send_udp(pair, BEHIND4, 3000, b"out-of-range")
    in_range, out_of_range = listeners[(BEHIND4, 1500)], listeners[(BEHIND4, 3000)]
    if deny:
        assert out_of_range.received() == [b"out-of-range"]
        assert in_range.received(0.2) == []
        assert not pings(pair, BEHIND4)  # icmp() denied
        assert pings(pair, BEHIND6)  # icmpv6 is not icmp
    else:
        assert in_range.received() == [b"in-range"]
        assert out_of_range.received(0.2) == []
        assert pings(pair, BEHIND4)  # icmp() allowed
        assert not pings(pair, BEHIND6)  # icmpv6() not listed


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("form", ["allow", "deny"])
def test_restrict_user_to_ports(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    listeners: dict[tuple[str, int], UdpListener],
    tmp_path: Path,
    form: str,
    transport: str,
) -> None:
    value = DENY if form == "deny" else ALLOW
    gateway = start(start_gateway, tmp_path, transport, {"restrict-user-to-ports": value})
    connect(openconnect, gateway, transport)
    _assert_ports(netns_pair, listeners, deny=form == "deny")
    # Ports imply routes: a port that is allowed still does not reach outside the routes.
    port = 5353 if form == "deny" else 1500  # A port the list lets through.
    send_udp(netns_pair, OUTSIDE4, port, b"outside")
    assert listeners[(OUTSIDE4, port)].received(0.5) == []
    text = gateway.ctl("show", "user", "alice")
    listed = value.strip('"').removeprefix("!(").removesuffix(")").split(", ")
    mark = "!" if form == "deny" else ""
    assert f"\tRestricted to ports: {', '.join(mark + e for e in listed)}" in text, text
    assert "\tRestricted to routes: True" in text, text
    assert dropped(gateway, "alice", "restricted-port") >= 2 + 1 + 3  # TCP x2, UDP, pings
    name = 'ocgate_tunnel_dropped_packets_total{reason="restricted-port"}'
    assert gateway.metric(netns_pair, name) >= 6


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_per_user_and_per_group_files_override_the_global_ports(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    listeners: dict[tuple[str, int], UdpListener],
    tmp_path: Path,
    transport: str,
) -> None:
    users, groups = tmp_path / "users", tmp_path / "groups"
    users.mkdir()
    groups.mkdir()
    # alice is in group eng: the group file allows TCP 2222 only, her own file the deny list.
    (groups / "eng").write_text(f'restrict-user-to-ports = "tcp({TCP_DENIED})"\n')
    (users / "alice").write_text(f"restrict-user-to-ports = {DENY}\n")
    gateway = start(
        start_gateway,
        tmp_path,
        transport,
        {
            "restrict-user-to-ports": ALLOW,
            "config-per-user": str(users),
            "config-per-group": str(groups),
        },
    )
    alice, _ = connect(openconnect, gateway, transport, "alice")
    _assert_ports(netns_pair, listeners, deny=True)  # The user file wins.
    assert alice.stop() == 0
    bob, _ = connect(openconnect, gateway, transport, "bob")  # No file: the global allow list.
    _assert_ports(netns_pair, listeners, deny=False)
    assert bob.stop() == 0
