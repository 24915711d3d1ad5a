"""Behaviour of the NVM store, written once for every backend.

The fixtures here give a SQLite store; ``tests/interop/test_nvm_postgres.py`` imports these same
test functions and overrides ``store`` with a parametrised SQLite/PostgreSQL fixture, so both
backends pass identical assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.nvm._records import (
    EndpointRecord,
    FlowRecord,
    GenericRecord,
    InterfaceRecord,
    JsonValue,
    Module,
)
from ocgate.nvm.store import (
    FlowFilter,
    SqliteStore,
    Store,
    _engine,
    _process,
    _schema,
    _writer,
    open_store,
)
from ocgate.nvm.store._base import decode_cursor, encode_cursor

T10 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture
def store(runner: asyncio.Runner, tmp_path: Path) -> Iterator[Store]:
    store = SqliteStore(tmp_path / "nvm.db", linger=0.001)
    runner.run(store.open())
    runner.run(store.migrate())
    try:
        yield store
    finally:
        runner.run(store.close())


def flow(t: float, **fields: object) -> FlowRecord:
    values: dict[str, object] = {
        "protocol": 17,
        "src_addr": "10.8.0.2",
        "src_port": 43879,
        "dst_addr": "192.0.2.53",
        "dst_port": 53,
        "bytes_in": 100,
        "bytes_out": 41,
        "exporter": "udp://10.8.0.2:50000",
        "odid": 127,
        "template_id": 267,
    }
    values.update(fields)
    return FlowRecord(time_start=t, time_end=t, **values)  # type: ignore[arg-type]


def write(runner: asyncio.Runner, store: Store, records: Sequence[object]) -> None:
    runner.run(store.write_batch(records))  # type: ignore[arg-type]
    runner.run(store.flush())


def all_flows(runner: asyncio.Runner, store: Store, filters: FlowFilter) -> list[FlowRecord]:
    page = runner.run(store.query_flows(filters, limit=1000))
    assert page.next_cursor is None
    return page.items


def test_migrations_are_idempotent(runner: asyncio.Runner, store: Store) -> None:
    latest = _schema.MIGRATIONS[-1].version
    assert runner.run(store.migrate()) == latest
    assert runner.run(store.migrate()) == latest


def test_a_version_1_store_gains_the_lease_device_columns(
    runner: asyncio.Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store made by the first release: its leases survive, and new ones keep their device.
    path = tmp_path / "nvm.db"
    monkeypatch.setattr(_writer, "MIGRATIONS", _schema.MIGRATIONS[:1])
    old = SqliteStore(path, linger=0.001)
    runner.run(old.open())
    assert runner.run(old.migrate()) == 1
    runner.run(old.close())
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # a lease written by version 1
        db.execute(
            "INSERT INTO vpn_leases (username, session_id, address, lease_start) "
            "VALUES ('a', 's1', '10.1.0.2', ?)",
            (T10,),
        )
    monkeypatch.undo()
    new = SqliteStore(path, linger=0.001)
    runner.run(new.open())
    assert runner.run(new.migrate()) == 2
    device = ("win", "LAPTOP-7", "9F1C")
    runner.run(new.record_lease(username="b", session_id="s2", address="10.1.0.3", start=T10,
                                end=None, device=device))  # fmt: skip
    runner.run(new.close())
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT username, device_platform, device_name, device_unique_id FROM vpn_leases "
            "ORDER BY username"
        ).fetchall()
    assert rows == [("a", None, None, None), ("b", "win", "LAPTOP-7", "9F1C")]


def test_round_trip_keeps_every_field(runner: asyncio.Runner, store: Store) -> None:
    original = flow(
        T10,
        udid="aa" * 20,
        user="MYNVM\\dummy11",
        user_authority="MYNVM",
        user_principal="dummy11",
        user_account_type=2,
        process_name="svchost.exe",
        process_hash="bb" * 32,
        process_account="NT AUTHORITY\\NETWORK SERVICE",
        process_account_type=1,
        parent_process_name="services.exe",
        parent_process_id=4,
        dns_suffix="dummy.du",
        dst_hostname="Unknown",
        interface_uid=6,
        modules=(Module("a.dll", "cc" * 32), Module("b.dll", None)),
        extra={"nvzFlowProcessIntegrityLevel": 3, "unknown": {"9:12360": "00"}},
    )
    write(runner, store, [original])
    (got,) = all_flows(runner, store, FlowFilter())
    assert got.id is not None
    assert got == FlowRecord(
        **{name: getattr(original, name) for name in original.__dataclass_fields__ if name != "id"},
        id=got.id,
    )


def test_every_filter(runner: asyncio.Runner, store: Store) -> None:
    write(
        runner,
        store,
        [
            flow(
                T10,
                user="CORP\\alice",
                udid="01" * 20,
                process_name="chrome.exe",
                dst_hostname="www.Example.com",
                dst_addr="198.51.100.7",
            ),
            flow(
                T10 + 1,
                user="CORP\\bob",
                udid="02" * 20,
                process_name="curl",
                dst_hostname="example.com",
                src_addr="2001:db8::2",
                dst_addr="2001:db8::99",
            ),
            flow(
                T10 + 2,
                user="CORP\\bob",
                vpn_user="carol",
                vpn_session="s9",
                process_name="chrome.exe",
                dst_hostname="api.example.org",
            ),
        ],
    )

    def users(**kw: object) -> list[str | None]:
        return [f.user for f in all_flows(runner, store, FlowFilter(**kw))]  # type: ignore[arg-type]

    assert users(user="CORP\\alice") == ["CORP\\alice"]
    assert users(user="carol") == ["CORP\\bob"]
    assert users(udid=("02" * 20).upper()) == ["CORP\\bob"]
    assert users(process="chrome.exe") == ["CORP\\bob", "CORP\\alice"]
    assert users(host="WWW.example.com") == ["CORP\\alice"]
    assert users(host="*.example.com") == ["CORP\\alice"]
    assert users(host="*.EXAMPLE.org") == ["CORP\\bob"]
    assert users(host="example.com") == ["CORP\\bob"]
    assert users(address="198.51.100.7") == ["CORP\\alice"]
    assert users(address="2001:DB8:0::2") == ["CORP\\bob"]
    assert users(address="2001:db8::99") == ["CORP\\bob"]
    assert users(since=T10 + 1) == ["CORP\\bob", "CORP\\bob"]
    assert users(until=T10 + 1) == ["CORP\\alice"]
    assert users(since=T10 + 1, until=T10 + 2, user="CORP\\bob") == ["CORP\\bob"]
    assert users(host="%") == []


def test_cursor_paging_is_exact(runner: asyncio.Runner, store: Store) -> None:
    # Many rows share a time_end, so the id half of the cursor matters.
    records = [flow(T10 + i // 7, src_port=i) for i in range(100)]
    write(runner, store, records)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = runner.run(store.query_flows(FlowFilter(), cursor=cursor, limit=9))
        seen.extend(f.src_port for f in page.items)  # type: ignore[misc]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        # Rows arriving meanwhile (newer) do not disturb the pages already under way.
        write(runner, store, [flow(T10 + 1000, src_port=9999)])
    assert pages == 12
    assert len(seen) == 100
    assert sorted(seen) == list(range(100))
    times = [T10 + p // 7 for p in seen]
    assert times == sorted(times, reverse=True)


def test_cursor_is_opaque_and_checked(runner: asyncio.Runner, store: Store) -> None:
    assert decode_cursor(encode_cursor(12.5, 7)) == (12.5, 7)
    for bad in ("", "!!", "AAAA", encode_cursor(1.0, 1)[:-2]):
        with pytest.raises(ValueError, match="cursor"):
            runner.run(store.query_flows(FlowFilter(), cursor=bad))
    with pytest.raises(ValueError, match="limit"):
        runner.run(store.query_flows(FlowFilter(), limit=0))


def test_keyed_queries_span_segments(
    runner: asyncio.Runner, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Segments of 4 ids whose time ranges overlap (flows arrive out of time order), so the
    # segment-by-segment scan of keyed filters must merge and stop at the right place.
    monkeypatch.setattr(_engine, "_SEG_BITS", 2)
    runner.run(store.close())  # The writer (a child process) takes the segment size at open.
    runner.run(store.open())
    rng = random.Random(7)
    times = [T10 + rng.randrange(25) for _ in range(90)]
    records = [
        flow(
            t,
            src_port=i,
            user=f"CORP\\u{i % 2}",
            udid=f"{i % 3:02x}" * 20,
            dst_hostname=f"h{i % 5}.example.com",
            dst_addr=f"198.51.100.{i % 4}",
        )
        for i, t in enumerate(times)
    ]
    for start in range(0, len(records), 7):
        write(runner, store, records[start : start + 7])
    newest_first = sorted(range(90), key=lambda i: (times[i], i), reverse=True)
    cases: dict[FlowFilter, Callable[[int], bool]] = {
        FlowFilter(user="CORP\\u1"): lambda i: i % 2 == 1,
        FlowFilter(udid="01" * 20, since=T10 + 5): lambda i: i % 3 == 1 and times[i] >= T10 + 5,
        FlowFilter(host="*.example.com", until=T10 + 20): lambda i: times[i] < T10 + 20,
        FlowFilter(host="H3.example.com"): lambda i: i % 5 == 3,
        FlowFilter(address="198.51.100.2"): lambda i: i % 4 == 2,
        FlowFilter(address="10.8.0.2", process="nope"): lambda i: False,
    }
    for filters, wanted in cases.items():
        for limit in (1, 4, 100):
            got: list[int] = []
            cursor = None
            while True:
                page = runner.run(store.query_flows(filters, cursor=cursor, limit=limit))
                got.extend(f.src_port for f in page.items)  # type: ignore[misc]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert got == [i for i in newest_first if wanted(i)], (filters, limit)


def test_top_n(runner: asyncio.Runner, store: Store) -> None:
    write(
        runner,
        store,
        [
            flow(T10, user="A\\x", process_name="p1", dst_hostname="h1", bytes_in=10, bytes_out=5),
            flow(T10, user="A\\y", process_name="p1", dst_hostname="h2", bytes_in=100, bytes_out=0),
            flow(
                T10 + 5,
                vpn_user="alice",
                user="A\\x",
                process_name="p2",
                dst_hostname=None,
                bytes_in=None,
                bytes_out=None,
                octets=1000,
            ),
            flow(T10 + 9, user=None, process_name=None, dst_hostname="h1", bytes_in=1, bytes_out=1),
        ],
    )
    assert runner.run(store.top("user")) == [("alice", 1000), ("A\\y", 100), ("A\\x", 15)]
    assert runner.run(store.top("process", limit=1)) == [("p2", 1000)]
    assert runner.run(store.top("host")) == [("h2", 100), ("h1", 17)]
    assert runner.run(store.top("host", since=T10 + 1)) == [("h1", 2)]
    assert runner.run(store.top("user", until=T10 + 1)) == [("A\\y", 100), ("A\\x", 15)]
    with pytest.raises(ValueError, match="rank"):
        runner.run(store.top("port"))  # type: ignore[arg-type]


def test_top_n_of_one_user(runner: asyncio.Runner, store: Store) -> None:
    write(
        runner,
        store,
        [
            flow(T10, vpn_user="alice", user="A\\x", dst_hostname="h1", bytes_in=10, bytes_out=5),
            flow(T10 + 1, vpn_user="alice", dst_hostname="h2", bytes_in=100, bytes_out=0),
            flow(
                T10 + 2, user="A\\x", process_name="p1", dst_hostname="h2", bytes_in=7, bytes_out=0
            ),
            flow(T10 + 3, vpn_user="bob", process_name="p1", dst_hostname="h1", bytes_in=999),
        ],
    )
    # The user filter matches the VPN login or the NVM user, as the flow filter does.
    assert runner.run(store.top("host", user="alice")) == [("h2", 100), ("h1", 15)]
    assert runner.run(store.top("host", user="A\\x")) == [("h1", 15), ("h2", 7)]
    assert runner.run(store.top("host", user="bob")) == [("h1", 1040)]  # 999 + 41 out.
    assert runner.run(store.top("process", user="alice")) == []
    assert runner.run(store.top("host", user="alice", since=T10 + 1)) == [("h2", 100)]
    assert runner.run(store.top("user", user="nobody")) == []


def test_timeline_buckets(runner: asyncio.Runner, store: Store) -> None:
    base = 1714557600.0  # 2024-05-01T10:00:00Z, a multiple of 3600.
    write(
        runner,
        store,
        [
            flow(base + 1, vpn_user="alice", bytes_in=1, bytes_out=2),
            flow(base + 59.5, vpn_user="alice", bytes_in=10, bytes_out=0),
            flow(base + 60, vpn_user="bob", bytes_in=100, bytes_out=0),
            flow(base + 181, user="A\\alice", bytes_in=None, bytes_out=None, octets=1000),
            flow(base + 600, vpn_user="alice", bytes_in=5000, bytes_out=0),
        ],
    )
    until = base + 600  # time_end < until: the last flow is out.
    assert runner.run(store.timeline(since=base, until=until, step=60)) == [
        (int(base), 13),
        (int(base) + 60, 100),
        (int(base) + 180, 1000),
    ]
    assert runner.run(store.timeline(since=base, until=until, step=60, user="alice")) == [
        (int(base), 13)
    ]
    # Buckets stay aligned to multiples of step; flows before since are not counted.
    assert runner.run(store.timeline(since=base + 30, until=base + 3600, step=3600)) == [
        (int(base), 6110)
    ]
    # base is a multiple of 7 too: 59.5 and 60 share the bucket [56, 63); the flow at 1 is out.
    assert runner.run(store.timeline(since=base + 1.5, until=base + 200, step=7)) == [
        (int(base) + 56, 110),
        (int(base) + 175, 1000),
    ]
    with pytest.raises(ValueError, match="step"):
        runner.run(store.timeline(since=base, until=until, step=0))


def test_attribution_by_lease_history(runner: asyncio.Runner, store: Store) -> None:
    addr = "10.8.0.2"
    runner.run(
        store.record_lease(username="alice", session_id="s1", address=addr, start=T10, end=None)
    )
    # bob's lease ends alice's open one at 11:00.
    runner.run(
        store.record_lease(
            username="bob", session_id="s2", address=addr, start=T10 + HOUR, end=None
        )
    )
    runner.run(store.end_lease(session_id="s2", address=None, end=T10 + 2 * HOUR))
    write(
        runner,
        store,
        [
            flow(T10 - 60, src_port=1),
            flow(T10 + 0.5 * HOUR, src_port=2),
            flow(T10 + HOUR, src_port=3),
            flow(T10 + 1.5 * HOUR, src_port=4),
            flow(T10 + 2.5 * HOUR, src_port=5),
            flow(T10 + 0.5 * HOUR, src_port=6, src_addr="10.8.0.3", exporter="udp://10.8.0.3"),
            # The exporter's address decides, not the claimed source address: a forged flow
            # from elsewhere that claims alice's address is not hers ...
            flow(T10 + 0.5 * HOUR, src_port=7, exporter="udp://192.0.2.99"),
            # ... and alice's exporter files a flow with another source address as hers.
            flow(T10 + 0.5 * HOUR, src_port=8, src_addr="172.16.0.9"),
        ],
    )
    got = {f.src_port: (f.vpn_user, f.vpn_session) for f in all_flows(runner, store, FlowFilter())}
    assert got == {
        1: (None, None),
        2: ("alice", "s1"),
        3: ("bob", "s2"),
        4: ("bob", "s2"),
        5: (None, None),
        6: (None, None),
        7: (None, None),
        8: ("alice", "s1"),
    }
    assert runner.run(store.attribute(addr, T10 + 0.5 * HOUR)) == ("alice", "s1")
    assert runner.run(store.attribute(addr, T10 + 1.5 * HOUR)) == ("bob", "s2")
    assert runner.run(store.attribute(addr, T10 + 2.5 * HOUR)) is None
    assert runner.run(store.attribute(addr, T10 - 1)) is None
    assert sorted(f.src_port for f in all_flows(runner, store, FlowFilter(user="alice"))) == [2, 8]


def test_lease_changes_reach_later_batches(runner: asyncio.Runner, store: Store) -> None:
    addr = "2001:db8::5"
    mine = f"udp://[{addr}]"
    write(runner, store, [flow(T10, exporter=mine, src_port=1)])  # Caches "no lease".
    runner.run(
        store.record_lease(
            username="dave",
            session_id="s4",
            address="2001:DB8::5/128",
            start=T10 - HOUR,
            end=T10 + HOUR,
        )
    )
    write(runner, store, [flow(T10, exporter=mine, src_port=2)])
    runner.run(store.end_lease(session_id="s4", address=addr, end=T10 + HOUR))
    got = {f.src_port: f.vpn_user for f in all_flows(runner, store, FlowFilter())}
    assert got == {1: None, 2: "dave"}
    # The same lease recorded again is an update, not a second row.
    runner.run(
        store.record_lease(
            username="dave", session_id="s4", address=addr, start=T10 - HOUR, end=T10
        )
    )
    assert runner.run(store.attribute(addr, T10 + 1)) is None


def test_endpoints_interfaces_generic(runner: asyncio.Runner, store: Store) -> None:
    udid = "ab" * 20
    ep = EndpointRecord(
        udid=udid,
        station_name="STATION-102010",
        os_name="Mac OS X",
        os_version="10.12.6",
        os_edition="Sierra",
        manufacturer="-",
        system_type="x64",
        first_seen=T10,
        last_seen=T10,
        exporter="udp://10.8.0.2:1",
    )
    newer = EndpointRecord(
        udid=udid,
        os_version="10.13",
        first_seen=T10 + 5,
        last_seen=T10 + 5,
        exporter="udp://10.8.0.2:1",
    )
    older = EndpointRecord(
        udid=udid,
        os_version="9",
        first_seen=T10 - 5,
        last_seen=T10 - 5,
        exporter="udp://10.8.0.2:1",
    )
    other = EndpointRecord(
        udid="cd" * 20, first_seen=T10, last_seen=T10, exporter="x", os_name="Windows"
    )
    iface = InterfaceRecord(
        udid=udid,
        interface_uid=6,
        interface_index=3,
        interface_type=1,
        interface_name="en0",
        first_seen=T10,
        last_seen=T10,
        exporter="x",
        extra={"nvzFlowInterfaceDetailsList": ["a"]},
    )
    generic = GenericRecord(time=T10, exporter="x", odid=1, template_id=300, values={"a": [1]})
    write(runner, store, [ep, newer, older, other, iface, iface, generic])
    page = runner.run(store.endpoints(limit=1))
    assert [e.udid for e in page.items] == [udid]
    assert page.items[0] == EndpointRecord(
        udid=udid,
        station_name="STATION-102010",
        os_name="Mac OS X",
        os_version="10.13",
        os_edition="Sierra",
        manufacturer="-",
        system_type="x64",
        first_seen=T10 - 5,
        last_seen=T10 + 5,
        exporter="udp://10.8.0.2:1",
    )
    assert page.next_cursor is not None
    page2 = runner.run(store.endpoints(cursor=page.next_cursor, limit=1))
    assert [e.udid for e in page2.items] == ["cd" * 20]
    assert page2.next_cursor is None
    assert runner.run(store.endpoints(udid=udid.upper())).items[0].udid == udid
    assert runner.run(store.interfaces(udid)) == [iface]
    with pytest.raises(ValueError, match="cursor"):
        runner.run(store.endpoints(cursor="zz"))


def test_retention(runner: asyncio.Runner, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    day = 86400.0
    now = T10 + 100 * day
    monkeypatch.setattr(store, "_chunk", 3)  # Force several chunks.
    old = [flow(now - 40 * day + i, modules=(Module("old.dll", None),)) for i in range(10)]
    new = [flow(now - 10 * day + i, modules=(Module("new.dll", None),)) for i in range(4)]
    eps = [
        EndpointRecord(
            udid="01" * 20,
            first_seen=now - 50 * day,
            last_seen=now - 50 * day,
            exporter="x",
            os_name="a",
        ),
        EndpointRecord(
            udid="02" * 20,
            first_seen=now - 50 * day,
            last_seen=now - day,
            exporter="x",
            os_name="a",
        ),
    ]
    gen = [GenericRecord(time=now - 40 * day, exporter="x", odid=1, template_id=300)]
    write(runner, store, [*old, *new, *eps, *gen])
    runner.run(
        store.record_lease(
            username="a",
            session_id="1",
            address="10.9.0.1",
            start=now - 50 * day,
            end=now - 45 * day,
        )
    )
    runner.run(
        store.record_lease(
            username="b", session_id="2", address="10.9.0.2", start=now - 50 * day, end=None
        )
    )
    deleted = runner.run(store.enforce_retention(30, now))
    assert deleted == 10 + 1 + 1 + 1 + 1  # flows, module set, generic, endpoint, lease
    left = all_flows(runner, store, FlowFilter())
    assert len(left) == 4
    assert all(f.modules == (Module("new.dll", None),) for f in left)
    assert [e.udid for e in runner.run(store.endpoints()).items] == ["02" * 20]
    assert runner.run(store.attribute("10.9.0.2", now)) == ("b", "2")
    assert runner.run(store.enforce_retention(30, now)) == 0
    with pytest.raises(ValueError, match="positive"):
        runner.run(store.enforce_retention(0, now))


def test_templates_and_exporter_stats(runner: asyncio.Runner, store: Store) -> None:
    assert runner.run(store.load_templates()) == []
    snapshot: list[dict[str, JsonValue]] = [
        {
            "exporter": "udp://10.8.0.2:50000",
            "odid": 127,
            "template_id": 267,
            "fields": [[0, 4, 1], [9, 12332, 20]],
            "learned": 1.5,
        },
        {"exporter": "udp://[2001:db8::1]:1", "odid": 1, "template_id": 256, "fields": []},
    ]
    runner.run(store.save_templates(snapshot))
    assert runner.run(store.load_templates()) == snapshot
    runner.run(store.save_templates(snapshot[:1]))
    assert runner.run(store.load_templates()) == snapshot[:1]
    assert runner.run(store.exporter_stats()) == {}
    runner.run(store.save_exporter_stats({"a": {"messages": 3}, "b": {"messages": 1}}))
    runner.run(store.save_exporter_stats({"a": {"messages": 5, "malformed": 1}}))
    assert runner.run(store.exporter_stats()) == {
        "a": {"messages": 5, "malformed": 1},
        "b": {"messages": 1},
    }


def test_concurrent_reader_while_writing(runner: asyncio.Runner, store: Store) -> None:
    async def scenario() -> list[int]:
        counts: list[int] = []
        done = asyncio.Event()

        async def writer() -> None:
            for batch in range(20):
                await store.write_batch([flow(T10 + batch, src_port=i) for i in range(500)])
                await asyncio.sleep(0)
            await store.flush()
            done.set()

        async def reader() -> None:
            while not done.is_set():
                page = await store.query_flows(FlowFilter(), limit=1)
                counts.append(len(page.items))
                await asyncio.sleep(0.001)

        await asyncio.gather(writer(), reader(), reader())
        return counts

    counts = runner.run(scenario())
    assert counts
    assert len(runner.run(store.query_flows(FlowFilter(), limit=10000)).items) == 10000


def test_rows_written_counter(runner: asyncio.Runner, store: Store) -> None:
    write(runner, store, [flow(T10), flow(T10)])
    assert getattr(store, "rows_written") == 2  # noqa: B009
    assert getattr(store, "write_errors") == 0  # noqa: B009


def test_open_store_picks_backend(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path / "a.db")), SqliteStore)
    store = open_store(f"sqlite://{tmp_path}/b.db")
    assert isinstance(store, SqliteStore)
    assert store.path == f"{tmp_path}/b.db"
    with pytest.raises(ValueError, match="empty"):
        open_store("sqlite://")
    pg = open_store("postgresql://user:secret@localhost/db")
    assert "secret" not in repr(pg)
    assert type(pg).__name__ == "PostgresStore"


def test_closed_store_refuses(runner: asyncio.Runner, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    with pytest.raises(RuntimeError, match="not open"):
        runner.run(store.write_batch([flow(T10)]))
    with pytest.raises(RuntimeError, match="not open"):
        runner.run(store.query_flows(FlowFilter()))
    runner.run(store.close())  # Closing a store never opened is harmless.


@given(st.text(max_size=40))
def test_cursor_decoders_raise_only_value_error(text: str) -> None:
    from ocgate.nvm.store._sql import decode_key_cursor

    for decode in (decode_cursor, decode_key_cursor):
        with contextlib.suppress(ValueError):
            decode(text)


@given(st.floats(allow_nan=False), st.integers(-(2**63), 2**63 - 1))
def test_cursor_round_trip(time_end: float, row_id: int) -> None:
    assert decode_cursor(encode_cursor(time_end, row_id)) == (time_end, row_id)


def test_writer_runs_in_a_child_process_and_stops_on_close(
    runner: asyncio.Runner, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "p.db", linger=0.001)
    runner.run(store.open())
    runner.run(store.migrate())
    write(runner, store, [flow(T10)])
    proc = store._writer
    assert isinstance(proc, _process.WriterProcess)
    child = proc._process
    assert child is not None
    assert child.pid != os.getpid()
    assert child.is_alive()
    pid = child.pid or 0
    runner.run(store.close())
    with pytest.raises(ProcessLookupError):  # Stopped and reaped.
        os.kill(pid, 0)
    assert store.rows_written == 1


def test_writer_process_death_surfaces(runner: asyncio.Runner, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "d.db", linger=0.001)
    runner.run(store.open())
    runner.run(store.migrate())
    write(runner, store, [flow(T10)])
    proc = store._writer
    assert isinstance(proc, _process.WriterProcess)
    assert proc._process is not None
    os.kill(proc._process.pid or 0, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="writer"):
        runner.run(asyncio.wait_for(_flush_until_dead(store), 10.0))
    with pytest.raises(RuntimeError):
        runner.run(store.write_batch([flow(T10)]))
    runner.run(asyncio.wait_for(store.close(), 10.0))


async def _flush_until_dead(store: Store) -> None:
    for _ in range(200):  # The death is noticed asynchronously (end of file on its pipe).
        await store.flush()
        await asyncio.sleep(0.01)


def test_writer_thread_mode_still_works(runner: asyncio.Runner, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db", linger=0.001, writer_process=False)
    runner.run(store.open())
    runner.run(store.migrate())
    write(runner, store, [flow(T10)])
    assert runner.run(store.query_flows(FlowFilter())).items[0].time_end == T10
    runner.run(store.close())


def test_open_fails_on_a_bad_path(runner: asyncio.Runner, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "missing" / "x.db")
    with pytest.raises(sqlite3.Error):
        runner.run(store.open())
    runner.run(store.close())
