"""Benchmark: IPFIX records decoded per second by one core (STYLE rule 15).

Run with ``.venv/bin/python bench/bench_ipfix_decode.py``. Two workloads:

* a softflowd-like IPv4 flow template (IEs 8, 12, 7, 11, 4, 1, 2, 152, 153, all fixed length),
  30 records per message (about 1,400 bytes, one Ethernet MTU);
* the nvzFlow template 267 of the public ONA sample (25 fields, variable-length strings and two
  basicLists of ten modules), 1 record per message as NVM sends them, rebuilt from the sample.

Each workload feeds whole messages through ``IpfixCollectorCore.receive_message`` and drains the
events, so the figure includes header and set parsing, sequence tracking and event creation.
"""

from __future__ import annotations

import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

from ocgate.nvm.ipfix import (
    ExporterKey,
    FieldSpec,
    IpfixCollectorCore,
    RecordsDecoded,
    Template,
    encode_data_set,
    encode_message,
    encode_template_set,
)

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "ipfix"
SOFTFLOWD = Template(
    1024,
    tuple(
        FieldSpec(i, n)
        for i, n in ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (152, 8), (153, 8))
    ),
)


def _softflowd_messages(count: int, per_message: int) -> tuple[bytes, list[bytes]]:
    template = encode_message([encode_template_set([SOFTFLOWD])], export_time=1_700_000_000)
    messages = []
    for m in range(count):
        records = [
            (
                IPv4Address(0x0A000001 + r),
                IPv4Address(0xC0A80001),
                40000 + r,
                443,
                6,
                1500 * r,
                r + 1,
                1_700_000_000.123,
                1_700_000_001.456,
            )
            for r in range(per_message)
        ]
        messages.append(
            encode_message(
                [encode_data_set(SOFTFLOWD, records)],
                export_time=1_700_000_000,
                sequence=m * per_message,
            )
        )
    return template, messages


def _nvm_messages(count: int) -> tuple[bytes, list[bytes]]:
    def load(name: str) -> bytes:
        return bytes.fromhex("".join((VECTORS / f"{name}.hex").read_text().split()))

    template = load("ona_nvzflow_templates")
    data = load("ona_nvzflow_data_267")
    messages = []
    for m in range(count):
        # Same record, fresh sequence numbers: bytes 8-11 of the header.
        messages.append(data[:8] + (22 + m).to_bytes(4, "big") + data[12:])
    return template, messages


def _run(label: str, template: bytes, messages: list[bytes], repeat: int = 3) -> float:
    best = 0.0
    for _ in range(repeat):
        core = IpfixCollectorCore()
        exporter = ExporterKey("udp", "192.0.2.1", 50000)
        core.receive_message(template, exporter, 0.0)
        while core.next_event() is not None:
            pass
        records = 0
        start = time.perf_counter()
        for data in messages:
            core.receive_message(data, exporter, 1.0)
            while (event := core.next_event()) is not None:
                if isinstance(event, RecordsDecoded):
                    records += len(event.records)
        elapsed = time.perf_counter() - start
        best = max(best, records / elapsed)
    print(f"{label:<48} {best:>12,.0f} records/s")
    return best


def main() -> int:
    print(f"Python {sys.version.split()[0]}; best of 3 runs")
    _run("standard flow (softflowd-like, 30/message)", *_softflowd_messages(2000, 30))
    _run("nvzFlow template 267 (ONA sample, 1/message)", *_nvm_messages(20000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
