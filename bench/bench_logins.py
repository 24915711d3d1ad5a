"""Logins per second with the embedded SQLite session store and with a shared Redis store.

    .venv/bin/python bench/bench_logins.py                          # 3 rounds of 10 s each
    .venv/bin/python bench/bench_logins.py --rounds 1 --seconds 3   # a smoke run

Needs root (network namespaces, TUN devices) and Debian's ``redis-server`` (``make test``
installs it). One ocgate at a time runs in the server namespace with the configuration of
``bench_gateway.py`` (``workers = 1`` unless ``--workers``), first with its default session store
(SQLite beside ``socket-file``), then with ``session-store = redis://:PASSWORD@127.0.0.1:6390/0``
pointing at a ``redis-server`` in the same namespace (no persistence, as the tests run it); the
order alternates between rounds. The load is ``bench_gateway.py``'s ``logins`` scenario: 16
threads, each one client with one TLS context, doing full AggAuth logins and a CONNECT (``200
CONNECTED``), then closing the tunnel, for ``--seconds``. Printed: logins per second of every run,
the CPU seconds of each gateway process (and of redis-server), the medians, and the ratio
redis / sqlite. A Redis store costs a few round trips per login and per CONNECT (the session,
its home, its two leases, the node's users list) on top of the SQLite write that every node
still makes; the ratio is what a node loses to that, not what a cluster gains by having more
nodes.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_gateway import BASE, USERS, logins  # noqa: E402
from tests.interop._certs import make_server_cert  # noqa: E402
from tests.interop._netns import SERVER_ADDR, NetnsPair  # noqa: E402
from tests.interop._redis import RedisServer, redis_missing  # noqa: E402
from tests.interop._server import ServerKind, start_server  # noqa: E402

STORES = ("sqlite", "redis")
REDIS_PASSWORD = "bench-redis-pass"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _one_run(
    pair: NetnsPair,
    tmp: Path,
    cert: object,
    store: str,
    redis: RedisServer,
    *,
    workers: str,
    seconds: float,
    threads: int,
    run: int,
) -> float:
    overrides: dict[str, str | None] = {**BASE, "workers": workers, "max-pre-auth-per-source": "0"}
    overrides["udp-port"] = None  # Logins only: no DTLS.
    if store == "redis":
        overrides["session-store"] = redis.url(0)
        overrides["node-name"] = "bench"
    server = start_server(
        pair=pair,
        workdir=tmp / f"{store}-{run}",
        cert=cert,  # type: ignore[arg-type]
        overrides=overrides,
        users=USERS,
        kind=ServerKind.OCGATE,
    )
    try:
        redis_pid = redis.proc.pid if store == "redis" and redis.proc is not None else None
        if redis_pid:  # A fresh server is an empty store: new leases wait out its recovery hold.
            deadline = time.monotonic() + 30
            while redis.command("EXISTS", "ocgate:recovering", "ocgate:epoch") != 1:
                assert time.monotonic() < deadline, server.describe()
                time.sleep(0.2)
        redis_before = _cpu_seconds(redis_pid) if redis_pid else 0.0
        rate = logins(pair, server, seconds, threads=threads)
        if redis_pid:
            print(f"    redis-server CPU seconds: {_cpu_seconds(redis_pid) - redis_before:.1f}")
            assert "event=session-store-up" in server.log_text(), server.describe()
        return rate
    finally:
        server.stop()  # Kills what is left in the server namespace, redis-server too.


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="of logins per run")
    parser.add_argument("--threads", type=int, default=16, help="concurrent clients")
    parser.add_argument("--workers", default="1", help="the gateway's workers (1-256 or auto)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 2
    if redis_missing():
        print("needs redis-server (apt-get install redis-server)", file=sys.stderr)
        return 2
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pair = NetnsPair.create("blogin")
    tmp = Path(tempfile.mkdtemp(prefix="ocgate-bench-logins-"))
    redis = RedisServer(tmp / "redis", host="127.0.0.1", ns=pair.server, password=REDIS_PASSWORD)
    results: dict[str, list[float]] = {store: [] for store in STORES}
    try:
        cert = make_server_cert(tmp / "pki", SERVER_ADDR)
        for round_ in range(args.rounds):
            order = STORES if round_ % 2 == 0 else STORES[::-1]
            for store in order:
                print(f"== {store} (round {round_})", flush=True)
                if store == "redis":
                    redis.start()  # A fresh, empty server for every run.
                try:
                    rate = _one_run(
                        pair,
                        tmp,
                        cert,
                        store,
                        redis,
                        workers=args.workers,
                        seconds=args.seconds,
                        threads=args.threads,
                        run=round_,
                    )
                finally:
                    redis.stop()
                results[store].append(rate)
                print(f"   logins_per_s: {rate:.1f}", flush=True)
    finally:
        redis.stop()
        pair.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {store: statistics.median(runs) for store, runs in results.items()}
    print("\nlogins + CONNECT per second (median of the rounds):")
    for store in STORES:
        runs = ", ".join(f"{r:.1f}" for r in results[store])
        print(f"  {store:7} {medians[store]:8.1f}   ({runs})")
    if medians["sqlite"]:
        print(f"  ratio redis / sqlite: {medians['redis'] / medians['sqlite']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
