"""Data-path benchmark: every tunnel mode, ocgate beside Debian's ocserv (needs root).

    .venv/bin/python bench/bench_datapath.py                     # 3 rounds, 5 s per iperf3 run
    .venv/bin/python bench/bench_datapath.py --seconds 3 --modes dtls-psk,tls

Each server (``ocserv`` 1.1.6 from Debian, installed when missing; ``ocgate-1`` with
``workers = 1``; ``ocgate-auto`` with one worker per core) runs in its own pair of network
namespaces with the same ocserv.conf, all started once and kept up. For every round and mode,
every server's openconnect 9.01 client connects in that mode, and then, the servers in an order
that rotates each round (so drift on a shared machine is spread over all of them):

* ping RTT through each idle tunnel: the median of 200 echo requests 20 ms apart, taken in ten
  turns of 20 that go round the servers (the RTT on a shared VM drifts with the host's load
  over seconds; in turns every server meets the same conditions);
* for each server in turn, iperf3 one TCP stream client → server ("up"), then server → client
  ("down"), ``--seconds`` each with the first second left out (the other clients stay idle);
* the CPU seconds the server's whole process tree used during each iperf3 run, per GB received.

Modes (openconnect options as in tests/interop/test_dtls.py; the negotiated cipher is checked
against openconnect's own "Established DTLS connection" line):

* ``tls``: ``--no-dtls``, data over CSTP/TLS;
* ``dtls-psk``: the default, PSK-NEGOTIATE, ``(DTLS1.2)-(PSK)-(AES-256-GCM)``;
* ``dtls12-gcm``: legacy resumption ``OC-DTLS1_2-AES256-GCM``;
* ``cisco-gcm``: legacy resumption of ``ECDHE-RSA-AES256-GCM-SHA384`` as AnyConnect asks for it
  (ocgate only: ocserv 1.1.6 has no ``ECDHE-RSA`` DTLS suites and offers such a client no DTLS;
  its ratio is taken against ocserv's ``dtls12-gcm``, the same AES-256-GCM DTLS 1.2 records);
* ``dtls09-sha``: legacy DTLS 0.9 ``AES256-SHA``.

More servers on request: ``ocgate-1-loop`` (``OCGATE_OFFLOAD=off``: established DTLS and TLS data
on the worker's event loop with the compiled per-packet functions, not on its data-path thread),
``ocgate-1-py`` (``OCGATE_FASTPATH=python``: the pure-Python data path) and ``ocgate-base``
(``--baseline-src DIR``: ocgate from another source tree, for a before / after comparison within
one run).

Prints the medians over the rounds, the ratio of each ocgate to ocserv, and the raw runs as JSON.
Client and servers share this machine's cores: compare within one run, not across machines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.interop._certs import make_server_cert  # noqa: E402
from tests.interop._netns import SERVER_ADDR, NetnsPair  # noqa: E402
from tests.interop._openconnect import OpenConnect, OpenConnectRunner  # noqa: E402
from tests.interop._server import (  # noqa: E402
    SERVER_TUN4,
    Server,
    ServerKind,
    User,
    start_server,
)
from tests.interop._traffic import iperf3_report  # noqa: E402

USERS = (User("alice", "alicepass"),)
CONFIG: dict[str, str | None] = {
    "udp-port": "443",
    "max-ban-score": "0",
    "route": None,
    "no-route": None,
    "dns": None,
    "split-dns": None,
}
CISCO_UA = "--useragent=AnyConnect Linux_64 4.10.07061"
MODES: dict[str, tuple[bool, tuple[str, ...], str]] = {
    # name: (DTLS, openconnect options, expected cipher substring)
    "tls": (False, (), ""),
    "dtls-psk": (True, (), "(DTLS1.2)-(PSK)-(AES-256-GCM)"),
    "dtls12-gcm": (
        True,
        ("--dtls-ciphers=OC-DTLS1_2-AES256-GCM",),
        "(DTLS1.2)-(RSA)-(AES-256-GCM)",
    ),
    "cisco-gcm": (
        True,
        ("--dtls12-ciphers=ECDHE-RSA-AES256-GCM-SHA384", "--dtls-ciphers=UNKNOWN", CISCO_UA),
        "AES-256-GCM",
    ),
    "dtls09-sha": (True, ("--dtls-ciphers=AES256-SHA",), "(DTLS0.9)-(RSA)-(AES-256-CBC)-(SHA1)"),
}
BASELINE = {"cisco-gcm": "dtls12-gcm"}
"""Modes ocserv 1.1.6 cannot serve: the ratio is taken against this mode of ocserv instead."""
SERVERS: dict[str, tuple[ServerKind, dict[str, str | None], dict[str, str]]] = {
    # name: (kind, ocserv.conf overrides, environment of the server)
    "ocserv": (ServerKind.OCSERV, {}, {}),
    "ocgate-1": (ServerKind.OCGATE, {"workers": "1"}, {}),
    "ocgate-auto": (ServerKind.OCGATE, {"workers": "auto"}, {}),
    # The event loop's data path (no data-path thread), the pure-Python data path (the compiled
    # one ignored), and (--baseline-src) another tree.
    "ocgate-1-loop": (ServerKind.OCGATE, {"workers": "1"}, {"OCGATE_OFFLOAD": "off"}),
    "ocgate-1-py": (ServerKind.OCGATE, {"workers": "1"}, {"OCGATE_FASTPATH": "python"}),
    "ocgate-base": (ServerKind.OCGATE, {"workers": "1"}, {}),
}
ESTABLISHED = re.compile(r"Established DTLS connection \(using GnuTLS\)\. Ciphersuite (\S+?)\.?$",
                         re.M)  # fmt: skip
RTT = re.compile(r"time=([\d.]+) ms")
RTT_TURNS, RTT_BATCH = 10, 20
"""Per round and mode, each server gets RTT_TURNS turns of RTT_BATCH pings (20 ms apart)."""


def ensure_ocserv() -> None:
    if shutil.which("ocserv") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "ocserv"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))  # fmt: skip
        # The package starts a system-wide ocserv where systemd runs; the benchmark wants none.
        subprocess.run(["systemctl", "disable", "--now", "ocserv"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``pid`` and each of its descendants, by pid."""
    ticks = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            parent[int(entry)] = int(fields[1])
            cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    members, todo = set(), [pid]
    children: dict[int, list[int]] = {}
    for child, ppid in parent.items():
        children.setdefault(ppid, []).append(child)
    while todo:
        p = todo.pop()
        members.add(p)
        todo.extend(children.get(p, []))
    return {p: cpu[p] for p in members if p in cpu}


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(v - before.get(p, 0.0) for p, v in after.items())


@dataclass
class Running:
    """One server, up for the whole benchmark in its own namespace pair."""

    name: str
    pair: NetnsPair
    server: Server
    runner: OpenConnectRunner
    runs: list[dict[str, Any]] = field(default_factory=list)


def wait_dtls(client: OpenConnect, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = client.output()
        match = ESTABLISHED.search(output)
        if match:
            return match.group(1)
        if "Set up UDP failed" in output:
            break
        time.sleep(0.1)
    raise RuntimeError(f"no DTLS connection\n{client.describe()}")


def ping_rtts(pair: NetnsPair, count: int) -> list[float]:
    argv = ["ping", "-n", "-c", str(count), "-i", "0.02", "-W", "2", SERVER_TUN4]
    proc = pair.run_in(pair.client, argv, check=False, timeout=30)
    return [float(x) for x in RTT.findall(proc.stdout)]


def interleaved_rtts(runs: list[Running]) -> dict[str, list[float]]:
    """Ping RTTs of every connected server, taken in turns of RTT_BATCH echo requests.

    The RTT of an idle tunnel on this VM is mostly where the kernel wakes each process up, and
    that drifts over seconds with whatever else the host runs: servers measured one after the
    other met different conditions. In turns, each meets the same ones."""
    rtts: dict[str, list[float]] = {run.name: [] for run in runs}
    for turn in range(RTT_TURNS if runs else 0):
        for run in runs[turn % len(runs) :] + runs[: turn % len(runs)]:
            rtts[run.name].extend(ping_rtts(run.pair, RTT_BATCH))
    return rtts


def connect(run: Running, mode: str) -> tuple[OpenConnect, str]:
    """Connect ``run``'s client in ``mode``; its negotiated cipher."""
    dtls, options, expected = MODES[mode]
    client = run.runner.connect(
        run.server, user="alice", password="alicepass", dtls=dtls, routes=(), extra=options
    )
    try:
        client.wait_env(timeout=40)
        cipher = "(TLS)"
        if dtls:
            cipher = wait_dtls(client)
            if expected not in cipher:
                raise RuntimeError(f"{mode}: negotiated {cipher}, wanted {expected}")
    except BaseException:
        client.stop()
        run.pair.kill_in(run.pair.client)
        raise
    return client, cipher


def throughput(run: Running, row: dict[str, Any], seconds: int) -> None:
    """iperf3 up then down through ``run``'s tunnel, with the server's CPU per GB, into ``row``."""
    for label, reverse in (("up", False), ("down", True)):
        before = tree_cpu(run.server.pid)
        report = iperf3_report(run.pair, server_addr=SERVER_TUN4, seconds=seconds + 1,
                               reverse=reverse, omit=1, timeout=seconds + 60)  # fmt: skip
        cpu = cpu_used(before, tree_cpu(run.server.pid))
        received = report["end"]["sum_received"]
        # The omitted first second is in neither figure; CPU counts the whole run, so scale
        # the bytes of the measured seconds up to the whole run for the per-GB figure.
        moved = received["bytes"] * (seconds + 1) / seconds
        row[label] = received["bits_per_second"] / 1e6
        row[f"{label}_cpu_s_per_gb"] = cpu / (moved / 1e9) if moved else None


def measure_mode(
    order: list[Running], mode: str, seconds: int, round_: int
) -> list[dict[str, Any]]:
    """Round ``round_`` of ``mode``: every server's client connected, their RTTs in turns, then each
    server's throughput in ``order`` (the other clients stay connected and idle)."""
    connected: list[tuple[Running, OpenConnect, str]] = []
    rows: list[dict[str, Any]] = []
    try:
        for run in order:
            if run.name == "ocserv" and mode in BASELINE:
                continue
            try:
                client, cipher = connect(run, mode)
            except RuntimeError as exc:  # A mode this server does not offer.
                print(f"round {round_} {mode:11} {run.name:12} FAILED: {exc}", flush=True)
                continue
            connected.append((run, client, cipher))
        time.sleep(0.5)
        rtts = interleaved_rtts([run for run, _, _ in connected])
        for run, _, cipher in connected:
            values = rtts[run.name]
            row: dict[str, Any] = {
                "server": run.name,
                "mode": mode,
                "cipher": cipher,
                "rtt_ms": statistics.median(values) if values else None,
            }
            throughput(run, row, seconds)
            rows.append(row)
    finally:
        for run, client, _ in connected:
            client.stop()
            run.pair.kill_in(run.pair.client)
    return rows


def start(name: str, index: int, tmp: Path, cert_dir: Path, env: dict[str, str]) -> Running:
    kind, extra, server_env = SERVERS[name]
    pair = NetnsPair.create(f"dp{index}{os.getpid()}")
    saved = dict(os.environ)
    os.environ.update({**server_env, **env})  # The server inherits the environment.
    try:
        cert = make_server_cert(cert_dir / name, SERVER_ADDR, rsa_key=True)
        server = start_server(pair=pair, workdir=tmp / name, cert=cert,
                              overrides={**CONFIG, **extra}, users=USERS, kind=kind)  # fmt: skip
    except BaseException:
        pair.destroy()
        raise
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return Running(name, pair, server, OpenConnectRunner(pair, tmp / f"{name}-oc"))


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarise(runs: list[dict[str, Any]], servers: list[str], modes: list[str]) -> str:
    def cell(value: float | None, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    lines = [
        "| mode | server | up Mb/s | down Mb/s | ratio up / down | RTT ms | CPU s/GB up / down |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in modes:
        base_mode = BASELINE.get(mode, mode)
        base = [r for r in runs if r["mode"] == base_mode and r["server"] == "ocserv"]
        for name in servers:
            rows = [r for r in runs if r["mode"] == mode and r["server"] == name]
            if not rows:
                continue
            up, down = median(rows, "up"), median(rows, "down")
            ratio = "—"
            if base and name != "ocserv":
                bup, bdown = median(base, "up"), median(base, "down")
                if up and down and bup and bdown:
                    ratio = f"{up / bup:.2f} / {down / bdown:.2f}"
            lines.append(
                f"| {mode} | {name} | {cell(up, '.0f')} | {cell(down, '.0f')} | {ratio} | "
                f"{cell(median(rows, 'rtt_ms'), '.3f')} | "
                f"{cell(median(rows, 'up_cpu_s_per_gb'), '.1f')} / "
                f"{cell(median(rows, 'down_cpu_s_per_gb'), '.1f')} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="ocserv,ocgate-1,ocgate-auto")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="seconds per iperf3 run")
    parser.add_argument("--json", type=Path, help="also write the raw runs here")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="run server ocgate-base from this source tree (e.g. an older checkout's src/)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 2
    servers = [s for s in args.servers.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    unknown = [s for s in servers if s not in SERVERS] + [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown server or mode: {', '.join(unknown)}")
    if "ocserv" in servers:
        ensure_ocserv()
    tmp = Path(tempfile.mkdtemp(prefix="ocgate-datapath-"))
    running: list[Running] = []
    runs: list[dict[str, Any]] = []
    try:
        for i, name in enumerate(servers):
            env = {}
            if name == "ocgate-base":
                if args.baseline_src is None:
                    parser.error("ocgate-base needs --baseline-src")
                env["PYTHONPATH"] = str(args.baseline_src.resolve())
            running.append(start(name, i, tmp, tmp / "pki", env))
        for round_ in range(args.rounds):
            order = running[round_ % len(running) :] + running[: round_ % len(running)]
            for mode in modes:
                for row in measure_mode(order, mode, args.seconds, round_):
                    row["round"] = round_
                    runs.append(row)
                    print(
                        f"round {round_} {mode:11} {row['server']:12} up {row['up']:7.1f} "
                        f"down {row['down']:7.1f} Mb/s  rtt {row['rtt_ms']:.3f} ms  "
                        f"cpu/GB {row['up_cpu_s_per_gb']:.1f}/{row['down_cpu_s_per_gb']:.1f}  "
                        f"{row['cipher']}",
                        flush=True,
                    )
    finally:
        for run in running:
            run.runner.close_all()
            run.server.stop()
            run.pair.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(summarise(runs, servers, modes))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
