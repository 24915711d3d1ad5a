"""Gateway benchmark, side by side with Debian's ocserv, in network namespaces (needs root).

    .venv/bin/python bench/bench_gateway.py                      # every server, every scenario
    .venv/bin/python bench/bench_gateway.py --servers ocgate-1,ocgate-auto --tunnels 300

Servers: ``ocgate-1`` (``workers = 1``), ``ocgate-auto`` (one worker per core) and ``ocserv``
(installed with apt when missing). Each one gets the same ocserv.conf (the interop tests'
defaults, a /16 pool and no client limits) and is measured in turn:

* ``throughput``: four openconnect 9.01 clients with DTLS, four iperf3 streams at once through
  their four tunnels (client → server, then server → client), summed;
* ``logins``: 16 threads doing full logins + CONNECT (AggAuth over TLS, ``200 CONNECTED``, close)
  for a fixed time: completed tunnels per second. Each thread is one client as openconnect is:
  one TLS context, and the CONNECT connection offers to resume the login's TLS session (ocserv
  1.1.6 declines under TLS 1.3, ocgate resumes when the CONNECT reaches the same worker);
* ``setup``: N tunnels (default 1,000) opened 50 at a time and kept open: median and p99 time from
  TCP connect to ``200 CONNECTED``; then the memory of the whole server (PSS summed over every
  process of its tree, from ``/proc/PID/smaps_rollup``) with all of them open;
* ``flood`` (ocgate only): iperf3 through one DTLS tunnel with and without a UDP flood (garbage and
  valid IPFIX) at the NVM collector port: the ratio shows whether the collector steals the tunnel's
  CPU.

Figures depend on the machine (2 cores here, client and server on the same cores): compare the
servers within one run, not across machines. Runs on a 2-core machine scatter by 10-15 %: use
``--rounds 3`` (the servers take turns in a rotating order, each round) and read the medians and
the ratios to ocserv printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.interop._certs import make_server_cert  # noqa: E402
from tests.interop._netns import SERVER_ADDR, NetnsPair, enter_netns, netns_socket  # noqa: E402
from tests.interop._openconnect import OpenConnectRunner  # noqa: E402
from tests.interop._rawclient import (  # noqa: E402
    aggauth_login,
    client_context,
    connect_tunnel,
    open_conn,
)
from tests.interop._server import (  # noqa: E402
    SERVER_TUN4,
    Server,
    ServerKind,
    User,
    start_server,
)

USERS = (User("alice", "alicepass"), User("bob", "bobpass"))
BASE = {
    "ipv4-network": "10.77.0.0/16",
    "max-clients": "0",
    "max-same-clients": "0",
    "udp-port": "443",
    "cookie-timeout": "30",
    "max-ban-score": "0",  # Thousands of connections from one client address are the point here.
    "route": None,
    "no-route": None,
    "dns": None,
    "split-dns": None,
}


def servers_wanted(spec: str) -> list[tuple[str, ServerKind, dict[str, str | None]]]:
    table: dict[str, tuple[ServerKind, dict[str, str | None]]] = {
        # Every benchmark client comes from one address: no per-source pre-authentication cap.
        "ocgate-1": (ServerKind.OCGATE, {"workers": "1", "max-pre-auth-per-source": "0"}),
        "ocgate-auto": (ServerKind.OCGATE, {"workers": "auto", "max-pre-auth-per-source": "0"}),
        "ocserv": (ServerKind.OCSERV, {}),
    }
    return [(name, *table[name]) for name in spec.split(",") if name]


def ensure_ocserv() -> None:
    if shutil.which("ocserv") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "ocserv"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))  # fmt: skip
        # The package starts a system-wide ocserv where systemd runs; the benchmark wants none.
        subprocess.run(["systemctl", "disable", "--now", "ocserv"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


# Throughput -------------------------------------------------------------------------------------


def throughput(pair: NetnsPair, server: Server, workdir: Path, seconds: int) -> dict[str, float]:
    runner = OpenConnectRunner(pair, workdir / "oc")
    try:
        clients = [
            runner.connect(server, user=u, password=p, dtls=True, routes=())
            for u, p in (("alice", "alicepass"), ("bob", "bobpass")) * 2
        ]
        # Each iperf3 binds to its tunnel's address *and* device: the four clients share one
        # namespace, where the route to the server goes through whichever tunnel came up last,
        # and the gateway drops a packet whose source is not its own tunnel's lease.
        addrs = [
            f"{c.wait_env()['INTERNAL_IP4_ADDRESS']}%{c.argv[c.argv.index('--interface') + 1]}"
            for c in clients
        ]
        time.sleep(2)  # DTLS up
        result = {}
        for label, reverse in (("up", False), ("down", True)):
            result[label] = _iperf_parallel(pair, addrs, seconds, reverse)
        return result
    finally:
        runner.close_all()
        pair.kill_in(pair.client)


def _iperf_parallel(pair: NetnsPair, addrs: list[str], seconds: int, reverse: bool) -> float:
    servers = [
        subprocess.Popen(pair.exec_argv(pair.server, ["iperf3", "-s", "-1", "-B", SERVER_TUN4,
                                                      "-p", str(5201 + i)]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(len(addrs))
    ]  # fmt: skip
    time.sleep(0.5)
    clients = []
    for i, addr in enumerate(addrs):
        argv = ["iperf3", "-c", SERVER_TUN4, "-B", addr, "-p", str(5201 + i), "-t", str(seconds),
                "-J", *(["-R"] if reverse else [])]  # fmt: skip
        proc = subprocess.Popen(
            pair.exec_argv(pair.client, argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        clients.append(proc)
    total = 0.0
    for proc in clients:
        out, _ = proc.communicate(timeout=seconds + 30)
        with contextlib.suppress(ValueError, KeyError):
            report = json.loads(out)
            total += report["end"]["sum_received"]["bits_per_second"]
    for proc in servers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        proc.kill()
    return total / 1e6


# Logins -----------------------------------------------------------------------------------------


_client_tls = threading.local()  # One TLS client context per load thread (one "client").


def _one_login(pair: NetnsPair, url: str, user: str, password: str, close: bool = True) -> object:
    """One client's login then CONNECT, as openconnect makes them: two TLS connections, the
    second resuming the first's TLS session (openconnect keeps it; both servers resume)."""
    ctx: ssl.SSLContext | None = getattr(_client_tls, "ctx", None)
    if ctx is None:
        ctx = _client_tls.ctx = client_context()
    conn = open_conn(pair.client, SERVER_ADDR, 443, timeout=30, context=ctx)
    cookie = aggauth_login(conn, url, user, [password])
    session = conn.sock.session if isinstance(conn.sock, ssl.SSLSocket) else None
    conn.close()
    conn = open_conn(pair.client, SERVER_ADDR, 443, timeout=30, context=ctx, session=session)
    response = connect_tunnel(conn, cookie)
    if response is None or response.status != 200:
        raise RuntimeError(f"CONNECT answered {response and response.status}")
    if close:
        conn.close()
        return None
    return conn


def logins(pair: NetnsPair, server: Server, seconds: float, threads: int = 16) -> float:
    done = [0]
    errors: list[str] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def loop(n: int) -> None:
        user, password = ("alice", "alicepass") if n % 2 else ("bob", "bobpass")
        enter_netns(pair.client)  # This thread's sockets are made in the client namespace.
        while time.monotonic() < stop:
            try:
                _one_login(pair, server.url, user, password)
            except Exception as exc:
                errors.append(str(exc))
                time.sleep(0.05)
                continue
            with lock:
                done[0] += 1

    before = _cpu_by_process(server.pid)
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - started
    after = _cpu_by_process(server.pid)
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    busy = {k: round(v - before.get(k, 0.0), 1) for k, v in after.items()}
    client = (client_after.ru_utime - client_before.ru_utime) + (
        client_after.ru_stime - client_before.ru_stime
    )
    print(f"    server CPU seconds by process: {busy}")
    per_login = 1000 * client / max(done[0], 1)
    print(f"    load generator: {client:.1f} CPU seconds, {per_login:.2f} ms per login")
    if errors:
        print(f"    ({len(errors)} failed logins, e.g. {errors[0][:100]})")
    return done[0] / elapsed


def _cpu_by_process(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each process of the server's tree, by its title."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            title = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].decode()[:40]
            key = title if title not in out else f"{title} ({p})"
            out[key] = (int(fields[11]) + int(fields[12])) / ticks
    return out


# Setup latency and memory -----------------------------------------------------------------------


def setup(pair: NetnsPair, server: Server, tunnels: int, parallel: int = 50) -> dict[str, float]:
    latencies: list[float] = []
    conns: list[object] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_thread = tunnels // parallel

    def loop(n: int) -> None:
        user, password = ("alice", "alicepass") if n % 2 else ("bob", "bobpass")
        for _ in range(per_thread):
            started = time.monotonic()
            try:
                conn = _one_login(pair, server.url, user, password, close=False)
            except Exception as exc:
                errors.append(str(exc))
                continue
            with lock:
                latencies.append(time.monotonic() - started)
                conns.append(conn)

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(parallel)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    time.sleep(2)
    pss = pss_tree(server.pid)
    procs = len(_tree(server.pid))
    if procs < 20:  # ocgate: which process holds what
        by = {_title(p): round(pss_tree_one(p) / 1024, 1) for p in _tree(server.pid)}
        print(f"    PSS MB by process: {by}")
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.close()  # type: ignore[attr-defined]
    if errors:
        print(f"    ({len(errors)} failed tunnels, e.g. {errors[0][:100]})")
    latencies.sort()
    return {
        "opened": len(latencies),
        "median_s": statistics.median(latencies) if latencies else 0.0,
        "p99_s": latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0,
        "pss_mb": pss / 1024,
        "processes": procs,
    }


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _title(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()[:40] + f" {pid}"
    return str(pid)


def pss_tree_one(pid: int) -> int:
    """PSS in KiB of one process."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def pss_tree(pid: int) -> int:
    """PSS in KiB summed over ``pid`` and all its descendants."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


# Flood ------------------------------------------------------------------------------------------


def flood(
    pair: NetnsPair,
    server: Server,
    workdir: Path,
    seconds: int,
    *,
    rate: int = 20_000,
    sink: bool = False,
) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_nvm_ingest import make_messages, template_message

    runner = OpenConnectRunner(pair, workdir / "oc-flood")
    try:
        client = runner.connect(server, user="alice", password="alicepass", dtls=True, routes=())
        addr = client.wait_env()["INTERNAL_IP4_ADDRESS"]
        time.sleep(2)
        stop = threading.Event()
        sent = [0]
        now = time.time()
        packets = [template_message(now), *make_messages(now)[:200]]

        def blast() -> None:
            # The flood comes from elsewhere on a real network; here it shares the two cores with
            # the client and iperf3, so the sender runs at the lowest priority and a fixed rate
            # (bursts every 10 ms), the same with and without a collector behind the port.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            sock = netns_socket(pair.client, socket.AF_INET, socket.SOCK_DGRAM)
            payloads = [*packets, os.urandom(1200)]
            burst = max(1, rate // 100)
            deadline = time.monotonic() + seconds + 10
            tick = time.monotonic()
            n = 0
            while not stop.is_set() and time.monotonic() < deadline:
                for _ in range(burst):
                    with contextlib.suppress(OSError):
                        sock.sendto(payloads[n % len(payloads)], (SERVER_ADDR, 2055))
                        sent[0] += 1
                    n += 1
                tick += 0.01
                time.sleep(max(0.0, tick - time.monotonic()))
            sock.close()

        unread = None
        if sink:  # A socket nobody reads: the kernel's cost of receiving and dropping the flood.
            unread = netns_socket(pair.server, socket.AF_INET, socket.SOCK_DGRAM)
            unread.bind(("0.0.0.0", 2055))
        # Alternating rounds, so that drift between runs does not pass for the flood's effect.
        quiet_runs: list[float] = []
        flooded_runs: list[float] = []
        for _ in range(3):
            quiet_runs.append(_iperf_parallel(pair, [addr], seconds, False))
            stop.clear()
            blaster = threading.Thread(target=blast)
            blaster.start()
            time.sleep(1)
            flooded_runs.append(_iperf_parallel(pair, [addr], seconds, False))
            stop.set()
            blaster.join()
        if unread is not None:
            unread.close()
        quiet = statistics.median(quiet_runs)
        flooded = statistics.median(flooded_runs)
        return {"quiet": quiet, "flooded": flooded, "ratio": flooded / quiet if quiet else 0.0,
                "datagrams": sent[0]}  # fmt: skip
    finally:
        runner.close_all()
        pair.kill_in(pair.client)


@dataclass(frozen=True)
class _Ctx:
    pair: NetnsPair
    tmp: Path
    cert: object
    name: str
    kind: ServerKind
    overrides: dict[str, str | None]
    row: dict[str, object]


def _run_one(ctx: _Ctx, label: str, fn: Callable[[Server, Path], object]) -> None:
    """Start a fresh server, run one scenario against it, stop it."""
    workdir = ctx.tmp / f"{ctx.name}-{label}"
    server = start_server(
        pair=ctx.pair,
        workdir=workdir,
        cert=ctx.cert,  # type: ignore[arg-type]
        overrides=ctx.overrides,
        users=USERS,
        kind=ctx.kind,
    )
    server.wait_ready()
    try:
        value = fn(server, workdir)
        runs = ctx.row.setdefault(label, [])
        assert isinstance(runs, list)
        runs.append(value)
        print(f"   {label}: {value}", flush=True)
    finally:
        server.stop()
        ctx.pair.kill_in(ctx.pair.server)


# Main -------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="ocgate-1,ocgate-auto,ocserv")
    parser.add_argument("--scenarios", default="throughput,logins,setup,flood")
    parser.add_argument("--tunnels", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1, help="rounds, servers in rotating order")
    parser.add_argument("--flood-rate", type=int, default=20_000, help="datagrams per second")
    parser.add_argument(
        "--flood-without-collector",
        action="store_true",
        help="flood a socket nobody reads instead: the cost of the flood itself on this machine",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 2
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    scenarios = set(args.scenarios.split(","))
    servers = servers_wanted(args.servers)
    if any(kind is ServerKind.OCSERV for _, kind, _ in servers):
        ensure_ocserv()
    results: dict[str, dict[str, object]] = {name: {} for name, _, _ in servers}
    pair = NetnsPair.create("bench")
    tmp = Path(tempfile.mkdtemp(prefix="ocgate-bench-"))
    try:
        cert = make_server_cert(tmp / "pki", SERVER_ADDR)
        turns = [
            (round_, servers[(round_ + i) % len(servers)])
            for round_ in range(args.rounds)
            for i in range(len(servers))
        ]
        for round_, (name, kind, extra) in turns:
            print(f"== {name} (round {round_})", flush=True)
            overrides: dict[str, str | None] = {**BASE, **extra}
            flood_overrides: dict[str, str | None] = dict(overrides)
            if not args.flood_without_collector:
                flood_overrides["nvm-listen"] = "udp://0.0.0.0:2055"
                flood_overrides["nvm-store"] = f"sqlite:///{tmp}/{name}-nvm.sqlite"
                # The flood comes from the client namespace's own address: let it be decoded
                # (exporters outside the VPN pools are refused by default, which costs less).
                flood_overrides["nvm-allow"] = f"{pair.client_addr}/32"
            row = results[name]

            def run(label: str, fn: Callable[[Server, Path], object], *, ctx: _Ctx) -> None:
                _run_one(ctx, label, fn)

            ctx = _Ctx(pair, tmp, cert, name, kind, overrides, row)
            flood_ctx = _Ctx(pair, tmp, cert, name, kind, flood_overrides, row)
            if "throughput" in scenarios:
                run("throughput", lambda s, w: throughput(pair, s, w, args.seconds), ctx=ctx)
            if "logins" in scenarios:
                run(
                    "logins_per_s",
                    lambda s, w: round(logins(pair, s, 2 * args.seconds), 1),
                    ctx=ctx,
                )
            if "setup" in scenarios:
                run("setup", lambda s, w: setup(pair, s, args.tunnels), ctx=ctx)
            if "flood" in scenarios and kind is ServerKind.OCGATE:
                run(
                    "flood",
                    lambda s, w: flood(
                        pair,
                        s,
                        w,
                        args.seconds,
                        rate=args.flood_rate,
                        sink=args.flood_without_collector,
                    ),
                    ctx=flood_ctx,
                )
    finally:
        pair.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {name: {label: _median(runs) for label, runs in row.items()}
               for name, row in results.items()}  # fmt: skip
    print("\n" + json.dumps({"rounds": results, "medians": medians}, indent=2))
    if "ocserv" in medians:
        print("\nmedians, and ratio to ocserv:")
        for name, row in medians.items():
            for label, value in row.items():
                base = medians["ocserv"].get(label)
                for key, figure, ref in _figures(label, value, base):
                    ratio = f"  ({figure / ref:.2f}x ocserv)" if ref else ""
                    print(f"  {name:12} {key:28} {figure:10.3f}{ratio}")
    return 0


def _median(runs: object) -> object:
    """The median of a scenario's rounds: of each number, key by key for dicts."""
    assert isinstance(runs, list)
    if all(isinstance(r, int | float) for r in runs):
        return statistics.median(runs)
    if all(isinstance(r, dict) for r in runs):
        keys = [k for k in runs[0] if all(k in r for r in runs)]
        return {k: _median([r[k] for r in runs]) for k in keys}
    return runs[-1]


def _figures(label: str, value: object, base: object) -> list[tuple[str, float, float | None]]:
    """(name, figure, ocserv's figure or None) of every number in a scenario's median."""
    if isinstance(value, int | float):
        return [(label, float(value), float(base) if isinstance(base, int | float) else None)]
    if isinstance(value, dict):
        rows = []
        for key, item in value.items():
            ref = base.get(key) if isinstance(base, dict) else None
            rows += _figures(f"{label}.{key}", item, ref)
        return rows
    return []


if __name__ == "__main__":
    sys.exit(main())
