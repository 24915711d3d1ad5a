"""The NVM API tests' data set (a module of its own, not conftest.py: several test directories
have a conftest, and a test importing names from "conftest" would get whichever came first)."""

from __future__ import annotations

from datetime import UTC, datetime

from ocgate.nvm._records import EndpointRecord, FlowRecord, InterfaceRecord
from ocgate.nvm.ipfix import ExporterKey, ExporterStats

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


def live_stats() -> dict[ExporterKey, ExporterStats]:
    return {LIVE_EXPORTER: ExporterStats(messages=4, records=9, templates=4, malformed=2)}
