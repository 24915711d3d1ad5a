"""The ingest pipeline: UDP on loopback → decoder → normalise → privacy → SQLite, hub, leases."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nvm_collector_lib import (
    DATA_262,
    DATA_267,
    FLOW_TIME,
    MODULES,
    TEMPLATES,
    UDID_HEX,
    nvm_messages,
    opened_store,
    wait_for,
    wait_messages,
)

from ocgate.nvm._collector import Collector, LeasePublisher
from ocgate.nvm._config import ListenAddress
from ocgate.nvm._hub import FlowHub
from ocgate.nvm._listeners import Listeners
from ocgate.nvm._privacy import Action, PrivacyPolicy
from ocgate.nvm._records import FlowRecord
from ocgate.nvm.ipfix import ExporterKey
from ocgate.nvm.store import FlowFilter, Store

LOOPBACK = ListenAddress("udp", "127.0.0.1", 0)
A = ExporterKey("udp", "10.0.0.1", 50000)
B = ExporterKey("udp", "10.0.0.2", 50000)


async def send_udp(collector: Collector, listeners: Listeners, messages: list[bytes]) -> None:
    bound = await listeners.add_udp(LOOPBACK)
    before = collector.stats().messages
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for message in messages:
            sock.sendto(message, ("127.0.0.1", bound.port))
    await wait_messages(collector, before + len(messages))
    await collector.flush()


async def flows(store: Store) -> dict[int, FlowRecord]:
    page = await store.query_flows(FlowFilter(), limit=1000)
    return {f.template_id: f for f in page.items}


def test_nvzflow_262_266_267_268_over_udp_are_stored_with_every_field(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store, linger=0.01)
            await collector.start()
            listeners = Listeners(collector)
            try:
                await send_udp(collector, listeners, nvm_messages())
            finally:
                await listeners.close()
                await collector.stop()
            stats = collector.stats()
            assert (stats.records_decoded, stats.records_written, stats.records_lost) == (4, 4, 0)
            stored = await flows(store)
            v4, v6 = stored[267], stored[268]
            # The golden values of the public sample (nvm-ipfix.md §2.4).
            assert (v4.protocol, v4.src_addr, v4.src_port, v4.dst_addr, v4.dst_port) == (
                17,
                "192.168.0.10",
                43879,
                "192.168.0.11",
                53,
            )
            assert v4.time_start == v4.time_end == FLOW_TIME
            assert (v4.user, v4.user_authority, v4.user_principal) == (
                "MYNVM\\dummy11",
                "MYNVM",
                "dummy11",
            )
            assert v4.user_account_type == 2
            assert (v4.process_account, v4.process_account_type) == (
                "NT AUTHORITY\\NETWORK SERVICE",
                1,
            )
            assert (v4.process_name, v4.parent_process_name) == ("svchost.exe", "services.exe")
            assert v4.process_hash is not None
            assert len(v4.process_hash) == 64
            assert (v4.bytes_in, v4.bytes_out) == (100, 41)
            assert (v4.dns_suffix, v4.dst_hostname, v4.interface_uid) == ("dummy.du", "Unknown", 6)
            assert [m.name for m in v4.modules] == MODULES
            assert all(m.hash is not None and len(m.hash) == 64 for m in v4.modules)
            assert v4.udid == UDID_HEX
            assert v4.odid == 127
            # The IPv6 record made with the encoder: variable-length strings and basicLists.
            assert (v6.src_addr, v6.dst_addr, v6.src_port, v6.dst_port, v6.protocol) == (
                "2001:db8::10",
                "2001:db8::443",
                50123,
                443,
                6,
            )
            assert (v6.time_start, v6.time_end) == (FLOW_TIME, FLOW_TIME + 5)
            assert (v6.process_name, v6.parent_process_name) == ("firefox.exe", "explorer.exe")
            assert (v6.bytes_in, v6.bytes_out, v6.dst_hostname) == (5000, 700, "www.example.com")
            assert [m.name for m in v6.modules] == ["a.dll", "b.dll"]
            assert [m.hash for m in v6.modules] == [
                bytes(range(32)).hex(),
                bytes(range(32, 64)).hex(),
            ]
            endpoints = (await store.endpoints()).items
            assert [
                (e.station_name, e.os_name, e.os_version, e.os_edition, e.manufacturer)
                for e in endpoints
            ] == [("STATION-102010", "Mac OS X", "10.12.6", "Sierra", "-")]
            assert endpoints[0].system_type == "x64"
            interfaces = await store.interfaces(UDID_HEX)
            assert [(i.interface_uid, i.interface_index, i.interface_name) for i in interfaces] == [
                (6, 12, "Wi-Fi")
            ]
            # Exporter counters were persisted at stop.
            saved = await store.exporter_stats()
            assert len(saved) == 1
            assert next(iter(saved.values()))["records"] == 4

    asyncio.run(scenario())


LEASED = "192.168.0.10"
"""The VPN address of the tests below; the 267 sample's flow also claims it as its source."""


def test_flow_from_a_vpn_lease_is_attributed_to_its_user(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            leases = LeasePublisher()
            # The gateway may report leases before the collector is up: they are queued.
            leases.lease_started("alice", "sess-1", LEASED, FLOW_TIME - 60)
            hub = FlowHub()
            live = hub.subscribe(lambda r: True)
            collector = Collector(store=store, hub=hub, linger=0.01)
            await collector.start(lease_events=leases)
            alice = ExporterKey.for_peer("udp", LEASED, 50000)
            try:
                collector.receive_message(TEMPLATES, alice, FLOW_TIME)
                collector.receive_message(DATA_267, alice, FLOW_TIME)
                await collector.flush()
                leases.lease_ended("alice", "sess-1", LEASED, FLOW_TIME + 60)
                leases.lease_started("bob", "sess-2", LEASED, FLOW_TIME + 120)
                await asyncio.sleep(0.05)
            finally:
                await collector.stop()
            stored = (await flows(store))[267]
            assert (stored.vpn_user, stored.vpn_session) == ("alice", "sess-1")
            assert await store.attribute(LEASED, FLOW_TIME) == ("alice", "sess-1")
            assert await store.attribute(LEASED, FLOW_TIME + 90) is None
            assert await store.attribute(LEASED, FLOW_TIME + 200) == ("bob", "sess-2")
            # The live feed already carries the attribution.
            async with asyncio.timeout(1):
                published = await anext(live)
            assert published.vpn_user == "alice"
            assert leases.written == 3

    asyncio.run(scenario())


def test_a_forged_flow_is_not_filed_under_the_user_it_names(tmp_path: Path) -> None:
    """Only the exporter's own address, a lease at receipt, makes a flow a VPN user's."""

    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            leases = LeasePublisher()
            leases.lease_started("alice", "sess-1", LEASED, FLOW_TIME - 60)
            collector = Collector(store=store, linger=0.01)
            await collector.start(lease_events=leases)
            forger = ExporterKey.for_peer("udp", "10.0.0.66", 40000)  # Holds no lease.
            alice = ExporterKey.for_peer("udp", LEASED, 50000)
            try:
                # Both send the same record, which claims alice's address as its source.
                for exporter in (forger, alice):
                    collector.receive_message(TEMPLATES, exporter, FLOW_TIME)
                    collector.receive_message(DATA_267, exporter, FLOW_TIME)
                await collector.flush()
                # Once the address is bob's, a flow claiming alice's time is still bob's.
                leases.lease_ended("alice", "sess-1", LEASED, FLOW_TIME + 60)
                leases.lease_started("bob", "sess-2", LEASED, FLOW_TIME + 120)
                await leases.wait_written()
                collector.receive_message(DATA_267, alice, FLOW_TIME + 200)
                await collector.flush()
            finally:
                await collector.stop()
            page = await store.query_flows(FlowFilter(), limit=10)
            got = sorted((f.exporter, f.src_addr, f.vpn_user or "") for f in page.items)
            assert got == [
                ("udp://10.0.0.66", LEASED, ""),
                (f"udp://{LEASED}", LEASED, "alice"),
                (f"udp://{LEASED}", LEASED, "bob"),
            ]

    asyncio.run(scenario())


def test_templates_survive_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            first = Collector(store=store, linger=0.01)
            await first.start()
            first.receive_message(TEMPLATES, A, FLOW_TIME)
            await first.stop()
        async with opened_store(tmp_path / "nvm.db") as store:
            second = Collector(store=store, linger=0.01)
            await second.start()
            assert len(second.core.template_cache) == 4
            second.receive_message(DATA_267, A, FLOW_TIME)  # No template in this run.
            second.receive_message(DATA_262, A, FLOW_TIME)
            await second.stop()
            assert second.stats().records_written == 2
            assert second.exporter_stats()["udp://10.0.0.1:50000"]["unknown_template"] == 0
            assert (await flows(store))[267].process_name == "svchost.exe"
            # Another exporter does not inherit them (scope is per transport session).
            third = Collector(store=store, linger=0.01)
            await third.start()
            third.receive_message(DATA_267, B, FLOW_TIME)
            await third.stop()
            assert third.stats().records_decoded == 0

    asyncio.run(scenario())


def test_garbage_from_one_exporter_does_not_disturb_another(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store, linger=0.01)
            await collector.start()
            collector.receive_message(TEMPLATES, A, FLOW_TIME)
            collector.receive_message(TEMPLATES, B, FLOW_TIME)
            garbage = [
                b"",
                b"\x00\x09" + bytes(30),
                DATA_267[:40],
                DATA_267[:16] + bytes(50),
                bytes(range(256)),
                TEMPLATES[:-3],
            ]
            for index, junk in enumerate(garbage):
                collector.receive_message(junk, A, FLOW_TIME)
                collector.receive_message(DATA_267, B, FLOW_TIME + index)
            # Every truncation of a real message too.
            for cut in range(len(DATA_267)):
                collector.receive_message(DATA_267[:cut], A, FLOW_TIME)
            await collector.stop()
            by_exporter = collector.exporter_stats()
            assert by_exporter["udp://10.0.0.2:50000"]["records"] == len(garbage)
            assert by_exporter["udp://10.0.0.2:50000"]["malformed"] == 0
            assert by_exporter["udp://10.0.0.1:50000"]["records"] == 0
            assert by_exporter["udp://10.0.0.1:50000"]["malformed"] >= len(garbage) - 1
            page = await store.query_flows(FlowFilter(), limit=100)
            assert len(page.items) == len(garbage)
            assert {f.exporter for f in page.items} == {"udp://10.0.0.2:50000"}
            # A's templates are intact: its next good record decodes.
            collector2 = Collector(store=store, core=collector.core, linger=0.01)
            collector2.receive_message(DATA_267, A, FLOW_TIME)
            assert collector2.stats().records_decoded == 1

    asyncio.run(scenario())


def test_allow_list_drops_and_counts(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(
                store=store, allow=[ipaddress.ip_network("10.0.0.0/8")], linger=0.01
            )
            await collector.start()
            listeners = Listeners(collector)
            try:
                bound = await listeners.add_udp(LOOPBACK)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    for message in nvm_messages():
                        sock.sendto(message, ("127.0.0.1", bound.port))
                await wait_for(lambda: collector.stats().refused >= 5)
                await collector.flush()
            finally:
                await listeners.close()
                await collector.stop()
            stats = collector.stats()
            assert (stats.refused, stats.messages, stats.records_written) == (5, 0, 0)
            assert (await store.query_flows(FlowFilter())).items == []
            assert collector.exporter_stats() == {}

    asyncio.run(scenario())


def test_admit_matches_networks_and_mapped_addresses(tmp_path: Path) -> None:
    collector = Collector(
        store=None,  # type: ignore[arg-type]  # admit() never touches the store.
        allow=[ipaddress.ip_network("10.8.0.0/16"), ipaddress.ip_network("2001:db8::/32")],
    )
    assert collector.admit("10.8.3.4")
    assert collector.admit("::ffff:10.8.3.4")
    assert collector.admit("2001:db8::1")
    assert collector.admit("fe80::1%eth0") is False
    assert not collector.admit("10.9.0.1")
    assert not collector.admit("not an address")
    assert collector.stats().refused == 3
    assert Collector(store=None).admit("192.0.2.1")  # type: ignore[arg-type]


def test_privacy_policy_applies_before_storage(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            policy = PrivacyPolicy(
                fields={"user": Action.DROP, "dst_hostname": Action.HASH},
                hmac_key=b"k" * 32,
                drop_private_destinations=False,
            )
            collector = Collector(store=store, privacy=policy, linger=0.01)
            await collector.start()
            collector.receive_message(TEMPLATES, A, FLOW_TIME)
            collector.receive_message(DATA_267, A, FLOW_TIME)
            await collector.stop()
            stored = (await flows(store))[267]
            assert stored.user is None
            assert stored.dst_hostname == policy.pseudonym("Unknown")

            dropping = Collector(
                store=store, privacy=PrivacyPolicy(drop_private_destinations=True), linger=0.01
            )
            await dropping.start()
            dropping.receive_message(TEMPLATES, B, FLOW_TIME)
            dropping.receive_message(DATA_267, B, FLOW_TIME)  # To 192.168.0.11: private.
            await dropping.stop()
            assert dropping.stats().records_private == 1

    asyncio.run(scenario())


def test_backlog_bound_drops_and_counts_when_the_store_stalls(tmp_path: Path) -> None:
    class StalledStore:
        async def write_batch(self, records: object) -> None:
            await asyncio.Event().wait()

        async def flush(self) -> None:
            pass

        async def load_templates(self) -> list[object]:
            return []

    async def scenario() -> None:
        collector = Collector(
            store=StalledStore(),  # type: ignore[arg-type]
            batch_records=1,
            max_backlog=3,
        )
        await collector.start()
        collector.receive_message(TEMPLATES, A, FLOW_TIME)
        for _ in range(10):
            collector.receive_message(DATA_267, A, FLOW_TIME)
            await asyncio.sleep(0)
        stats = collector.stats()
        assert stats.records_decoded == 10
        assert stats.records_lost == 10 - stats.records_queued
        assert stats.records_queued <= 4
        for task in collector._tasks:
            task.cancel()
        await asyncio.gather(*collector._tasks, return_exceptions=True)

    asyncio.run(scenario())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=5))
def test_receive_message_never_raises_on_garbage(messages: list[bytes]) -> None:
    collector = Collector(store=None)  # type: ignore[arg-type]  # Nothing reaches the store.
    collector.receive_message(TEMPLATES, A, 0.0)
    for data in messages:
        # Also the header of a real message followed by fuzz, to reach the set parsers.
        collector.receive_message(data, A, 0.0)
        collector.receive_message(DATA_267[:16] + data, A, 0.0)
        collector.receive_message(TEMPLATES[:20] + data, A, 0.0)
    assert collector.stats().normalise_errors == 0


@pytest.mark.parametrize("count", [1, 3])
def test_lease_publisher_queue_is_bounded(count: int) -> None:
    leases = LeasePublisher(max_pending=2)
    for i in range(count):
        leases.lease_started("u", f"s{i}", "10.0.0.1", float(i))
    assert leases.dropped == max(0, count - 2)
