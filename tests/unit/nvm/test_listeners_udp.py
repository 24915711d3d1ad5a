"""The UDP listener: bursts drained per wake-up, allow-list, close."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path

from nvm_collector_lib import DATA_267, TEMPLATES, opened_store, wait_for, wait_messages

from ocgate.nvm._collector import Collector
from ocgate.nvm._config import ListenAddress
from ocgate.nvm._listeners import _UDP_BURST, Listeners

LOOPBACK = ListenAddress("udp", "127.0.0.1", 0)


def test_a_burst_larger_than_one_wakeup_is_read_completely(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store, linger=0.01)
            await collector.start()
            listeners = Listeners(collector)
            count = 2 * _UDP_BURST + 7
            try:
                bound = await listeners.add_udp(LOOPBACK)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.sendto(TEMPLATES, ("127.0.0.1", bound.port))
                    for _ in range(count):  # All queued before the loop runs again.
                        sock.sendto(DATA_267, ("127.0.0.1", bound.port))
                await wait_messages(collector, count + 1)
                await collector.flush()
            finally:
                await listeners.close()
                await collector.stop()
            stats = collector.stats()
            assert stats.records_written == count
            assert stats.records_lost == 0
            assert listeners.receive_buffer_sizes() == []  # Closed.

    asyncio.run(scenario())


def test_udp_allow_list_refuses_before_decoding(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store, allow=[ipaddress.ip_network("192.0.2.0/24")])
            listeners = Listeners(collector)
            try:
                bound = await listeners.add_udp(LOOPBACK)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    for _ in range(3):
                        sock.sendto(TEMPLATES, ("127.0.0.1", bound.port))
                await wait_for(lambda: collector.stats().refused == 3)
            finally:
                await listeners.close()
            assert collector.stats().messages == 0

    asyncio.run(scenario())
