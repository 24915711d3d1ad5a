"""Acceptance of the operations issue: occtl-compatible control, scripts, reload and metrics.

The control client is ``ocgate ctl`` talking to the gateway's ``occtl-socket-file`` (a filesystem
socket, reachable from the test's own namespace); clients are real openconnect processes.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._metrics import sample, scrape
from ._netns import NetnsPair
from ._openconnect import OpenConnectRunner
from ._rawclient import aggauth_login, connect_tunnel, open_conn
from ._server import SERVER_TUN4, Server, ServerKind, StartServer, recording_script
from ._traffic import iperf3_report, ping

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

OCGATE = str(Path(sys.executable).parent / "ocgate")
COOKIE_REJECTED = 2


@pytest.fixture(autouse=True)
def _ocgate_only(kind: ServerKind) -> None:
    if kind is not ServerKind.OCGATE:
        pytest.skip("drives ocgate's own control socket and metrics")


def _ops_server(start_gateway: StartServer, tmp_path: Path, **extra: str) -> tuple[Server, Path]:
    sock = tmp_path / "occtl.sock"
    overrides = {"use-occtl": "true", "occtl-socket-file": str(sock), **extra}
    return start_gateway(overrides), sock


def ctl(sock: Path, *words: str, json_output: bool = False, check: bool = True) -> str:
    argv = [OCGATE, "ctl", "-s", str(sock), *(["--json"] if json_output else []), *words]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    if check:
        assert proc.returncode == 0, f"{argv}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def wait_for(predicate: object, timeout: float = 20.0, what: str = "condition") -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_show_users_user_and_status(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server, sock = _ops_server(start_gateway, tmp_path)
    alice = openconnect.connect(server, user="alice", password="alicepass")
    bob = openconnect.connect(server, user="bob", password="bobpass")
    env_a, env_b = alice.wait_env(), bob.wait_env()
    ip_a, ip_b = env_a["INTERNAL_IP4_ADDRESS"], env_b["INTERNAL_IP4_ADDRESS"]

    table = ctl(sock, "show", "users")
    assert table.splitlines()[0].split()[:4] == ["id", "user", "vhost", "ip"]
    rows = {line.split()[1]: line for line in table.splitlines()[1:] if line.strip()}
    assert set(rows) == {"alice", "bob"}, table
    assert ip_a in rows["alice"], table
    assert ip_b in rows["bob"], table
    assert "(no-dtls)" in rows["alice"], table  # transport: CSTP only (--no-dtls)

    users = json.loads(ctl(sock, "show", "users", json_output=True))
    by_name = {u["Username"]: u for u in users}
    assert set(by_name) == {"alice", "bob"}
    assert by_name["alice"]["IPv4"] == ip_a
    assert by_name["bob"]["IPv4"] == ip_b
    assert by_name["alice"]["P-t-P IPv4"] == SERVER_TUN4

    detail = ctl(sock, "show", "user", "alice")
    for label in (
        "Username:", "Groupname:", "State:", "vhost:", "Device:", "MTU:", "Remote IP:",
        "Local Device IP:", "IPv4:", "P-t-P IPv4:", "IPv6:", "User-Agent:", "RX:", "TX:",
        "Connected at:", "DPD:", "KeepAlive:", "Hostname:", "TLS ciphersuite:", "Session:",
        "DNS:", "Routes:", "No-routes:", "Split-DNS-Domains:",
    ):  # fmt: skip
        assert label in detail, f"{label!r} missing\n{detail}"
    assert re.search(r"\tUsername: alice\s", detail), detail
    assert re.search(r"Groupname: eng\b", detail), detail
    assert re.search(rf"\tIPv4: {re.escape(ip_a)}\s", detail), detail
    assert re.search(r"Remote IP: 198\.18\.0\.2\b", detail), detail
    assert re.search(r"Device: vpns\d+", detail), detail
    assert re.search(r"State: connected", detail), detail
    assert "10.20.0.0/255.255.0.0" in detail, detail
    assert "10.77.0.53" in detail, detail

    status = ctl(sock, "show", "status")
    assert re.search(r"Active sessions: 2\b", status), status
    assert "Status: online" in status
    server.assert_alive()


def test_disconnect_then_terminate(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server, sock = _ops_server(start_gateway, tmp_path)
    auth = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    assert auth.returncode == 0, auth.describe()
    client = openconnect.connect(server, cookie=auth.cookie)
    client.wait_env()

    # disconnect (ocserv's code, whatever its man page says): the client is told and exits, and
    # the session's cookie is dead.
    assert "alice" in ctl(sock, "show", "users")
    ctl(sock, "disconnect", "user", "alice")
    client.wait(timeout=20)
    again = openconnect.connect(server, cookie=auth.cookie)
    assert again.wait(timeout=20) == COOKIE_REJECTED, again.describe()
    assert "alice" not in ctl(sock, "show", "users")

    # terminate: the same for a connected session.
    auth = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    client = openconnect.connect(server, cookie=auth.cookie)
    client.wait_env()
    ctl(sock, "terminate", "user", "alice")
    client.wait(timeout=20)
    again = openconnect.connect(server, cookie=auth.cookie)
    assert again.wait(timeout=20) == COOKIE_REJECTED, again.describe()
    assert "alice" not in ctl(sock, "show", "users")


def test_connect_and_disconnect_scripts(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    script, out = recording_script(tmp_path)
    server, _sock = _ops_server(
        start_gateway, tmp_path, **{"connect-script": str(script), "disconnect-script": str(script)}
    )
    client = openconnect.connect(server, user="alice", password="alicepass")
    env = client.wait_env()
    report = iperf3_report(netns_pair, server_addr=SERVER_TUN4, seconds=3)
    sent = int(report["end"]["sum_sent"]["bytes"])
    client.stop(signal.SIGINT)
    wait_for(lambda: any(out.glob("disconnect-*")), 20, "the disconnect script")
    time.sleep(0.5)

    connect_env = _read_env(next(out.glob("connect-*")))
    assert connect_env["REASON"] == "connect"
    assert connect_env["USERNAME"] == "alice"
    assert connect_env["GROUPNAME"] == "eng"
    assert re.fullmatch(r"vpns\d+", connect_env["DEVICE"])
    assert connect_env["IP_REAL"] == "198.18.0.2"
    assert connect_env["IP_REAL_LOCAL"] == "198.18.0.1"
    assert connect_env["IP_REMOTE"] == env["INTERNAL_IP4_ADDRESS"]
    assert connect_env["IP_LOCAL"] == SERVER_TUN4
    assert connect_env["IPV6_REMOTE"] == env["INTERNAL_IP6_ADDRESS"]
    assert connect_env["IPV6_PREFIX"] == "128"
    assert connect_env["OCSERV_ROUTES4"].split() == [
        "10.20.0.0/255.255.0.0",
        "10.30.0.0/255.255.0.0",
    ]
    assert connect_env["OCSERV_DNS"].split() == ["10.77.0.53", "fd77::53"]
    assert connect_env["USER_AGENT"].startswith("Open AnyConnect")
    assert connect_env["VHOST"] == "default"
    assert connect_env["ID"].isdigit()

    disconnect_env = _read_env(next(out.glob("disconnect-*")))
    bytes_in = int(disconnect_env["STATS_BYTES_IN"])
    # STATS_BYTES_IN counts IP packets from the client: iperf3's payload plus TCP/IP headers.
    assert sent <= bytes_in <= sent * 1.05, (sent, bytes_in)
    assert int(disconnect_env["STATS_BYTES_OUT"]) > 0
    assert int(disconnect_env["STATS_DURATION"]) >= 3
    server.assert_alive()


def _read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key] = value
    return env


def test_a_client_gone_after_its_connect_script_gets_the_disconnect_script(
    netns_pair: NetnsPair, start_gateway: StartServer, tmp_path: Path
) -> None:
    # The client leaves while its connect-script runs: the tunnel never starts, but what the
    # script set up for it is undone, as ocserv runs the disconnect-script for every session its
    # connect-script accepted.
    out = tmp_path / "script-env"
    out.mkdir()
    script = tmp_path / "slow-record.sh"
    script.write_text(
        f'#!/bin/sh\nenv > "{out}/$REASON-$$"\n[ "$REASON" = connect ] && sleep 1\nexit 0\n'
    )
    script.chmod(0o755)
    server, _sock = _ops_server(
        start_gateway, tmp_path, **{"connect-script": str(script), "disconnect-script": str(script)}
    )
    conn = open_conn(netns_pair.client, server.host, server.port, pin=server.pin)
    cookie = aggauth_login(conn, server.url, "alice", ["alicepass"])
    conn.close()
    conn = open_conn(netns_pair.client, server.host, server.port, pin=server.pin)
    conn.timeout = 0.001  # Send the CONNECT, do not wait for its answer.
    with contextlib.suppress(TimeoutError):
        connect_tunnel(conn, cookie)
    wait_for(lambda: any(out.glob("connect-*")), 20, "the connect script")
    conn.close()  # While the script still runs.
    wait_for(lambda: any(out.glob("disconnect-*")), 20, "the disconnect script")
    time.sleep(0.2)
    connect_env = _read_env(next(out.glob("connect-*")))
    disconnect_env = _read_env(next(out.glob("disconnect-*")))
    assert disconnect_env["DEVICE"] == connect_env["DEVICE"]
    assert disconnect_env["ID"] == connect_env["ID"]
    assert disconnect_env["USERNAME"] == "alice"
    assert disconnect_env["STATS_BYTES_IN"] == disconnect_env["STATS_BYTES_OUT"] == "0"
    wait_for(lambda: server.tun_links() == [], what="the device gone")
    server.assert_alive()


def test_failing_connect_script_refuses_the_login(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    script = tmp_path / "refuse.sh"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o755)
    server, sock = _ops_server(start_gateway, tmp_path, **{"connect-script": str(script)})
    client = openconnect.connect(server, user="alice", password="alicepass")
    assert client.wait(timeout=30) != 0, client.describe()
    assert "connect-script" in server.log_text()
    assert "alice" not in ctl(sock, "show", "users")
    assert server.tun_links() == []


def test_reload_pushes_new_routes_and_survives_a_broken_config(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    server, sock = _ops_server(start_gateway, tmp_path)
    first = openconnect.connect(server, user="alice", password="alicepass")
    assert first.wait_env()["CISCO_SPLIT_INC"] == "2"

    config = server.config_path.read_text()
    server.config_path.write_text(config + "route = 10.40.0.0/255.255.0.0\n")
    ctl(sock, "reload")
    second = openconnect.connect(server, user="bob", password="bobpass")
    env = second.wait_env()
    includes = {env[f"CISCO_SPLIT_INC_{i}_ADDR"] for i in range(int(env["CISCO_SPLIT_INC"]))}
    assert "10.40.0.0" in includes, env
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received == 3

    server.config_path.write_text(config + "tcp-port = not-a-port\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("event=reload-failed", timeout=10)
    assert first.proc.poll() is None
    assert second.proc.poll() is None
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3).received == 3
    assert {"alice", "bob"} <= {
        u["Username"] for u in json.loads(ctl(sock, "show", "users", json_output=True))
    }
    server.assert_alive()


def test_metrics_match_the_traffic(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    server, sock = _ops_server(start_gateway, tmp_path, **{"metrics-listen": "127.0.0.1:9099"})
    client = openconnect.connect(server, user="alice", password="alicepass")
    client.wait_env()
    result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=20, size=1000)
    assert result.received == 20

    text = scrape(netns_pair, 9099)
    user = json.loads(ctl(sock, "show", "user", "alice", json_output=True))[0]
    rx = sample(text, 'ocgate_tunnel_bytes_total{direction="rx"}')
    assert sample(text, 'ocgate_sessions{state="connected",transport="cstp"}') == 1
    # 20 echo requests of 1028 IP bytes came from the client; the tunnel counted them all.
    assert rx >= 20 * 1028
    assert abs(rx - int(user["RX"])) <= 2048, (rx, user["RX"])  # same counters, moments apart
    assert sample(text, 'ocgate_logins_total{reason="password",result="success"}') == 1
    assert "process_resident_memory_bytes" in text


def test_unban_ip_lifts_a_ban(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server, sock = _ops_server(
        start_gateway,
        tmp_path,
        **{"max-ban-score": "50", "ban-points-wrong-password": "10", "ban-time": "600"},
    )
    for _ in range(5):
        bad = openconnect.authenticate(server, user="alice", stdin="nope\n", mode="--cookieonly")
        assert bad.returncode != 0, bad.describe()
    server.wait_log(r"event=address-banned remote=198\.18\.0\.2", timeout=5)
    bans = ctl(sock, "show", "ip", "bans")
    assert "198.18.0.2" in bans, bans
    assert re.search(r"IPs in ban list: 1\b", ctl(sock, "show", "status"))
    refused = openconnect.authenticate(
        server, user="alice", stdin="alicepass\n", mode="--cookieonly"
    )
    assert refused.returncode != 0, refused.describe()

    ctl(sock, "unban", "ip", "198.18.0.2")
    assert "198.18.0.2" not in ctl(sock, "show", "ip", "bans")
    ok = openconnect.authenticate(server, user="alice", stdin="alicepass\n", mode="--cookieonly")
    assert ok.returncode == 0, f"{ok.describe()}\n{server.describe()}"


def test_stop_now_tells_clients_and_cleans_up(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    server, sock = _ops_server(start_gateway, tmp_path)
    client = openconnect.connect(server, user="alice", password="alicepass")
    client.wait_env()
    pid_file = server.workdir / "server.pid"
    assert pid_file.exists()
    assert server.tun_links()
    ctl(sock, "stop", "now")
    assert server.proc.wait(timeout=20) == 0, server.describe()
    client.wait(timeout=20)  # The client was told (DISCONNECT) and exits.
    assert "Received server disconnect" in client.output(), client.describe()
    assert not pid_file.exists()
    assert not sock.exists()
    assert server.tun_links() == []
