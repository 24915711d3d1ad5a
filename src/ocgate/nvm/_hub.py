"""Live fan-out of freshly stored flows to subscribers (the API's WebSocket stream).

Theory of operation
-------------------
The collector calls :meth:`FlowHub.publish` with every batch it has handed to the store. Publishing
never waits and never fails because of a subscriber: each :class:`Subscription` owns a bounded
queue; a record that matches the subscriber's predicate is appended if there is room and otherwise
dropped and counted in :attr:`Subscription.dropped`. Ingest speed is thus independent of the
slowest consumer.

A subscriber reads with ``async for record in subscription``. The iterator parks on a future of
the event loop it runs on; ``publish`` resolves that future directly when it runs on the same loop
and through ``loop.call_soon_threadsafe`` otherwise, so ``publish`` may be called from any thread
(for example a parsing worker). A lock guards each queue; it is held only for a few list
operations, never across an ``await``.

A predicate that raises is a bug in the subscriber, not in ingest: the exception is logged and the
subscription is closed. :meth:`Subscription.close` (or :meth:`FlowHub.close`, at shutdown) ends the
iteration; records still queued are discarded.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- the hub wakes asyncio consumers; it does no I/O itself.
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from ocgate.nvm._records import FlowRecord

__all__ = ["DEFAULT_QUEUE_SIZE", "FlowHub", "Subscription"]

DEFAULT_QUEUE_SIZE: Final = 1000
log = logging.getLogger("ocgate.nvm.hub")

FlowPredicate = Callable[[FlowRecord], bool]


class Subscription:
    """One subscriber's bounded queue of matching flows; an async iterator of :class:`FlowRecord`.

    Create it with :meth:`FlowHub.subscribe`. Counters: :attr:`delivered` (handed to the reader),
    :attr:`dropped` (refused because the queue was full).
    """

    __slots__ = (
        "_hub",
        "_lock",
        "_queue",
        "_waiter",
        "_waiter_loop",
        "closed",
        "delivered",
        "dropped",
        "maxsize",
        "predicate",
    )

    def __init__(self, hub: FlowHub, predicate: FlowPredicate, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._hub = hub
        self.predicate = predicate
        self.maxsize = maxsize
        self._queue: deque[FlowRecord] = deque()
        self._lock = threading.Lock()
        self._waiter: asyncio.Future[None] | None = None
        self._waiter_loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self.delivered = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Records queued and not read yet."""
        return len(self._queue)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> FlowRecord:
        while True:
            with self._lock:
                if self._queue:
                    self.delivered += 1
                    return self._queue.popleft()
                if self.closed:
                    raise StopAsyncIteration
                loop = asyncio.get_running_loop()
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiter, self._waiter_loop = waiter, loop
            try:
                await waiter
            finally:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = self._waiter_loop = None

    def close(self) -> None:
        """Stop the subscription: the iterator ends, queued records are discarded. Idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._queue.clear()
            wake = self._take_waiter()
        self._hub._forget(self)
        _wake(wake, _running_loop())

    def _offer(self, records: Sequence[FlowRecord]) -> _Wake | None:
        """Queue the matching records (publisher side); returns the waiter to wake, if any."""
        try:
            matching = [record for record in records if self.predicate(record)]
        except Exception:
            log.exception("flow stream predicate failed; closing the subscription")
            self.close()
            return None
        if not matching:
            return None
        with self._lock:
            if self.closed:
                return None
            room = self.maxsize - len(self._queue)
            if room < len(matching):
                self.dropped += len(matching) - max(room, 0)
                matching = matching[: max(room, 0)]
            self._queue.extend(matching)
            return self._take_waiter() if matching else None

    def _take_waiter(self) -> _Wake | None:
        waiter, loop = self._waiter, self._waiter_loop
        self._waiter = self._waiter_loop = None
        return None if waiter is None or loop is None else (waiter, loop)


_Wake = tuple["asyncio.Future[None]", asyncio.AbstractEventLoop]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake(wake: _Wake | None, current: asyncio.AbstractEventLoop | None) -> None:
    if wake is None:
        return
    waiter, loop = wake
    if loop is current:
        _resolve(waiter)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(_resolve, waiter)


class FlowHub:
    """Fan-out of stored flows to live subscribers; publishing never blocks."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self.published = 0

    @property
    def subscribers(self) -> int:
        """Number of open subscriptions."""
        return len(self._subs)

    @property
    def dropped(self) -> int:
        """Records dropped so far across the open subscriptions."""
        return sum(sub.dropped for sub in self._subs)

    def subscribe(
        self, predicate: FlowPredicate, maxsize: int = DEFAULT_QUEUE_SIZE
    ) -> Subscription:
        """A new subscription to the flows for which ``predicate`` is true.

        :param predicate: called once per published flow, on the publisher's thread; keep it cheap.
        :param maxsize: queue bound; flows beyond it are dropped and counted.
        """
        sub = Subscription(self, predicate, maxsize)
        with self._lock:
            self._subs = [*self._subs, sub]
        return sub

    def publish(self, records: Sequence[FlowRecord]) -> None:
        """Offer a batch of flows to every subscriber (non-blocking; thread-safe)."""
        if not records:
            return
        self.published += len(records)
        subs = self._subs  # Copy-on-write list: iterating it needs no lock.
        if not subs:
            return
        current = _running_loop()
        for sub in subs:
            _wake(sub._offer(records), current)

    def close(self) -> None:
        """Close every subscription (at shutdown)."""
        for sub in list(self._subs):
            sub.close()

    def _forget(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = [other for other in self._subs if other is not sub]
