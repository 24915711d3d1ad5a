"""The live hub: fan-out, filtering, bounded queues that drop and count, wake-ups across threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from nvm_api_data import flow

from ocgate.nvm._hub import FlowHub, Subscription
from ocgate.nvm._records import FlowRecord


async def take(sub: Subscription, count: int) -> list[FlowRecord]:
    got: list[FlowRecord] = []
    async with asyncio.timeout(1.0):
        async for record in sub:
            got.append(record)
            if len(got) == count:
                break
    return got


def test_publish_reaches_matching_subscribers_only() -> None:
    async def scenario() -> None:
        hub = FlowHub()
        everything = hub.subscribe(lambda r: True)
        only_dns = hub.subscribe(lambda r: r.dst_port == 53)
        assert hub.subscribers == 2
        records = [flow(0, dst_port=53), flow(1, dst_port=443), flow(2, dst_port=53)]
        hub.publish(records)
        assert await take(everything, 3) == records
        assert await take(only_dns, 2) == [records[0], records[2]]
        assert only_dns.pending == 0
        assert everything.delivered == 3
        assert hub.published == 3

    asyncio.run(scenario())


def test_reader_waiting_before_publish_is_woken() -> None:
    async def scenario() -> None:
        hub = FlowHub()
        sub = hub.subscribe(lambda r: True)
        reader = asyncio.create_task(take(sub, 1))
        await asyncio.sleep(0.01)
        hub.publish([flow(0)])
        assert await reader == [flow(0)]

    asyncio.run(scenario())


def test_slow_subscriber_drops_and_counts_without_blocking_publish() -> None:
    async def scenario() -> None:
        hub = FlowHub()
        slow = hub.subscribe(lambda r: True, maxsize=10)
        fast = hub.subscribe(lambda r: True, maxsize=10_000)
        batch = [flow(i) for i in range(100)]
        started = time.perf_counter()
        for _ in range(50):
            hub.publish(batch)  # Nobody reads meanwhile.
        assert time.perf_counter() - started < 1.0
        assert slow.pending == 10
        assert slow.dropped == 5000 - 10
        assert fast.pending == 5000
        assert fast.dropped == 0
        assert hub.dropped == 4990
        assert await take(slow, 10) == batch[:10]  # The oldest are kept, the overflow dropped.

    asyncio.run(scenario())


def test_partial_room_keeps_the_first_records() -> None:
    async def scenario() -> None:
        hub = FlowHub()
        sub = hub.subscribe(lambda r: True, maxsize=3)
        hub.publish([flow(0), flow(1)])
        hub.publish([flow(2), flow(3), flow(4)])
        assert sub.dropped == 2
        assert [r.time_end for r in await take(sub, 3)] == [flow(i).time_end for i in range(3)]

    asyncio.run(scenario())


def test_close_ends_iteration_and_unsubscribes() -> None:
    async def scenario() -> None:
        hub = FlowHub()
        sub = hub.subscribe(lambda r: True)
        reader = asyncio.create_task(take(sub, 5))
        await asyncio.sleep(0.01)
        sub.close()
        sub.close()  # Idempotent.
        assert await reader == []
        assert hub.subscribers == 0
        hub.publish([flow(0)])
        assert sub.pending == 0

    asyncio.run(scenario())


def test_hub_close_closes_every_subscription() -> None:
    async def scenario() -> None:
        hub = FlowHub()
        subs = [hub.subscribe(lambda r: True) for _ in range(3)]
        hub.publish([flow(0)])
        hub.close()
        assert hub.subscribers == 0
        for sub in subs:
            assert sub.closed
            assert await take(sub, 1) == []  # Queued records are discarded.

    asyncio.run(scenario())


def test_failing_predicate_closes_only_its_subscription(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        hub = FlowHub()

        def broken(record: FlowRecord) -> bool:
            raise KeyError("bug")

        bad = hub.subscribe(broken)
        good = hub.subscribe(lambda r: True)
        hub.publish([flow(0)])
        assert bad.closed
        assert await take(good, 1) == [flow(0)]
        assert hub.subscribers == 1

    asyncio.run(scenario())
    assert "predicate failed" in caplog.text


def test_publish_from_another_thread_wakes_the_loop() -> None:
    async def scenario() -> None:
        hub = FlowHub()
        sub = hub.subscribe(lambda r: True)
        reader = asyncio.create_task(take(sub, 20))
        await asyncio.sleep(0.01)

        def producer() -> None:
            for i in range(20):
                hub.publish([flow(i)])

        thread = threading.Thread(target=producer)
        thread.start()
        got = await reader
        thread.join()
        assert [r.time_end for r in got] == [flow(i).time_end for i in range(20)]

    asyncio.run(scenario())


def test_empty_publish_and_bad_maxsize() -> None:
    hub = FlowHub()
    hub.publish([])
    assert hub.published == 0
    hub.publish([flow(0)])  # No subscriber: nothing to do.
    with pytest.raises(ValueError, match="maxsize"):
        hub.subscribe(lambda r: True, maxsize=0)
