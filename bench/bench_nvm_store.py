"""Sustained ingest rate of the NVM store (SQLite by default).

Writes realistic nvzFlow flow records (the ONA sample's shape: user, process, hashes, ten modules)
from 2,000 endpoints with live VPN leases (so attribution runs), in batches as the collector
would, for ``--seconds`` seconds, then flushes and prints the committed rows per second.

By default the producer sends as fast as the store accepts (``write_batch`` waits while the
store's queue is full), which measures capacity. ``--rate N`` paces the producer at N records/s
as a collector would be paced by its input, and also reports how far it ever fell behind its
schedule: a store that keeps up stays within its queue (well under a second); one that does not
keeps falling behind (a real collector would then lose datagrams in the kernel).

    .venv/bin/python bench/bench_nvm_store.py --seconds 5
    .venv/bin/python bench/bench_nvm_store.py --seconds 60 --rate 50000
    .venv/bin/python bench/bench_nvm_store.py --seconds 60 --store postgresql:///ocgate?host=/tmp/x

Target (nvm-ipfix.md §3): lossless ≥ 50,000 records/s on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time

from ocgate.nvm._records import FlowRecord, Module
from ocgate.nvm.store import PostgresStore, SqliteStore, Store

ENDPOINTS = 2000


def make_pool(size: int, rng: random.Random) -> list[FlowRecord]:
    modules = tuple(
        Module(name=f"C:\\Windows\\System32\\mod{i}.dll", hash=rng.randbytes(32).hex())
        for i in range(10)
    )
    udids = [rng.randbytes(20).hex() for _ in range(ENDPOINTS)]
    pool = []
    for i in range(size):
        endpoint = i % ENDPOINTS
        pool.append(
            FlowRecord(
                time_start=0.0,
                time_end=0.0,
                protocol=rng.choice((6, 17)),
                src_addr=f"10.8.{endpoint // 250}.{endpoint % 250 + 2}",
                src_port=rng.randrange(1024, 65536),
                dst_addr=f"198.51.100.{rng.randrange(1, 255)}",
                dst_port=rng.choice((53, 80, 443)),
                bytes_in=rng.randrange(100, 100000),
                bytes_out=rng.randrange(40, 10000),
                udid=udids[endpoint],
                user=f"CORP\\user{endpoint}",
                user_authority="CORP",
                user_principal=f"user{endpoint}",
                user_account_type=2,
                process_name=rng.choice(("chrome.exe", "svchost.exe", "outlook.exe", "teams.exe")),
                process_hash=rng.randbytes(32).hex(),
                process_account=f"CORP\\user{endpoint}",
                process_account_type=2,
                parent_process_name="explorer.exe",
                parent_process_hash=rng.randbytes(32).hex(),
                parent_process_account=f"CORP\\user{endpoint}",
                parent_process_account_type=2,
                dns_suffix="corp.example",
                dst_hostname=f"host{rng.randrange(500)}.example.com",
                interface_uid=6,
                modules=modules,
                exporter=f"udp://10.8.{endpoint // 250}.{endpoint % 250 + 2}:50000",
                odid=127,
                template_id=267,
            )
        )
    return pool


def retime(record: FlowRecord, t: float) -> FlowRecord:
    # Cheaper than dataclasses.replace for a frozen slotted record in a hot loop.
    clone = object.__new__(FlowRecord)
    for name in FlowRecord.__slots__:
        object.__setattr__(clone, name, getattr(record, name))
    object.__setattr__(clone, "time_start", t)
    object.__setattr__(clone, "time_end", t + 1.0)
    return clone


async def run(
    target: str, seconds: float, batch: int, txn_rows: int | None = None, rate: float | None = None
) -> None:
    store: Store
    tuning = {} if txn_rows is None else {"max_batch_rows": txn_rows}
    if target.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(target, **tuning)
    else:
        store = SqliteStore(target.removeprefix("sqlite://"), **tuning)
    await store.open()
    await store.migrate()
    base = time.time() - 3600
    for endpoint in range(ENDPOINTS):
        await store.record_lease(
            username=f"user{endpoint}",
            session_id=f"s{endpoint}",
            address=f"10.8.{endpoint // 250}.{endpoint % 250 + 2}",
            start=base - 60,
            end=None,
        )
    rng = random.Random(0)
    pool = make_pool(20000, rng)
    batches = [
        [retime(r, base + i) for i, r in enumerate(pool[j : j + batch])]
        for j in range(0, len(pool), batch)
    ]
    sent = 0
    worst_lag = 0.0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for chunk in batches:
            if rate is not None:
                due = started + sent / rate  # When this batch is due on the schedule.
                now = time.perf_counter()
                if now < due:
                    await asyncio.sleep(due - now)
                else:
                    worst_lag = max(worst_lag, now - due)
            await store.write_batch(chunk)
            sent += len(chunk)
    sending = time.perf_counter() - started
    await store.flush()
    elapsed = time.perf_counter() - started
    written = getattr(store, "rows_written", sent)
    errors = getattr(store, "write_errors", 0)
    await store.close()
    print(
        f"{written} rows in {elapsed:.1f} s: {written / elapsed:,.0f} rows/s "
        f"(sent {sent}, write errors {errors})"
    )
    if rate is not None:
        print(
            f"paced at {rate:,.0f}/s: sent {sent / sending:,.0f}/s, worst lag behind schedule "
            f"{worst_lag:.2f} s, final flush {elapsed - sending:.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=1000, help="records per write_batch call")
    parser.add_argument(
        "--txn-rows", type=int, help="rows per transaction (default: the store's default)"
    )
    parser.add_argument("--rate", type=float, help="pace the producer at this many records/s")
    parser.add_argument("--store", help="store URL or path (default: a temporary SQLite file)")
    args = parser.parse_args()
    if args.store:
        asyncio.run(run(args.store, args.seconds, args.batch, args.txn_rows, args.rate))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "nvm.db")
        asyncio.run(run(path, args.seconds, args.batch, args.txn_rows, args.rate))


if __name__ == "__main__":
    main()
