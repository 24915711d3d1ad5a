"""Acceptance of issue 14 §2 (first part): ``listen-proxy-proto`` behind a real HAProxy.

HAProxy (Debian's ``haproxy``, ``mode tcp``) runs in the server namespace with the test's own
configuration and relays to the gateway with ``send-proxy`` (PROXY protocol v1) or
``send-proxy-v2`` (v2); the gateway's TCP peer is then the balancer, 198.18.0.1. Asserted: the real
openconnect client (198.18.0.2) gets a tunnel through the balancer and ping works, occtl, the
connect script and the log show the client's address, not the balancer's; wrong passwords through
the balancer ban the client's address (and another client behind the same balancer still logs
in); a connection straight to the gateway, without a header, is closed before TLS; a LOCAL header
(a health check) is closed; a header that never completes is closed after 10 s; a header that
arrives in pieces is followed by a working TLS handshake.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from . import test_auth_radius as _radius_tests
from ._freeradius import FreeRadius
from ._haproxy import Balancer, haproxy_missing, start_haproxy
from ._netns import CLIENT_ADDR, SERVER_ADDR, NetnsPair, SideNetns, netns_socket
from ._openconnect import OPENCONNECT, OpenConnectRunner, StaticEndpoint
from ._server import (
    PORT,
    SERVER_TUN4,
    Server,
    ServerKind,
    StartServer,
    recording_script,
    server_kind,
)
from ._traffic import ping

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        server_kind() is ServerKind.OCSERV, reason="ocgate's control socket and log lines"
    ),
    pytest.mark.skipif(haproxy_missing(), reason="needs haproxy (Debian package; make test)"),
]

OCGATE = str(Path(sys.executable).parent / "ocgate")
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # proxy-protocol.txt §2.2

StartBalancer = Callable[[str], Balancer]

radius = _radius_tests.radius
"""FreeRADIUS in the server namespace (the fixture of test_auth_radius.py)."""


@pytest.fixture
def balancer(
    request: pytest.FixtureRequest, netns_pair: NetnsPair, tmp_path: Path
) -> Iterator[StartBalancer]:
    """Factory ``balancer("send-proxy" | "send-proxy-v2")``: HAProxy in front of the gateway."""
    started: list[Balancer] = []

    def start(send_proxy: str) -> Balancer:
        lb = start_haproxy(
            netns_pair,
            tmp_path / f"haproxy{len(started)}",
            backend=(SERVER_ADDR, PORT),
            send_proxy=send_proxy,
        )
        started.append(lb)
        return lb

    try:
        yield start
    finally:
        for lb in started:
            lb.stop()


def _gateway(start_gateway: StartServer, tmp_path: Path, **extra: str) -> tuple[Server, Path]:
    sock = tmp_path / "occtl.sock"
    overrides = {
        "listen-proxy-proto": "true",
        "use-occtl": "true",
        "occtl-socket-file": str(sock),
        **extra,
    }
    return start_gateway(overrides), sock


def ctl(sock: Path, *words: str) -> str:
    argv = [OCGATE, "ctl", "-s", str(sock), *words]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 0, f"{argv}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key] = value
    return env


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"], ids=["v1", "v2"])
def test_a_tunnel_through_haproxy_carries_the_clients_address(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    balancer: StartBalancer,
    tmp_path: Path,
    send_proxy: str,
) -> None:
    script, out = recording_script(tmp_path)
    dtls = send_proxy == "send-proxy-v2"  # DTLS goes straight to the gateway, as with ocserv.
    extra = {"connect-script": str(script), **({"udp-port": "443"} if dtls else {})}
    server, sock = _gateway(start_gateway, tmp_path, **extra)
    lb = balancer(send_proxy)
    client = openconnect.connect(
        StaticEndpoint(lb.url, server.pin), user="alice", password="alicepass", dtls=dtls
    )
    client.wait_env(timeout=30)
    result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3)
    assert result.received == 3, f"{result.output}\n{client.describe()}\n{lb.describe()}"

    detail = ctl(sock, "show", "user", "alice")
    assert re.search(rf"Remote IP: {re.escape(CLIENT_ADDR)}\b", detail), detail
    assert SERVER_ADDR + " " not in ctl(sock, "show", "users")
    server.wait_log(rf"event=tunnel-up .*remote={re.escape(CLIENT_ADDR)}\b", timeout=5)
    connect_env = _read_env(next(out.glob("connect-*")))
    assert connect_env["IP_REAL"] == CLIENT_ADDR
    assert connect_env["IP_REAL_LOCAL"] == SERVER_ADDR  # The address the client connected to.
    if dtls:
        deadline = time.monotonic() + 20
        while "Established DTLS connection" not in client.output():
            assert time.monotonic() < deadline, f"no DTLS through the balancer\n{client.describe()}"
            time.sleep(0.2)
    server.assert_alive()


def test_radius_accounting_names_the_client_behind_haproxy(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    balancer: StartBalancer,
    radius: FreeRadius,
    tmp_path: Path,
) -> None:
    radcli = radius.write_radcli_config(tmp_path / "radiusclient.conf", timeout=1, retries=2)
    server, _sock = _gateway(
        start_gateway,
        tmp_path,
        auth=f'"radius[config={radcli},groupconfig=true]"',
        acct=f'"radius[config={radcli}]"',
    )
    lb = balancer("send-proxy")
    client = openconnect.connect(
        StaticEndpoint(lb.url, server.pin), user="alice", password="alicepass"
    )
    client.wait_env(timeout=30)
    start = _radius_tests._wait_records(radius, "Start")
    assert start[0]["Calling-Station-Id"] == CLIENT_ADDR, start


def test_wrong_passwords_through_haproxy_ban_the_client_not_the_balancer(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    balancer: StartBalancer,
    tmp_path: Path,
) -> None:
    server, sock = _gateway(
        start_gateway,
        tmp_path,
        **{
            "max-ban-score": "50",
            "ban-points-wrong-password": "10",
            "ban-points-connection": "1",
            "ban-time": "600",
        },
    )
    lb = balancer("send-proxy-v2")
    endpoint = StaticEndpoint(lb.url, server.pin)
    for _ in range(5):
        bad = openconnect.authenticate(endpoint, user="alice", stdin="nope\n", mode="--cookieonly")
        assert bad.returncode != 0, bad.describe()
    server.wait_log(rf"event=address-banned remote={re.escape(CLIENT_ADDR)}\b", timeout=5)
    bans = ctl(sock, "show", "ip", "bans")
    assert CLIENT_ADDR in bans, bans
    assert SERVER_ADDR not in bans, bans
    offset = server.log_size()
    refused = openconnect.authenticate(
        endpoint, user="alice", stdin="alicepass\n", mode="--cookieonly"
    )
    assert refused.returncode != 0, refused.describe()
    server.wait_log(
        rf"event=connection-refused remote={re.escape(CLIENT_ADDR)} reason='address is banned'",
        since=offset,
        timeout=5,
    )

    # Another client behind the same balancer is not touched by the ban.
    side = SideNetns.create(netns_pair, "pp")
    try:
        argv = [OPENCONNECT, "--non-inter", "--servercert", server.pin, "--cookieonly"]
        argv += ["--user", "bob", "--passwd-on-stdin", f"https://{side.server_addr}:{lb.port}/"]
        other = subprocess.run(
            netns_pair.exec_argv(side.name, argv),
            input="bobpass\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert other.returncode == 0, f"{other.stdout}\n{other.stderr}\n{server.describe()}"
    finally:
        side.destroy()
    assert "198.18.1.2" not in ctl(sock, "show", "ip", "bans")


def test_without_a_valid_header_the_connection_is_closed_before_tls(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    server, _sock = _gateway(start_gateway, tmp_path)
    direct = openconnect.authenticate(
        server, user="alice", stdin="alicepass\n", mode="--cookieonly"
    )
    assert direct.returncode != 0, direct.describe()
    server.wait_log(
        rf"event=proxy-header-refused remote={re.escape(CLIENT_ADDR)} "
        r"reason='no PROXY protocol header",
        timeout=5,
    )

    # A LOCAL header (a balancer's health check) is closed at once, as ocserv does.
    with _connect(netns_pair) as conn:
        conn.sendall(V2_SIGNATURE + b"\x20\x00\x00\x00")
        assert conn.recv(100) == b"", "a LOCAL connection was not closed"

    # A header that never completes is closed after 10 s (ocserv's bound too).
    with _connect(netns_pair) as conn:
        conn.settimeout(20)
        started = time.monotonic()
        conn.sendall(b"PROXY TCP4 192.0.2.78 ")
        assert conn.recv(100) == b"", "an incomplete header was not closed"
        assert 9.0 < time.monotonic() - started < 15.0
    server.wait_log(r"event=proxy-header-refused .*in time'", timeout=5)

    # A header split in pieces, then a real TLS handshake on the same connection.
    header = b"PROXY TCP4 192.0.2.77 198.18.0.1 40000 443\r\n"
    with _connect(netns_pair) as conn:
        for piece in (header[:7], header[7:30], header[30:]):
            conn.sendall(piece)
            time.sleep(0.05)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(conn, server_hostname="gateway.test") as tls:
            assert tls.version() is not None
            tls.sendall(b"GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
            assert tls.recv(12).startswith(b"HTTP/1.1 ")
    server.assert_alive()


def _connect(pair: NetnsPair) -> socket.socket:
    conn = netns_socket(pair.client)
    conn.settimeout(10)
    conn.connect((SERVER_ADDR, PORT))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn
