"""Shared helpers of the NVM collector, listener and SIEM tests (not a test module).

NVM messages: the public ONA sample (templates 262/266/267/268, data 267 and 262; see
tests/vectors/ipfix/SOURCES.md) plus 266 and 268 data records made with the encoder from the same
templates.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from ipaddress import IPv6Address
from pathlib import Path

from ocgate.nvm._collector import Collector
from ocgate.nvm.ipfix import (
    CISCO_PEN,
    BasicList,
    FieldSpec,
    Template,
    VarLen,
    encode_data_set,
    encode_message,
    encode_template_set,
    parse_template_set_untrusted,
    pull_message_untrusted,
)
from ocgate.nvm.store import SqliteStore

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "ipfix"


def load_vector(name: str) -> bytes:
    return bytes.fromhex("".join((VECTORS / f"{name}.hex").read_text().split()))


TEMPLATES = load_vector("ona_nvzflow_templates")
DATA_267 = load_vector("ona_nvzflow_data_267")
DATA_262 = load_vector("ona_nvzflow_data_262")
UDID_HEX = "4ca7d9a79889dc4f18b4cd1b7e9f7e25d0c866a4"
UDID = bytes.fromhex(UDID_HEX)
FLOW_TIME = 1491362773.0  # 2017-04-05 03:26:13 UTC, the 267 sample's start and end.
MODULES = [
    "cryptsvc.dll",
    "dhcpcore.dll",
    "termsrv.dll",
    "dnsrslvr.dll",
    "wkssvc.dll",
    "qagentRT.dll",
    "nlasvc.dll",
    "WsmSvc.dll",
    "wecsvc.dll",
    "tapisrv.dll",
]

ONA_TEMPLATES: dict[int, Template] = {
    t.template_id: t
    for t in parse_template_set_untrusted(
        pull_message_untrusted(TEMPLATES)[1][0].body, options=False
    )
    if isinstance(t, Template)
}


def pen9(element_id: int, length: int) -> FieldSpec:
    return FieldSpec(element_id, length, CISCO_PEN)


def message_268(*, sequence: int = 23, src: str = "2001:db8::10") -> bytes:
    """One IPv6 flow (template 268) with every field set, modules as basicLists."""
    hash1, hash2 = bytes(range(32)), bytes(range(32, 64))
    row: list[object] = [
        6,
        IPv6Address(src),
        50123,
        IPv6Address("2001:db8::443"),
        443,
        int(FLOW_TIME),
        int(FLOW_TIME) + 5,
        UDID,
        "MYNVM\\dummy11",
        2,
        "MYNVM\\dummy11",
        2,
        "firefox.exe",
        hash1,
        "MYNVM\\dummy11",
        2,
        "explorer.exe",
        hash2,
        5000,
        700,
        "dummy.du",
        "www.example.com",
        7,
        VarLen(BasicList(pen9(12348, 0xFFFF), ("a.dll", "b.dll"))),
        VarLen(BasicList(pen9(12350, 32), (hash1, hash2))),
    ]
    data = encode_data_set(ONA_TEMPLATES[268], [row])
    return encode_message(
        [data], export_time=int(FLOW_TIME) + 6, sequence=sequence, observation_domain_id=127
    )


def message_266(*, sequence: int = 24) -> bytes:
    """One interface record (template 266)."""
    row: list[object] = [
        UDID,
        6,
        12,
        71,
        "Wi-Fi",
        VarLen(BasicList(pen9(12358, 0xFFFF), ("Intel(R) Wireless",))),
        VarLen(b"\x00\x01"),
    ]
    data = encode_data_set(ONA_TEMPLATES[266], [row])
    return encode_message(
        [data], export_time=int(FLOW_TIME), sequence=sequence, observation_domain_id=127
    )


def nvm_messages() -> list[bytes]:
    """Templates, then one record of each of 262, 266, 267, 268."""
    return [TEMPLATES, DATA_267, DATA_262, message_266(), message_268()]


def template_message(template: Template, *, odid: int = 0) -> bytes:
    return encode_message([encode_template_set([template])], observation_domain_id=odid)


def open_sqlite(path: Path) -> SqliteStore:
    return SqliteStore(path, linger=0.001)


@contextlib.asynccontextmanager
async def opened_store(path: Path) -> AsyncIterator[SqliteStore]:
    store = open_sqlite(path)
    await store.open()
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` until true (fails the test after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def wait_messages(collector: Collector, count: int, seconds: float = 5.0) -> None:
    await wait_for(lambda: collector.stats().messages >= count, seconds)
