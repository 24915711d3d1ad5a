"""Acceptance of the process-architecture issue: roles, confinement, spreading, crashes, restarts.

The gateway under test is the real ``ocgate serve``: a root supervisor with a sec-mod, workers and
(optionally) a collector as child processes. Everything is observed from outside, as an
administrator would: ``/proc/PID/status``, ``ps``, ``ocgate ctl``, and real openconnect clients.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ._netns import NetnsPair, run
from ._openconnect import OpenConnect, OpenConnectRunner
from ._server import SERVER_TUN4, Server, ServerKind, StartServer
from ._traffic import parse_ping
from .test_ops import ctl, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

NOBODY = 65534
TUNNEL_IDS_PER_WORKER = 1_000_000


@pytest.fixture(autouse=True)
def _ocgate_only(kind: ServerKind) -> None:
    if kind is not ServerKind.OCGATE:
        pytest.skip("observes ocgate's own process roles")


def _children(server: Server) -> dict[int, dict[str, str]]:
    """Every child of the supervisor: pid → /proc/PID/status fields (plus its ps title)."""
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(server.pid)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    result: dict[int, dict[str, str]] = {}
    for line in out.splitlines():
        pid_text, _, title = line.strip().partition(" ")
        status = Path(f"/proc/{pid_text}/status").read_text()
        fields = dict(re.findall(r"^(\w+):\s*(.*)$", status, re.M))
        fields["title"] = title
        result[int(pid_text)] = fields
    return result


def _start(start_gateway: StartServer, tmp_path: Path, **extra: str) -> tuple[Server, Path]:
    sock = tmp_path / "occtl.sock"
    overrides = {"use-occtl": "true", "occtl-socket-file": str(sock), "workers": "2", **extra}
    return start_gateway(overrides), sock


def _ping_via(pair: NetnsPair, ifname: str, count: int = 3) -> int:
    argv = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", "-I", ifname, SERVER_TUN4]
    proc = run(pair.exec_argv(pair.client, argv), check=False, timeout=30)
    return parse_ping(proc.stdout + proc.stderr).received


def _ifname(client: OpenConnect) -> str:
    return client.argv[client.argv.index("--interface") + 1]


def _users(sock: Path) -> list[dict[str, object]]:
    users = json.loads(ctl(sock, "show", "users", json_output=True))
    assert isinstance(users, list)
    return users


def test_roles_run_confined(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server, _sock = _start(
        start_gateway,
        tmp_path,
        **{"run-as-user": "nobody", "isolate-workers": "true", "udp-port": "443"},
    )
    passwd = server.workdir / "ocpasswd"
    passwd.chmod(0o600)
    want = ["ocgate: sec-mod", "ocgate: worker 0", "ocgate: worker 1"]
    server.wait_log("event=started")
    wait_for(lambda: sorted(f["title"] for f in _children(server).values()) == want,
             what=f"children titled {want}")  # fmt: skip
    children = _children(server)
    supervisor = Path(f"/proc/{server.pid}/status").read_text()
    assert re.search(r"^Uid:\s+0\s", supervisor, re.M), "the supervisor stays root"
    for pid, fields in children.items():
        assert fields["Uid"].split() == [str(NOBODY)] * 4, (pid, fields["title"])
        assert fields["Gid"].split()[0] != "0", (pid, fields["title"])
        assert fields["NoNewPrivs"] == "1", (pid, fields["title"])
        if fields["title"].startswith("ocgate: worker"):
            assert fields["Seccomp"] == "2", fields["title"]
            # No capability at all: neither the root-owned 0600 password file nor TUNSETIFF.
            assert int(fields["CapEff"], 16) == 0
            assert int(fields["CapPrm"], 16) == 0
            assert int(fields["CapBnd"], 16) == 0
    mode = passwd.stat()
    assert mode.st_uid == 0
    assert stat.S_IMODE(mode.st_mode) == 0o600
    # And the confined gateway serves: a login and a tunnel, its DTLS data moved by the worker's
    # data-path thread (started after the seccomp filter, so it runs under it too).
    client = openconnect.connect(server, user="alice", password="alicepass", dtls=True)
    client.wait_env()
    wait_for(lambda: "event=dtls-up" in server.log_text(), timeout=20)
    if "fastpath=c" in server.log_text():
        assert "datapath=thread" in server.log_text(), server.log_tail()
    assert _ping_via(server.pair, _ifname(client)) >= 2
    for pid, fields in _children(server).items():  # Every thread of a worker is confined.
        if fields["title"].startswith("ocgate: worker"):
            for task in Path(f"/proc/{pid}/task").iterdir():
                status = (task / "status").read_text()
                assert re.search(r"^Seccomp:\s+2$", status, re.M), (pid, task.name)
                assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), (pid, task.name)
                assert re.search(rf"^Uid:\s+{NOBODY}\s", status, re.M), (pid, task.name)


def test_four_clients_spread_over_the_workers(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server, sock = _start(start_gateway, tmp_path)
    clients = [
        openconnect.connect(server, user=user, password=f"{user}pass", dtls=True)
        for user in ("alice", "bob", "alice", "bob")
    ]
    addresses = [c.wait_env()["INTERNAL_IP4_ADDRESS"] for c in clients]
    for client in clients:
        assert _ping_via(server.pair, _ifname(client)) >= 2, client.describe()
    users = _users(sock)
    assert len(users) == 4
    assert sorted(str(u["IPv4"]) for u in users) == sorted(addresses)
    generations = {int(str(u["ID"])) // TUNNEL_IDS_PER_WORKER for u in users}
    assert len(generations) >= 2, f"all tunnels on one worker: {users}"


def _worker_pids(server: Server) -> dict[int, int]:
    """generation → pid, from the supervisor's log."""
    found = re.findall(
        r"event=child-started role=worker index=\d+ generation=(\d+) pid=(\d+)", server.log_text()
    )
    return {int(g): int(p) for g, p in found}


def test_a_killed_worker_costs_only_its_clients_a_reconnect(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server, sock = _start(start_gateway, tmp_path)
    alice = openconnect.connect(server, user="alice", password="alicepass", dtls=True)
    bob = openconnect.connect(server, user="bob", password="bobpass", dtls=True)
    env_a, env_b = alice.wait_env(), bob.wait_env()
    users = {str(u["Username"]): u for u in _users(sock)}
    gen_a = int(str(users["alice"]["ID"])) // TUNNEL_IDS_PER_WORKER
    gen_b = int(str(users["bob"]["ID"])) // TUNNEL_IDS_PER_WORKER
    assert gen_a != gen_b, users
    links_before = len(server.tun_links())
    # iperf3 through Bob's tunnel while Alice's worker is killed: Bob's transfer does not notice.
    # Both clients share one namespace and the test vpnc-script gives the pool's route to whichever
    # configured last, so the transfer is bound to Bob's device, not only to his address (bound by
    # address alone it left through Alice's tunnel half the time, and her filter dropped it).
    pair = server.pair
    iperf_server = subprocess.Popen(
        pair.exec_argv(pair.server, ["iperf3", "-s", "-1", "-B", SERVER_TUN4, "-p", "5301"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    iperf_client = subprocess.Popen(
        pair.exec_argv(pair.client, ["iperf3", "-c", SERVER_TUN4, "-p", "5301", "-t", "4",
                                     "-B", env_b["INTERNAL_IP4_ADDRESS"],
                                     "--bind-dev", _ifname(bob), "-J"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1)
        os.kill(_worker_pids(server)[gen_a], signal.SIGKILL)
        out, _ = iperf_client.communicate(timeout=60)
        iperf_server.wait(10)
    finally:
        for proc in (iperf_client, iperf_server):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    report = json.loads(out)
    assert "error" not in report, report.get("error")
    assert report["end"]["sum_received"]["bytes"] > 0
    assert _ping_via(server.pair, _ifname(bob), count=5) == 5

    # Alice's client comes back by itself with its cookie: same addresses, no password.
    def alice_back() -> bool:
        now = {str(u["Username"]): u for u in _users(sock)}
        return "alice" in now and int(str(now["alice"]["ID"])) // TUNNEL_IDS_PER_WORKER != gen_a

    wait_for(alice_back, timeout=60, what="alice's reconnect")
    now = {str(u["Username"]): u for u in _users(sock)}
    assert now["alice"]["IPv4"] == env_a["INTERNAL_IP4_ADDRESS"]
    assert str(now["alice"]["IPv6"]).split("/")[0] == env_a["INTERNAL_IP6_ADDRESS"].split("/")[0]
    assert now["bob"]["IPv4"] == env_b["INTERNAL_IP4_ADDRESS"]
    assert alice.proc.poll() is None
    assert bob.proc.poll() is None
    assert _ping_via(server.pair, _ifname(alice)) >= 2
    # No TUN device leaked: the dead worker's went with its descriptors.
    wait_for(lambda: len(server.tun_links()) == links_before, what="tun devices back to 2")
    stats = server.stats()
    assert stats["leases4"] == 2, stats
    assert stats["tunnels"] == 2, stats


def test_a_restart_keeps_sessions(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    store = tmp_path / "state" / "sessions.sqlite"
    extra = {"session-store": f"sqlite://{store}", "cookie-timeout": "30"}
    server, _sock = _start(start_gateway, tmp_path, **extra)
    auth = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    first = openconnect.connect(server, cookie=auth.cookie)
    env = first.wait_env()
    first.kill()  # No BYE: a client that loses the gateway, not one that logs out.
    server.stop()
    second, _ = _start(start_gateway, tmp_path, **extra)
    again = openconnect.connect(second, cookie=auth.cookie)
    env2 = again.wait_env()
    assert env2["INTERNAL_IP4_ADDRESS"] == env["INTERNAL_IP4_ADDRESS"]
    assert env2["INTERNAL_IP6_ADDRESS"] == env["INTERNAL_IP6_ADDRESS"]
    again.stop()
    # A cookie that expired while the gateway was down is refused.
    second.stop()
    time.sleep(0.5)
    third, _ = _start(start_gateway, tmp_path, **{**extra, "cookie-timeout": "1"})
    stale = openconnect.authenticate(third, user="bob", stdin="bobpass\n")
    third.stop()
    time.sleep(3)  # Past its cookie-timeout: it never had a tunnel.
    fourth, _ = _start(start_gateway, tmp_path, **{**extra, "cookie-timeout": "1"})
    refused = openconnect.connect(fourth, cookie=stale.cookie)
    assert refused.wait(timeout=30) != 0, refused.describe()


def test_a_slow_password_check_does_not_delay_tunnels(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    from passlib.hash import sha512_crypt

    from ._rawclient import LoginFailed, aggauth_login, open_conn
    from ._traffic import BackgroundPing

    server, _sock = _start(start_gateway, tmp_path)
    # A well-formed SHA-512-crypt entry whose 20,000,000 rounds take seconds of CPU to check
    # (the digest is simply wrong, so the check runs to the end and fails).
    slow = sha512_crypt.using(rounds=1000, salt="slowslow").hash("x")
    slow = slow.replace("rounds=1000$", "rounds=20000000$")
    with (server.workdir / "ocpasswd").open("a") as f:
        f.write(f"slow:*:{slow}\n")
    client = openconnect.connect(server, user="alice", password="alicepass")
    client.wait_env()
    pinger = BackgroundPing(
        server.pair, server.pair.client, SERVER_TUN4, tmp_path / "ping.log", interval=0.05
    )
    took: list[float] = []

    def slow_login() -> None:
        started = time.monotonic()
        conn = open_conn(server.pair.client, server.host, server.port, timeout=60)
        with contextlib.suppress(LoginFailed):
            aggauth_login(conn, server.url, "slow", ["wrong"])
        took.append(time.monotonic() - started)
        conn.close()

    threads = [threading.Thread(target=slow_login) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    result = pinger.stop()
    assert min(took) >= 2.0, f"the slow hash was not slow: {took}"
    assert result.transmitted >= 40, result.output
    assert result.lost == 0, result.output
    summary = re.search(r"= [\d.]+/[\d.]+/([\d.]+)/", result.output)
    assert summary is not None, result.output
    rtt_max = float(summary.group(1))
    assert rtt_max < 100, f"CSTP traffic waited on the hash: max RTT {rtt_max} ms"


def test_a_reload_reaches_the_workers(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    from ._certs import make_server_cert
    from ._netns import SERVER_ADDR
    from ._openconnect import StaticEndpoint

    first = make_server_cert(tmp_path / "first", SERVER_ADDR)
    second = make_server_cert(tmp_path / "second", SERVER_ADDR)
    server, sock = _start(
        start_gateway,
        tmp_path,
        **{"server-cert": str(first.cert_path), "server-key": str(first.key_path)},
    )
    old = openconnect.connect(StaticEndpoint(server.url, first.pin), user="alice",
                              password="alicepass")  # fmt: skip
    old.wait_env()
    # The same files get a new certificate; the workers (no longer root) must pick it up.
    first.cert_path.write_bytes(second.cert_path.read_bytes())
    first.key_path.write_bytes(second.key_path.read_bytes())
    ctl(sock, "reload")
    new = openconnect.connect(StaticEndpoint(server.url, second.pin), user="bob",
                              password="bobpass")  # fmt: skip
    new.wait_env()
    assert old.proc.poll() is None, "a reload must keep running tunnels"
    assert _ping_via(server.pair, _ifname(old)) >= 2


def test_two_connects_racing_with_one_cookie_yield_one_tunnel(
    start_gateway: StartServer, tmp_path: Path
) -> None:
    from ._rawclient import aggauth_login, connect_tunnel, open_conn

    server, sock = _start(start_gateway, tmp_path)
    pair = server.pair
    login = open_conn(pair.client, server.host, server.port)
    cookie = aggauth_login(login, server.url, "alice", ["alicepass"])
    login.close()
    for _round in range(5):
        conns = [open_conn(pair.client, server.host, server.port) for _ in range(2)]
        answers: list[int] = []

        def connect(conn: object, out: list[int]) -> None:
            response = connect_tunnel(conn, cookie)  # type: ignore[arg-type]
            out.append(response.status if response is not None else 0)

        threads = [threading.Thread(target=connect, args=(c, answers)) for c in conns]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert 200 in answers, answers
        time.sleep(0.5)
        users = [u for u in _users(sock) if u["Username"] == "alice"]
        assert len(users) == 1, f"round {_round}: {len(users)} tunnels for one cookie: {users}"
        for conn in conns:
            conn.close()
        wait_for(lambda: not _users(sock), what="the tunnel to end")
