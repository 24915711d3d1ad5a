"""NVM collector ingest, side by side with nfcapd, on the same generated IPFIX traffic.

Three measurements:

1. **Decode rate per core**: standard (softflowd-like, 9 fixed fields) flow records decoded by
   ``IpfixCollectorCore`` alone, then through the whole in-process pipeline (decode → normalise
   → privacy), single thread, no I/O.
2. **Lossless ingest into SQLite at a paced rate** (default 50,000 records/s for ``--seconds``,
   default 60): a separate sender process sends the traffic over UDP on loopback to the
   collector (``Collector`` + UDP listener + SQLite store, as ``ocgate nvm serve`` runs it); at
   the end the stored row count must equal the sent record count.
3. **nfcapd at the same rate**: the same sender to ``nfcapd``; its counts come from
   ``nfdump -I`` (flows stored, sequence failures).

Kernel drops (``/proc/net/snmp`` ``Udp: RcvbufErrors``) are reported for both runs.
The collector's socket asks for 16 MiB of receive buffer: granted with CAP_NET_ADMIN
(``SO_RCVBUFFORCE``), otherwise capped at ``net.core.rmem_max`` (raise it for the run with
``sysctl -w net.core.rmem_max=16777216``); the buffer actually granted is printed.

    .venv/bin/python bench/bench_nvm_ingest.py --seconds 5
    .venv/bin/python bench/bench_nvm_ingest.py                 # the full 60 s

Tests reuse the generator to put a small burst of flows into a running collector:
``send_flows(host, port, count, user=..., hostname=...)`` (below).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

from ocgate.nvm._collector import Collector
from ocgate.nvm._config import ListenAddress
from ocgate.nvm._listeners import Listeners, udp_receive_errors
from ocgate.nvm.ipfix import (
    CISCO_PEN,
    ExporterKey,
    FieldSpec,
    IpfixCollectorCore,
    RecordsDecoded,
    Template,
    encode_data_set,
    encode_message,
    encode_template_set,
)
from ocgate.nvm.store import SqliteStore

# softflowd's IPv4 template with -A milli (nvm-ipfix.md §7): addresses, ports, protocol,
# octetDeltaCount, packetDeltaCount, flowStart/EndMilliseconds.
FLOW = Template(
    1024,
    tuple(
        FieldSpec(i, n)
        for i, n in ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (152, 8), (153, 8))
    ),
)
# send_flows labels its flows with nvzFlow's loggedInUser (9:12333), process name (9:12340) and
# destination host name (9:12345), variable-length strings after the FLOW fields.
_USER, _PROCESS, _HOSTNAME = (FieldSpec(ie, 0xFFFF, CISCO_PEN) for ie in (12333, 12340, 12345))
# Next IPFIX sequence number per (collector, source address): the collector keys UDP exporters
# by address, so successive bursts from one address continue its sequence.
_SEQUENCES: dict[tuple[str, int, str | None], int] = {}
RECORDS_PER_MESSAGE = 30  # 30 x 45 B + headers = 1370 B: fits a 1500 B MTU like real exporters.
POOL = 2000
ODID = 1
_SEQ = struct.Struct("!I")


def flow_row(n: int, start: float, end: float) -> list[object]:
    """The ``n``-th distinct flow of the benchmark (the values of the FLOW template)."""
    return [
        IPv4Address(0x0A000000 + n % 65536),
        IPv4Address(0xC0000200 + n % 200),
        1024 + n % 60000,
        443,
        6,
        1500 + n % 1000,
        3 + n % 10,
        start,
        end,
    ]


def make_messages(now: float) -> list[bytes]:
    """A pool of distinct data messages (sequence numbers patched at send time)."""
    messages = []
    start = float(int(now))  # dateTimeMilliseconds values are float seconds (the encoder's unit).
    for m in range(POOL):
        rows = []
        for r in range(RECORDS_PER_MESSAGE):
            rows.append(flow_row(m * RECORDS_PER_MESSAGE + r, start, start + 1.0))
        messages.append(
            encode_message(
                [encode_data_set(FLOW, rows)], export_time=int(now), observation_domain_id=ODID
            )
        )
    return messages


def template_message(now: float) -> bytes:
    return encode_message(
        [encode_template_set([FLOW])], export_time=int(now), observation_domain_id=ODID
    )


def send_flows(
    host: str,
    port: int,
    count: int,
    *,
    user: str | None = None,
    hostname: str | None = None,
    process: str = "bench.exe",
    bind: str | None = None,
    now: float | None = None,
) -> int:
    """Send ``count`` flow records (and their template first) over UDP to ``host:port``.

    The flows are the benchmark's (10.0.x.y → 192.0.2.z:443, TCP, 1,500-2,499 octets each,
    ending at ``now``, default the current time). With ``user`` or ``hostname`` they also carry
    nvzFlow's logged-in user, process name (``process``) and destination host name, so they can
    be told apart in the store and the API. ``bind`` picks the source address (the collector
    attributes flows to the VPN lease of the exporter's address). Returns the records sent.
    """
    when = time.time() if now is None else now
    labels: list[str] = []
    fields = list(FLOW.fields)
    if user is not None:
        fields.append(_USER)
        labels.append(user)
    if user is not None or hostname is not None:
        fields.append(_PROCESS)
        labels.append(process)
    if hostname is not None:
        fields.append(_HOSTNAME)
        labels.append(hostname)
    # One template id per field layout: 1024 (FLOW's), 1025 user, 1026 host name, 1027 both.
    template_id = 1024 + (user is not None) + 2 * (hostname is not None)
    template = Template(template_id, tuple(fields))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    key = (host, port, bind)
    sequence = _SEQUENCES.get(key, 0)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        if bind is not None:
            sock.bind((bind, 0))
        sock.connect((host, port))
        sock.send(
            encode_message(
                [encode_template_set([template])],
                export_time=int(when),
                sequence=sequence,
                observation_domain_id=ODID,
            )
        )
        for first in range(0, count, RECORDS_PER_MESSAGE):
            rows: list[list[object]] = []
            for n in range(first, min(count, first + RECORDS_PER_MESSAGE)):
                rows.append(flow_row(n, when - 1.0, when) + labels)
            sock.send(
                encode_message(
                    [encode_data_set(template, rows)],
                    export_time=int(when),
                    sequence=sequence,
                    observation_domain_id=ODID,
                )
            )
            sequence = (sequence + len(rows)) & 0xFFFFFFFF
    _SEQUENCES[key] = sequence
    return count


# --- 1. decode rate ------------------------------------------------------------------------------


def bench_decode(seconds: float) -> tuple[float, float]:
    """Records/s: decoder alone, and decode + normalise + privacy (the collector's sync path)."""
    now = time.time()
    messages = make_messages(now)
    key = ExporterKey("udp", "127.0.0.1", 9)

    core = IpfixCollectorCore()
    core.receive_message(template_message(now), key, now)
    core.next_event()
    decoded = 0
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds:
        for message in messages[:200]:
            core.receive_message(message, key, now)
            while (event := core.next_event()) is not None:
                if isinstance(event, RecordsDecoded):
                    decoded += len(event.records)
        i += 1
    core_rate = decoded / (time.perf_counter() - started)

    collector = Collector(store=None)  # type: ignore[arg-type]  # Only the sync path runs.
    collector.batch_records = 1 << 60  # Never cut a batch (no writer task here).
    collector.receive_message(template_message(now), key, now)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for message in messages[:200]:
            collector.receive_message(message, key, now)
        collector._pending.clear()
    pipeline_rate = collector.stats().records_decoded / (time.perf_counter() - started)
    return core_rate, pipeline_rate


# --- the paced sender (a separate process) -------------------------------------------------------


def sender(
    port: int, rate: float, seconds: float, result: multiprocessing.Queue[tuple[int, float]]
) -> None:
    """Send ``rate`` records/s for ``seconds`` to 127.0.0.1:port; put (records, duration)."""
    now = time.time()
    messages = make_messages(now)
    template = template_message(now)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect(("127.0.0.1", port))
    sock.send(template)
    time.sleep(0.05)
    per_message = RECORDS_PER_MESSAGE
    total_messages = int(rate * seconds / per_message)
    sequence = 0
    sent = 0
    started = time.perf_counter()
    next_template = started + 1.0
    while sent < total_messages:
        due = min(total_messages, int((time.perf_counter() - started) * rate / per_message) + 1)
        while sent < due:
            message = messages[sent % POOL]
            sock.send(message[:8] + _SEQ.pack(sequence) + message[12:])
            sequence = (sequence + per_message) & 0xFFFFFFFF
            sent += 1
        now_p = time.perf_counter()
        if now_p >= next_template:  # Template refresh, as UDP exporters do.
            sock.send(template[:8] + _SEQ.pack(sequence) + template[12:])
            next_template = now_p + 1.0
        time.sleep(0.002)
    duration = time.perf_counter() - started
    sock.close()
    result.put((sent * per_message, duration))


def run_sender(port: int, rate: float, seconds: float) -> tuple[int, float]:
    """Run :func:`sender` in its own process; returns (records sent, sending seconds)."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[tuple[int, float]] = ctx.Queue()
    process = ctx.Process(target=sender, args=(port, rate, seconds, queue))
    process.start()
    sent, duration = queue.get()
    process.join()
    return sent, duration


# --- 2. ocgate collector into SQLite -------------------------------------------------------------


async def bench_collector(rate: float, seconds: float, directory: Path) -> dict[str, float]:
    path = directory / "nvm.sqlite"
    store = SqliteStore(path)
    await store.open()
    await store.migrate()
    collector = Collector(store=store)
    await collector.start()
    listeners = Listeners(collector)
    bound = await listeners.add_udp(ListenAddress("udp", "127.0.0.1", 0))
    rcvbuf = listeners.receive_buffer_sizes()[0]
    drops_before = udp_receive_errors() or 0
    started = time.perf_counter()
    sent, send_time = await asyncio.to_thread(run_sender, bound.port, rate, seconds)
    # Let the socket drain, then commit everything.
    quiet = 0
    last = -1
    while quiet < 5:
        await asyncio.sleep(0.1)
        current = collector.stats().records_decoded
        quiet = quiet + 1 if current == last else 0
        last = current
    await collector.flush()
    total_time = time.perf_counter() - started
    await listeners.close()
    await collector.stop()
    await store.close()
    drops = (udp_receive_errors() or 0) - drops_before
    with sqlite3.connect(path) as db:
        stored = int(db.execute("SELECT COUNT(*) FROM flows").fetchone()[0])
    stats = collector.stats()
    return {
        "sent": sent,
        "decoded": stats.records_decoded,
        "stored": stored,
        "lost": sent - stored,
        "send_s": send_time,
        "total_s": total_time,
        "drain_s": total_time - send_time,
        "kernel_drops": drops,
        "gaps": sum(int(str(v["sequence_gaps"] or 0)) for v in collector.exporter_stats().values()),
        "rcvbuf": rcvbuf,
    }


# --- 3. nfcapd -----------------------------------------------------------------------------------


def bench_nfcapd(rate: float, seconds: float, directory: Path) -> dict[str, float] | None:
    if shutil.which("nfcapd") is None or shutil.which("nfdump") is None:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    out = directory / "nfcapd"
    out.mkdir()
    process = subprocess.Popen(
        [
            "nfcapd",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(out),
            "-t",
            "3600",
            "-B",
            str(16 << 20),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    drops_before = udp_receive_errors() or 0
    started = time.perf_counter()
    sent, send_time = run_sender(port, rate, seconds)
    time.sleep(1.0)
    process.terminate()
    process.wait(timeout=60)
    drops = (udp_receive_errors() or 0) - drops_before
    info = "\n".join(
        subprocess.run(["nfdump", "-I", "-r", str(p)], capture_output=True, text=True).stdout
        for p in sorted(out.glob("nfcapd.*"))
    )
    values: dict[str, int] = {}
    for line in info.splitlines():
        name, _, value = line.partition(":")
        if value.strip().isdigit():
            values[name.strip()] = values.get(name.strip(), 0) + int(value)
    stored = values.get("Flows", 0)
    return {
        "sent": sent,
        "decoded": stored,
        "stored": stored,
        "lost": sent - stored,
        "send_s": send_time,
        "total_s": time.perf_counter() - started,
        "kernel_drops": drops,
        "gaps": values.get("Sequence failures", 0),
    }


# --- report --------------------------------------------------------------------------------------


def row(name: str, result: dict[str, float]) -> str:
    return (
        f"{name:<22} {int(result['sent']):>10} {int(result['decoded']):>10} "
        f"{int(result['stored']):>10} {int(result['lost']):>8} "
        f"{result['stored'] / result['send_s']:>12,.0f} {int(result['kernel_drops']):>8} "
        f"{int(result['gaps']):>6}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="paced run length")
    parser.add_argument("--rate", type=float, default=50_000.0, help="records per second")
    parser.add_argument("--decode-seconds", type=float, default=3.0)
    parser.add_argument("--skip-nfcapd", action="store_true")
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; records of 9 fixed fields")
    core_rate, pipeline_rate = bench_decode(args.decode_seconds)
    print("\n1. decode, one core (records/s)")
    print(f"   IPFIX decoder alone                      {core_rate:>12,.0f}")
    print(f"   decode + normalise + privacy (collector) {pipeline_rate:>12,.0f}")

    with tempfile.TemporaryDirectory(prefix="nvm-bench-") as tmp:
        directory = Path(tmp)
        ours = asyncio.run(bench_collector(args.rate, args.seconds, directory))
        theirs = None if args.skip_nfcapd else bench_nfcapd(args.rate, args.seconds, directory)

    print(f"\n2./3. paced UDP on loopback: {args.rate:,.0f} records/s for {args.seconds:g} s")
    print(
        f"{'collector':<22} {'sent':>10} {'decoded':>10} {'stored':>10} {'lost':>8} "
        f"{'stored/s':>12} {'kdrops':>8} {'gaps':>6}"
    )
    print(row("ocgate (SQLite)", ours))
    print(
        f"   (ocgate: {ours['drain_s']:.1f} s from the last datagram sent to the last commit; "
        f"socket receive buffer {int(ours['rcvbuf']) >> 20} MiB)"
    )
    if theirs is not None:
        print(row("nfcapd (nfdump -I)", theirs))
    else:
        print("nfcapd                 (not run: nfdump not installed or --skip-nfcapd)")
    lossless = ours["lost"] == 0
    print(
        f"\nocgate lossless: {'yes' if lossless else 'NO'} "
        f"(stored/s = stored records / sending time; kdrops = kernel UDP RcvbufErrors, "
        f"datagrams; gaps = records missing by IPFIX sequence numbers)"
    )
    return 0 if lossless else 1


if __name__ == "__main__":
    sys.exit(main())
