"""Fixtures of the NVM API tests: a real SQLite store with a known data set, the app, a client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ocgate.nvm._hub import FlowHub
from ocgate.nvm._records import EndpointRecord, FlowRecord, InterfaceRecord, Normalised
from ocgate.nvm.api import create_app
from ocgate.nvm.ipfix import ExporterKey, ExporterStats
from ocgate.nvm.store import Store, open_store

TOKEN = "k3y-0123456789abcdef-TOKEN"
OTHER_TOKEN = "second-token-fedcba9876543210"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp()
AA, BB, CC = "aa" * 20, "bb" * 20, "cc" * 20
LIVE_EXPORTER = ExporterKey("udp", "10.8.0.2", 50000)


def flow(offset: float, **fields: object) -> FlowRecord:
    """A flow ending at ``T0 + offset``."""
    values: dict[str, object] = {
        "protocol": 17,
        "src_addr": "10.8.0.2",
        "src_port": 43879,
        "dst_addr": "192.0.2.53",
        "dst_port": 53,
        "odid": 127,
        "template_id": 267,
    }
    values.update(fields)
    # Each endpoint exports from its own address (attribution goes by the exporter's address).
    values.setdefault("exporter", f"udp://{values['src_addr']}")
    return FlowRecord(time_start=T0 + offset, time_end=T0 + offset, **values)  # type: ignore[arg-type]


# The data set: offsets 0..40 identify the flows in assertions.
FLOWS: tuple[FlowRecord, ...] = (
    flow(
        0,
        udid=AA,
        user="CORP\\alice",
        process_name="chrome.exe",
        dst_hostname="www.example.com",
        bytes_in=100,
        bytes_out=41,
    ),
    flow(
        10,
        src_addr="10.8.0.3",
        dst_addr="198.51.100.7",
        udid=BB,
        user="CORP\\bob",
        process_name="svchost.exe",
        dst_hostname="example.com",
        bytes_in=1000,
        bytes_out=0,
    ),
    flow(
        20,
        dst_addr="2001:db8::1",
        udid=AA,
        user="CORP\\alice",
        process_name="svchost.exe",
        dst_hostname="API.Example.COM",
        bytes_in=5,
        bytes_out=5,
    ),
    flow(30, src_addr="10.8.0.4", udid=CC, octets=7),
    flow(
        40,
        src_addr="10.8.0.3",
        dst_addr="203.0.113.9",
        udid=BB,
        user="CORP\\bob",
        process_name="chrome.exe",
        dst_hostname="other.org",
        bytes_in=10,
        bytes_out=10,
    ),
)
ENDPOINTS: tuple[EndpointRecord, ...] = tuple(
    EndpointRecord(udid=udid, os_name="Windows", first_seen=T0, last_seen=T0 + seen)
    for udid, seen in ((AA, 0), (BB, 100), (CC, 200))
)
INTERFACE = InterfaceRecord(
    udid=AA, interface_uid=6, interface_name="eth0", first_seen=T0, last_seen=T0
)
SAVED_STATS = {
    "udp://10.8.0.9:2055": {"records": 5, "templates": 2, "sequence_gaps": 1, "messages": 3},
    "udp://10.8.0.2:50000": {"records": 1},
}


def offsets(flows: list[dict[str, object]]) -> list[float]:
    """The data-set offsets of API flow objects, in response order."""
    return [float(f["time_end"]) - T0 for f in flows]  # type: ignore[arg-type]


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture
def store(runner: asyncio.Runner, tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite://{tmp_path}/nvm.db")
    runner.run(store.open())
    runner.run(store.migrate())
    runner.run(
        store.record_lease(
            username="alice", session_id="s1", address="10.8.0.2", start=T0 - 100, end=None
        )
    )
    records: list[Normalised] = [*FLOWS, *ENDPOINTS, INTERFACE]
    runner.run(store.write_batch(records))
    runner.run(store.save_exporter_stats(SAVED_STATS))
    runner.run(store.flush())
    try:
        yield store
    finally:
        runner.run(store.close())


@pytest.fixture
def hub() -> FlowHub:
    return FlowHub()


def live_stats() -> dict[ExporterKey, ExporterStats]:
    return {LIVE_EXPORTER: ExporterStats(messages=4, records=9, templates=4, malformed=2)}


@pytest.fixture
def client(store: Store, hub: FlowHub) -> Iterator[TestClient]:
    app = create_app(store, hub, [TOKEN, OTHER_TOKEN], stats=live_stats)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app, headers=headers) as client:
        yield client
    hub.close()
