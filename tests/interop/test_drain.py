"""Behind a balancer (issue 14 §2/§3): the node name, ``GET /health`` and ``ctl stop drain``.

A drained node must hand its clients on, not end them: health says ``draining`` at once (so a
balancer's ``option httpchk GET /health`` takes the node out), new logins and CONNECTs are
refused, established tunnels keep passing traffic until the grace ends, and then every tunnel
closes *without* a DISCONNECT, so openconnect keeps its cookie and reconnects, and the gateway
exits 0. A second gateway that shares the session store (the other node, as a shared Redis would
make it) takes the client back with its cookie, with the same address and no new login.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ._netns import NetnsPair
from ._openconnect import OpenConnectRunner, StaticEndpoint
from ._server import SERVER_TUN4, Server, ServerKind, StartServer
from ._traffic import ping
from .test_ops import ctl, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

METRICS = "127.0.0.1:9099"
HEALTH = "127.0.0.1:9100"
GRACE = 4

_FETCH = """
import http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=5)
conn.request("GET", sys.argv[3])
resp = conn.getresponse()
print(resp.status)
sys.stdout.write(resp.read().decode())
"""


@pytest.fixture(autouse=True)
def _ocgate_only(kind: ServerKind) -> None:
    if kind is not ServerKind.OCGATE:
        pytest.skip("drives ocgate's own health endpoint and drain command")


def _get(pair: NetnsPair, listen: str, path: str) -> tuple[int, str]:
    """``GET path`` on ``listen`` from inside the server's namespace: (status, body)."""
    host, _, port = listen.rpartition(":")
    out = pair.run_in(pair.server, [sys.executable, "-c", _FETCH, host, port, path]).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def _start(start_gateway: StartServer, tmp_path: Path, node: str) -> tuple[Server, Path]:
    sock = tmp_path / "occtl.sock"
    store = tmp_path / "shared" / "sessions.sqlite"  # The nodes' shared session store.
    overrides = {
        "use-occtl": "true",
        "occtl-socket-file": str(sock),
        "session-store": f"sqlite://{store}",
        "metrics-listen": METRICS,
        "health-listen": HEALTH,
        "node-name": node,
        "workers": "2",
    }
    return start_gateway(overrides), sock


def test_drain_hands_clients_on_to_another_node(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    server, sock = _start(start_gateway, tmp_path, "gw-a")
    assert _get(netns_pair, HEALTH, "/health") == (200, "ready\n")
    assert _get(netns_pair, METRICS, "/health") == (200, "ready\n")
    assert _get(netns_pair, HEALTH, "/metrics")[0] == 404  # health-listen exposes no metrics

    auth = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    assert auth.returncode == 0, auth.describe()
    client = openconnect.connect(server, cookie=auth.cookie)
    env = client.wait_env()
    bob = openconnect.authenticate(server, user="bob", stdin="bobpass\n")  # CONNECTs later
    assert bob.returncode == 0, bob.describe()

    # The node name: in show status, show users and on every metric.
    status = json.loads(ctl(sock, "show", "status", json_output=True))
    assert (status["Node"], status["State"]) == ("gw-a", "ready")
    [user] = json.loads(ctl(sock, "show", "users", json_output=True))
    assert (user["Username"], user["Node"]) == ("alice", "gw-a")
    status_code, scrape = _get(netns_pair, METRICS, "/metrics")
    assert status_code == 200
    samples = [s for f in text_string_to_metric_families(scrape) for s in f.samples]
    assert len(samples) > 20
    assert {s.labels.get("node") for s in samples} == {"gw-a"}, scrape[:2000]
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
    key = (("node", "gw-a"), ("state", "connected"), ("transport", "cstp"))
    assert values[("ocgate_sessions", key)] == 1

    # Drain: health flips at once, the status says until when.
    offset = server.log_size()
    drained_at = time.monotonic()
    assert ctl(sock, "stop", "drain", str(GRACE)).startswith("Server draining")
    assert _get(netns_pair, HEALTH, "/health") == (503, "draining\n")
    assert _get(netns_pair, METRICS, "/health") == (503, "draining\n")
    text = ctl(sock, "show", "status")
    assert "\tState: draining\n" in text, text
    assert re.search(r"\tDrain deadline: .+\(", text), text
    assert 'ocgate_node_draining{node="gw-a"} 1.0' in _get(netns_pair, METRICS, "/metrics")[1]

    # A new login is refused clearly, and so is a CONNECT (a cookie from before the drain).
    refused = openconnect.authenticate(server, user="bob", stdin="bobpass\n")
    assert refused.returncode != 0, refused.describe()
    assert "Unexpected 503 result from server" in refused.stderr, refused.describe()
    server.wait_log(r"event=login-refused .*reason='node draining'", since=offset)
    late = openconnect.connect(server, cookie=bob.cookie)
    assert late.wait(timeout=30) != 0, late.describe()
    # openconnect shows the X-Reason (cstp.c: a 503 is -EINVAL, which a reconnect retries).
    reason = "VPN service unavailable; reason: gateway gw-a is draining"
    assert reason in late.output(), late.describe()
    server.wait_log(r"event=connect-refused .*reason='node draining'", since=offset)

    # The established tunnel serves through the grace.
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received == 3
    assert client.proc.poll() is None

    # At the deadline the tunnel closes without a DISCONNECT and the gateway exits 0.
    assert server.proc.wait(timeout=GRACE + 30) == 0, server.describe()
    assert time.monotonic() - drained_at >= GRACE - 0.5
    log = server.log_since(offset)
    assert re.search(r"event=tunnel-down user='alice' .*reason='server shutting down'", log), log
    assert "event=drained node=gw-a" in log
    assert "event=child-exited" not in log  # Children stopped, none died and none restarted.
    assert server.tun_links() == []
    time.sleep(1.5)
    assert client.proc.poll() is None, client.describe()  # openconnect did not give up ...
    output = client.output()
    assert "Received server disconnect" not in output, client.describe()
    assert re.search(r"sleep \d+s, remaining timeout", output), client.describe()  # ... it retries

    # The other node, sharing the session store, takes the client back with its cookie.
    second, sock2 = _start(start_gateway, tmp_path, "gw-b")
    assert _get(netns_pair, HEALTH, "/health") == (200, "ready\n")

    def back() -> bool:
        users = json.loads(ctl(sock2, "show", "users", json_output=True))
        return any(u["Username"] == "alice" for u in users)

    wait_for(back, timeout=60, what="alice's reconnect to the other node")
    [again] = json.loads(ctl(sock2, "show", "users", json_output=True))
    assert again["Node"] == "gw-b"
    assert again["IPv4"] == env["INTERNAL_IP4_ADDRESS"]
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received >= 2
    assert "event=login " not in second.log_text()  # a cookie reconnect, no login
    assert client.proc.poll() is None


def test_a_reload_does_not_end_a_drain(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    server, sock = _start(start_gateway, tmp_path, "gw-a")
    ctl(sock, "stop", "drain", "60")
    ctl(sock, "reload")
    offset = server.log_size()
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log(r"event=reloaded", since=offset, timeout=20)
    assert _get(netns_pair, HEALTH, "/health") == (503, "draining\n")
    assert "\tState: draining\n" in ctl(sock, "show", "status")
    refused = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    assert refused.returncode != 0, refused.describe()  # The reloaded workers still refuse.
    server.wait_log(r"event=login-refused .*reason='node draining'", since=offset)
    # Workers restarted during the drain drain too.
    workers = re.findall(r"event=child-started role=worker .* pid=(\d+)", server.log_text())
    assert len(workers) == 2, workers
    for pid in workers:
        os.kill(int(pid), signal.SIGKILL)
    started = "event=child-started role=worker"
    wait_for(lambda: server.log_text().count(started) == 4, 20, "two restarted workers")
    offset = server.log_size()
    again = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    assert again.returncode != 0, again.describe()
    server.wait_log(r"event=login-refused .*reason='node draining'", since=offset)
    ctl(sock, "drain", "1")  # A new deadline replaces the old one.
    assert server.proc.wait(timeout=30) == 0, server.describe()


HAPROXY = shutil.which("haproxy")


def _haproxy_status(stats: Path, server: str) -> str:
    """The ``status`` column of ``server`` in HAProxy's ``show stat`` (``UP``, ``DOWN`` …)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(stats))
        conn.sendall(b"show stat\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    header, *rows = data.decode().splitlines()
    names = header.lstrip("# ").split(",")
    for row in csv.reader(rows):
        record = dict(zip(names, row, strict=False))
        if record.get("svname") == server:
            return record["status"]
    raise AssertionError(f"{server} not in HAProxy's stats:\n{data.decode()}")


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (Debian package haproxy)")
def test_haproxy_health_check_takes_a_draining_node_out(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    assert HAPROXY is not None
    server, sock = _start(start_gateway, tmp_path, "gw-a")
    stats = tmp_path / "haproxy.sock"
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        f"""\
global
    stats socket {stats} mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend vpn
    bind {netns_pair.server_addr}:8443
    default_backend gateways
backend gateways
    option httpchk GET /health
    http-check expect status 200
    default-server check port {HEALTH.rpartition(":")[2]} inter 300ms fall 1 rise 1
    server gw-a 127.0.0.1:{server.port}
"""
    )
    balancer = subprocess.Popen(
        netns_pair.exec_argv(netns_pair.server, [HAPROXY, "-db", "-f", str(config)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(stats.exists, 10, "HAProxy's stats socket")
        wait_for(lambda: _haproxy_status(stats, "gw-a") == "UP", 10, "gw-a UP in HAProxy")
        through = StaticEndpoint(url=f"https://{netns_pair.server_addr}:8443/", pin=server.pin)
        client = openconnect.connect(through, user="alice", password="alicepass")
        client.wait_env()
        assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received == 3

        ctl(sock, "stop", "drain", "60")
        wait_for(lambda: "DOWN" in _haproxy_status(stats, "gw-a"), 5, "gw-a DOWN in HAProxy")
        # Out of rotation: a new login through the balancer finds no node; the tunnel runs on.
        refused = openconnect.authenticate(through, user="bob", stdin="bobpass\n")
        assert refused.returncode != 0, refused.describe()
        assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received == 3
    finally:
        balancer.terminate()
        balancer.wait(10)
