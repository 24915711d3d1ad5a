"""TCP and UDP listener adapters on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path

from nvm_collector_lib import DATA_262, DATA_267, TEMPLATES, opened_store, wait_for

from ocgate.nvm._collector import Collector
from ocgate.nvm._config import ListenAddress, NvmSettings
from ocgate.nvm._listeners import RCVBUF_BYTES, Listeners, start_listeners, udp_receive_errors
from ocgate.nvm.store import FlowFilter


def test_tcp_stream_cut_anywhere_is_decoded(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store, linger=0.01)
            await collector.start()
            listeners = Listeners(collector)
            try:
                bound = await listeners.add_tcp(ListenAddress("tcp", "127.0.0.1", 0))
                _, writer = await asyncio.open_connection("127.0.0.1", bound.port)
                stream = TEMPLATES + DATA_267 + DATA_262 + DATA_267
                for start in range(0, len(stream), 7):  # Messages split across segments.
                    writer.write(stream[start : start + 7])
                    await writer.drain()
                await wait_for(lambda: collector.stats().messages == 4)
                assert listeners.tcp_sessions == 1
                writer.close()
                await writer.wait_closed()
                await wait_for(lambda: listeners.tcp_sessions == 0)
                await collector.flush()
            finally:
                await listeners.close()
                await collector.stop()
            assert collector.stats().records_written == 3
            # The TCP session ended: its templates are gone (RFC 7011 §8).
            assert len(collector.core.template_cache) == 0
            page = await store.query_flows(FlowFilter())
            assert len(page.items) == 2
            assert page.items[0].exporter.startswith("tcp://127.0.0.1:")

    asyncio.run(scenario())


def test_tcp_malformed_stream_closes_only_that_connection(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store, linger=0.01)
            await collector.start()
            listeners = Listeners(collector)
            try:
                bound = await listeners.add_tcp(ListenAddress("tcp", "127.0.0.1", 0))
                bad_reader, bad = await asyncio.open_connection("127.0.0.1", bound.port)
                _, good = await asyncio.open_connection("127.0.0.1", bound.port)
                bad.write(b"\x00\x09\x00\x10" + bytes(12))  # NetFlow v9 header: not IPFIX.
                good.write(TEMPLATES + DATA_267)
                assert await asyncio.wait_for(bad_reader.read(), 5) == b""  # Closed on us.
                await wait_for(lambda: collector.stats().messages == 2)
                await collector.flush()
                good.close()
                bad.close()
            finally:
                await listeners.close()
                await collector.stop()
            assert listeners.tcp_malformed == 1
            assert collector.stats().records_written == 1

    asyncio.run(scenario())


def test_tcp_allow_list_and_connection_bound(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            refused = Collector(store=store, allow=[ipaddress.ip_network("192.0.2.0/24")])
            listeners = Listeners(refused)
            bound = await listeners.add_tcp(ListenAddress("tcp", "127.0.0.1", 0))
            reader, writer = await asyncio.open_connection("127.0.0.1", bound.port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert refused.stats().refused == 1
            await listeners.close()

            collector = Collector(store=store)
            bounded = Listeners(collector, max_connections=1)
            bound = await bounded.add_tcp(ListenAddress("tcp", "127.0.0.1", 0))
            _, first = await asyncio.open_connection("127.0.0.1", bound.port)
            await wait_for(lambda: bounded.tcp_sessions == 1)
            second_reader, second = await asyncio.open_connection("127.0.0.1", bound.port)
            assert await asyncio.wait_for(second_reader.read(), 5) == b""
            first.close()
            second.close()
            await bounded.close()

    asyncio.run(scenario())


def test_tcp_connections_per_address_are_bounded(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store)
            listeners = Listeners(collector, max_connections_per_address=2)
            bound = await listeners.add_tcp(ListenAddress("tcp", "127.0.0.1", 0))
            writers = []
            for _ in range(2):
                _, writer = await asyncio.open_connection("127.0.0.1", bound.port)
                writers.append(writer)
            await wait_for(lambda: listeners.tcp_sessions == 2)
            reader, third = await asyncio.open_connection("127.0.0.1", bound.port)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # A third from one address.
            _, other = await asyncio.open_connection(
                "127.0.0.1", bound.port, local_addr=("127.0.0.2", 0)
            )
            await wait_for(lambda: listeners.tcp_sessions == 3)  # Another address is welcome.
            writers[0].close()
            await wait_for(lambda: listeners.tcp_by_address == {"127.0.0.1": 1, "127.0.0.2": 1})
            for writer in (*writers[1:], third, other):
                writer.close()
            await wait_for(lambda: listeners.tcp_sessions == 0)
            assert listeners.tcp_by_address == {}
            await listeners.close()

    asyncio.run(scenario())


def test_start_listeners_from_settings_and_receive_buffer(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store)
            settings = NvmSettings(
                listen=(
                    ListenAddress("udp", "127.0.0.1", 0),
                    ListenAddress("tcp", "127.0.0.1", 0),
                )
            )
            listeners = await start_listeners(collector, settings)
            try:
                assert [b.transport for b in listeners.bound] == ["udp", "tcp"]
                assert all(b.port > 0 for b in listeners.bound)
                sizes = listeners.receive_buffer_sizes()
                # Best effort: at least the kernel default, the full 16 MiB with privileges.
                assert sizes
                assert sizes[0] >= 200_000 or sizes[0] >= RCVBUF_BYTES
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.sendto(TEMPLATES, ("127.0.0.1", listeners.bound[0].port))
                await wait_for(lambda: collector.stats().messages == 1)
            finally:
                await listeners.close()
            errors = udp_receive_errors()
            assert errors is None or errors >= 0

    asyncio.run(scenario())
