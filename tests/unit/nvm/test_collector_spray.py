"""A template spray over real UDP on loopback cannot grow the collector past its memory bound.

Attack: thousands of distinct templates (and data sets for templates nobody defined, which are
buffered) from hundreds of source ports of one address, then from many addresses at once; an
honest NVM exporter keeps reporting during the spray and a new one arrives after it. The
collector is the real pipeline (listener, decoder, normaliser, SQLite store) with small global
caps so the spray reaches every one of them in seconds; the defaults scale the same bound
(``ocgate.nvm.ipfix._limits``, docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import random
import socket
import tracemalloc
from pathlib import Path

import pytest
from nvm_collector_lib import DATA_267, TEMPLATES, opened_store, wait_messages

from ocgate.nvm._collector import Collector
from ocgate.nvm._config import ListenAddress
from ocgate.nvm._listeners import Listeners
from ocgate.nvm.ipfix import (
    ExporterKey,
    FieldSpec,
    IpfixCollectorCore,
    Limits,
    Template,
    encode_message,
    encode_set,
    encode_template_set,
)
from ocgate.nvm.store import FlowFilter

pytestmark = pytest.mark.timeout(180)

LIMITS = Limits(
    max_exporters=256,
    max_domains=512,
    max_templates=800,
    max_distinct_templates=600,
    max_template_fields=12_000,
    max_buffered=1000,
    max_buffered_bytes=1 << 20,
)
SLACK = 2 << 20
"""What the rest of the pipeline may keep besides the core (caches of a few hundred addresses)."""
SPRAYER = "127.0.0.1"
HONEST = "127.0.0.2"
LATECOMER = "127.0.0.3"
ADDRESSES = [f"127.0.9.{i}" for i in range(1, 41)]


def spray_message(rng: random.Random, sequence: int) -> bytes:
    """Five new templates of 20-60 random fields, then a data set nobody can decode yet."""
    templates = []
    for _ in range(5):
        fields = tuple(
            FieldSpec(
                rng.randrange(1, 400),
                rng.choice((1, 2, 4, 8, 0xFFFF)),
                rng.choice((0, 0, 9, 29305)),
            )
            for _ in range(rng.randrange(20, 61))
        )
        templates.append(Template(rng.randrange(256, 40000), fields))
    # Never one of the sprayed template IDs, so it stays buffered.
    orphan = encode_set(rng.randrange(40000, 65536), rng.randbytes(rng.randrange(50, 1200)))
    return encode_message(
        [encode_template_set(templates), orphan], sequence=sequence, observation_domain_id=127
    )


def socket_from(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    return sock


async def send(collector: Collector, port: int, batch: list[tuple[socket.socket, bytes]]) -> None:
    """Send, then wait until the collector has taken every datagram (no socket overflow)."""
    before = collector.stats().messages + collector.stats().refused
    for sock, message in batch:
        sock.sendto(message, ("127.0.0.1", port))
    await wait_messages(collector, before + len(batch), seconds=30)


def traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_template_spray_stays_under_the_bound_and_honest_exporters_still_work(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        rng = random.Random(7011)
        async with opened_store(tmp_path / "nvm.db") as store:
            core = IpfixCollectorCore(limits=LIMITS)
            collector = Collector(
                store=store,
                core=core,
                allow=[ipaddress.ip_network("127.0.0.0/8")],
                linger=0.01,
            )
            await collector.start()
            listeners = Listeners(collector)
            sockets: list[socket.socket] = []
            try:
                port = (await listeners.add_udp(ListenAddress("udp", "127.0.0.1", 0))).port
                honest = socket_from(HONEST)
                sockets.append(honest)
                await send(collector, port, [(honest, TEMPLATES), (honest, DATA_267)])
                await collector.flush()
                written = collector.stats().records_written
                assert written == 1

                tracemalloc.start()
                baseline = traced_now()

                # 1. One address, 200 source ports, 3,000 templates.
                ports = [socket_from(SPRAYER) for _ in range(200)]
                sockets += ports
                for round_ in range(3):
                    await send(
                        collector,
                        port,
                        [(s, spray_message(rng, round_)) for s in ports],
                    )
                await send(collector, port, [(honest, DATA_267)])
                sprayer = ExporterKey("udp", SPRAYER, 0)
                assert [k for k in core.stats() if k.address == SPRAYER] == [sprayer]
                held, fields = core.template_cache.held_by_address(SPRAYER)
                assert held == LIMITS.max_templates_per_exporter
                assert fields <= LIMITS.max_fields_per_exporter
                stats = core.stats()[sprayer]
                assert stats.templates + stats.templates_refused == 3 * 200 * 5
                assert stats.templates_refused > 2900  # (Accepted: 64, and redefinitions.)
                assert core.usage().buffered <= LIMITS.max_buffered_per_exporter

                # 2. Forty addresses, two ports each, 3,200 more templates: the global caps.
                many = [socket_from(a) for a in ADDRESSES for _ in range(2)]
                sockets += many
                for round_ in range(8):
                    await send(collector, port, [(s, spray_message(rng, round_)) for s in many])
                    await send(collector, port, [(honest, DATA_267)])  # Still reporting.
                    usage = core.usage()
                    assert usage.within(LIMITS), usage
                    assert usage.memory() <= LIMITS.memory_bound()

                usage = core.usage()
                assert usage.template_fields > LIMITS.max_template_fields * 0.9  # Reached ...
                assert core.evicted > 0  # ... and room made by eviction.
                growth = traced_now() - baseline
                tracemalloc.stop()
                assert growth <= LIMITS.memory_bound() + SLACK, (growth, usage)

                # 3. Honest exporters still work: the one that kept reporting, and a newcomer.
                late = socket_from(LATECOMER)
                sockets.append(late)
                await send(collector, port, [(honest, DATA_267), (late, TEMPLATES)])
                await send(collector, port, [(late, DATA_267)])
                await collector.flush()
            finally:
                if tracemalloc.is_tracing():
                    tracemalloc.stop()
                for sock in sockets:
                    sock.close()
                await listeners.close()
                await collector.stop()
            page = await store.query_flows(FlowFilter(), limit=1000)
            by_exporter: dict[str, int] = {}
            for flow in page.items:
                by_exporter[flow.exporter] = by_exporter.get(flow.exporter, 0) + 1
            assert by_exporter == {f"udp://{HONEST}": 11, f"udp://{LATECOMER}": 1}
            assert all(f.process_name == "svchost.exe" for f in page.items)

    asyncio.run(scenario())
