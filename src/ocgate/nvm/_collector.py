"""The NVM ingest pipeline: IPFIX decoder → normalise → privacy → store batches → hub and SIEM.

Theory of operation
-------------------
:class:`Collector` is fed by the listeners (``_listeners.py``) one whole IPFIX message at a time
through :meth:`Collector.receive_message`, a synchronous call that never awaits: the message is
decoded by the sans-IO :class:`~ocgate.nvm.ipfix.IpfixCollectorCore`, the message's records are
normalised together (:class:`~ocgate.nvm._normaliser.Normaliser`, the compiled equivalent of
:func:`~ocgate.nvm._records.normalise`) and passed through the privacy policy, and survivors are
appended to the pending batch. A full batch (``batch_records``), or the linger timer, moves the
batch onto the backlog; one writer task hands backlog batches to :meth:`Store.write_batch` (which
applies back-pressure by waiting when the store's own queue is full), then to the live
:class:`~ocgate.nvm._hub.FlowHub` and to every SIEM sink (never blocking: sinks drop and count).
The backlog is bounded (``max_backlog`` records); beyond it new records are dropped and counted
as ``records_lost``, so a stalled database cannot exhaust memory. With a healthy store nothing is
ever lost: the bench checks stored == sent at 50 000 records/s.

Exporters outside the allow-list are refused by :meth:`Collector.admit` (the listeners ask before
they keep any state for a peer); refusals are counted as ``refused``. The allow-list comes from
``NvmSettings.exporter_networks`` (loopback, the VPN pools, ``nvm-allow``); an address that holds
a live VPN lease (an explicit per-user address outside the pools) is admitted too.

**Attribution.** A flow belongs to a VPN user only when the *exporter* — the source address of
the datagram or connection it came in, which the exporter cannot choose without holding it — is
that user's lease. The record's own ``src_addr`` is a claim of the exporter and decides nothing:
otherwise anyone who can reach the collector could file flows under another user. Attribution
happens twice: live, here, when a message is received, from the leases the gateway reported
through a :class:`LeasePublisher`: the lease that holds the exporter's address *at receipt* (not
at the flow's claimed time: a later holder of the address cannot claim an earlier one's past);
so the hub and the SIEM see ``vpn_user``. Flows left unattributed are looked up by the store
writer in the whole lease history, by the exporter's address at the flow's start (``Store``
semantics: what a restarted collector, which missed the lease events, still gets right). The
lease events themselves are written to the store in order by the publisher's task.

Background duties (one task each, all stopped by :meth:`Collector.stop`): persist the template
cache when it changed (``save_templates``; restored by :meth:`Collector.start`, so data arriving
after a restart decodes without waiting a day for a template refresh); persist exporter counters
that changed (``save_exporter_stats``); run the decoder's timer; enforce retention daily.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- the pipeline's tasks; decoding itself is sans-IO.
import bisect
import contextlib
import dataclasses
import ipaddress
import json
import logging
import time  # noqa: TID251 -- default wall clock of the background tasks.
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from ocgate.errors import BadIpfix
from ocgate.nvm._hub import FlowHub
from ocgate.nvm._normaliser import Normaliser
from ocgate.nvm._privacy import PrivacyPolicy
from ocgate.nvm._records import FlowRecord, JsonValue, Normalised, format_exporter, normalise
from ocgate.nvm._siem import Sink
from ocgate.nvm.ipfix import (
    DataRecord,
    ExporterKey,
    IpfixCollectorCore,
    MessageRejected,
    RecordsDecoded,
    StoredTemplate,
    TemplateLearned,
    TemplateWithdrawn,
)
from ocgate.nvm.store import Store

__all__ = ["Collector", "CollectorStats", "LeasePublisher"]

log = logging.getLogger("ocgate.nvm")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_DAY: Final = 86400.0
_LEASE_GRACE: Final = 3600.0
"""Ended leases stay in the live map this long, for flows reported after the tunnel went down."""
_MAX_LIVE_LEASES: Final = 65536


@dataclass(frozen=True, slots=True)
class CollectorStats:
    """Pipeline counters (a snapshot).

    :param messages: messages handed to the decoder.
    :param refused: datagrams / connections refused by the allow-list.
    :param records_decoded: data records the decoder produced.
    :param records_queued: records handed on for storage.
    :param records_written: records accepted by ``Store.write_batch``.
    :param records_private: records the privacy policy removed.
    :param records_lost: records dropped because the backlog was full or a write failed.
    :param normalise_errors: records that could not be normalised (a bug; logged).
    :param rejected: malformed messages (the decoder's per-exporter ``malformed`` summed).
    """

    messages: int = 0
    refused: int = 0
    records_decoded: int = 0
    records_queued: int = 0
    records_written: int = 0
    records_private: int = 0
    records_lost: int = 0
    normalise_errors: int = 0
    rejected: int = 0


class _Closeable(Protocol):
    async def close(self) -> None: ...


_LeaseItem = tuple[str, dict[str, object]]


class LeasePublisher:
    """What the gateway calls on tunnel up / down; writes lease history into the NVM store.

    Calls never block and never raise: events are queued (bounded, oldest dropped and counted)
    and written in order by a task once a collector has :meth:`attach`-ed a store. Call from the
    event loop thread.

    :param max_pending: events held while no store is attached or the store is slow.
    """

    def __init__(self, *, max_pending: int = 100_000) -> None:
        self._pending: deque[_LeaseItem] = deque()
        self._max = max_pending
        self._store: Store | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[str, dict[str, object]], None]] = []
        self._drained = asyncio.Event()
        self.dropped = 0
        self.written = 0
        self.errors = 0

    def lease_started(
        self,
        username: str,
        session_id: str,
        address: str,
        start: float,
        *,
        device: tuple[str, str, str] = ("", "", ""),
    ) -> None:
        """``address`` (IPv4 or IPv6 text) was leased to ``username`` at ``start`` (epoch s), on
        the ``device`` the login described (platform, computer name, unique id)."""
        args = {"username": username, "session_id": session_id, "address": address}
        self._put("start", {**args, "start": start, "device": device})

    def lease_ended(self, username: str, session_id: str, address: str | None, end: float) -> None:
        """The lease of ``address`` (``None``: every address of the session) ended at ``end``."""
        self._put(
            "end", {"username": username, "session_id": session_id, "address": address, "end": end}
        )

    def _put(self, kind: str, args: dict[str, object]) -> None:
        for listener in self._listeners:
            listener(kind, args)
        if len(self._pending) >= self._max:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append((kind, args))
        if self._wake is not None:
            self._wake.set()

    def add_listener(self, listener: Callable[[str, dict[str, object]], None]) -> None:
        """Also tell ``listener(kind, args)`` about each event, synchronously (queued ones now)."""
        for kind, args in self._pending:
            listener(kind, args)
        self._listeners.append(listener)

    async def wait_written(self, seconds: float = 10.0) -> None:
        """Wait (up to ``seconds``) until every queued event has been written."""
        if self._pending and self._task is not None and not self._task.done():
            self._drained.clear()
            async with asyncio.timeout(seconds):
                await self._drained.wait()

    def attach(self, store: Store) -> None:
        """Start writing the queued and future events to ``store`` (in the running loop)."""
        self._store = store
        self._wake = asyncio.Event()
        self._wake.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nvm-leases")

    async def detach(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await self.wait_written(1.0)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._store = None

    async def _run(self) -> None:
        assert self._wake is not None  # Set by attach().
        assert self._store is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                kind, args = self._pending[0]
                try:
                    await self._write(self._store, kind, args)
                    self.written += 1
                except Exception:
                    self.errors += 1
                    log.exception("nvm: lease event %s could not be stored", kind)
                self._pending.popleft()
            self._drained.set()

    @staticmethod
    async def _write(store: Store, kind: str, args: dict[str, object]) -> None:
        if kind == "start":
            await store.record_lease(
                username=str(args["username"]),
                session_id=str(args["session_id"]),
                address=str(args["address"]),
                start=float(args["start"]),  # type: ignore[arg-type]
                end=None,
                device=_device_claims(args.get("device")),
            )
        else:
            address = args["address"]
            await store.end_lease(
                session_id=str(args["session_id"]),
                address=None if address is None else str(address),
                end=float(args["end"]),  # type: ignore[arg-type]
            )


def _device_claims(value: object) -> tuple[str, str, str]:
    if isinstance(value, tuple) and len(value) == 3:
        return (str(value[0]), str(value[1]), str(value[2]))
    return ("", "", "")


@dataclass(slots=True)
class _LiveLease:
    start: float
    end: float | None
    username: str
    session_id: str


class _LiveLeases:
    """Recent leases by address (from the publisher), for attribution before storage."""

    def __init__(self) -> None:
        self._by_addr: dict[str, list[_LiveLease]] = {}

    def __bool__(self) -> bool:
        return bool(self._by_addr)

    def event(self, kind: str, args: dict[str, object]) -> None:
        address = args.get("address")
        if kind == "start" and isinstance(address, str):
            key = _canonical(address)
            leases = self._by_addr.setdefault(key, [])
            start = float(args["start"])  # type: ignore[arg-type]
            for lease in leases:
                if lease.end is None and lease.start < start:
                    lease.end = start
            bisect.insort(
                leases,
                _LiveLease(start, None, str(args["username"]), str(args["session_id"])),
                key=lambda lease: lease.start,
            )
            if len(self._by_addr) > _MAX_LIVE_LEASES:
                self._by_addr.pop(next(iter(self._by_addr)))
        elif kind == "end":
            end = float(args["end"])  # type: ignore[arg-type]
            targets = [_canonical(address)] if isinstance(address, str) else list(self._by_addr)
            for key in targets:
                for lease in self._by_addr.get(key, ()):
                    if lease.session_id == args["session_id"] and lease.end is None:
                        lease.end = end

    def holds(self, address: str) -> bool:
        """Whether ``address`` (canonical) has a lease that has not ended."""
        return any(lease.end is None for lease in self._by_addr.get(address, ()))

    def lookup(self, address: str, at: float) -> _LiveLease | None:
        leases = self._by_addr.get(address)
        if not leases:
            return None
        for lease in reversed(leases):
            if lease.start <= at and (lease.end is None or at < lease.end):
                return lease
        return None

    def prune(self, now: float) -> None:
        for key in list(self._by_addr):
            kept = [x for x in self._by_addr[key] if x.end is None or x.end > now - _LEASE_GRACE]
            if kept:
                self._by_addr[key] = kept
            else:
                del self._by_addr[key]


def _attributed(record: Normalised, lease: _LiveLease) -> Normalised:
    """``record`` filed under ``lease`` (flows only; the others carry no VPN user)."""
    if not isinstance(record, FlowRecord) or record.vpn_user:
        return record
    return dataclasses.replace(record, vpn_user=lease.username, vpn_session=lease.session_id)


def _canonical(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.compressed


class Collector:
    """The ingest pipeline of one collector process (see the module docstring).

    :param store: an opened, migrated store.
    :param privacy: applied to every record before storage and export.
    :param hub: live feed; records are published after they are handed to the store.
    :param sinks: SIEM sinks (started and stopped with the collector).
    :param allow: exporter networks; empty allows every source (a library default for tests and
        benches: the settings never give an empty list, see ``NvmSettings.exporter_networks``).
    :param retention_days: delete data older than this (0: keep forever).
    :param core: the decoder (a default one with persisted templates when ``None``).
    :param batch_records: records per store batch.
    :param linger: seconds a partial batch waits before it is written.
    :param max_backlog: records waiting for the store before new ones are dropped.
    :param stats_interval: seconds between exporter counter saves.
    :param template_interval: seconds between template cache saves (when changed).
    :param clock: wall clock (seconds since the epoch).
    """

    def __init__(
        self,
        *,
        store: Store,
        privacy: PrivacyPolicy | None = None,
        hub: FlowHub | None = None,
        sinks: Sequence[Sink] = (),
        allow: Sequence[IPNetwork] = (),
        retention_days: float = 0,
        core: IpfixCollectorCore | None = None,
        batch_records: int = 5000,
        linger: float = 0.1,
        max_backlog: int = 1_000_000,
        stats_interval: float = 60.0,
        template_interval: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.privacy = privacy or PrivacyPolicy.default()
        self.hub = hub or FlowHub()
        self.sinks = list(sinks)
        self.allow = tuple(allow)
        self.retention_days = retention_days
        self.core = core or IpfixCollectorCore()
        self.batch_records = batch_records
        self.linger = linger
        self.max_backlog = max_backlog
        self.stats_interval = stats_interval
        self.template_interval = template_interval
        self.clock = clock
        self._c: dict[str, int] = dict.fromkeys(
            (f.name for f in dataclasses.fields(CollectorStats)), 0
        )
        self._normaliser = Normaliser()
        self._pending: list[Normalised] = []
        self._pending_since: float | None = None
        self._backlog: deque[list[Normalised]] = deque()
        self._backlog_records = 0
        self._wake_writer = asyncio.Event()
        self._writer_idle = asyncio.Event()
        self._writer_idle.set()
        self._templates_dirty = False
        self._saved_stats: dict[str, dict[str, JsonValue]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._leases = _LiveLeases()
        self._publisher: LeasePublisher | None = None
        self._allowed_cache: dict[str, bool] = {}
        self.listeners: _Closeable | None = None
        """The sockets feeding this collector (closed first by :meth:`close`)."""
        self.owns_store = False
        """Whether :meth:`close` closes the store too."""

    # --- The verbs the listeners use ------------------------------------------------------------

    def admit(self, address: str) -> bool:
        """Whether ``address`` may export to us (counted as ``refused`` when not).

        Allowed: an address in :attr:`allow`, or one that holds a live VPN lease.
        """
        if not self.allow:
            return True
        allowed = self._allowed_cache.get(address)
        if allowed is None:
            try:
                ip = ipaddress.ip_address(address.partition("%")[0])
            except ValueError:
                allowed = False
            else:
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                allowed = any(ip in net for net in self.allow)
            if len(self._allowed_cache) > 65536:
                self._allowed_cache.clear()
            self._allowed_cache[address] = allowed
        if not allowed and self._leases and self._leases.holds(_canonical(address)):
            return True
        if not allowed:
            self._c["refused"] += 1
        return allowed

    def receive_message(self, data: bytes, exporter: ExporterKey, now: float) -> None:
        """Decode one IPFIX message and queue its records; never raises on peer input.

        :param data: exactly one message (a datagram, or one cut from a TCP stream).
        :param exporter: the transport session it came from.
        :param now: wall clock seconds.
        """
        self._c["messages"] += 1
        core = self.core
        core.receive_message(data, exporter, now)
        while (event := core.next_event()) is not None:
            if isinstance(event, RecordsDecoded):
                self._records(event, now)
            elif isinstance(event, TemplateLearned | TemplateWithdrawn):
                self._templates_dirty = True
                if isinstance(event, TemplateLearned) and event.redefined:
                    log.info(
                        "nvm: %s redefined template %d (domain %d)",
                        format_exporter(event.exporter),
                        event.template_id,
                        event.observation_domain_id,
                    )
            elif isinstance(event, MessageRejected):
                self._c["rejected"] += 1
                log.debug("nvm: message from %s rejected: %s", event.exporter, event.reason)
        if self._pending and self._pending_since is None:
            self._pending_since = now
        if len(self._pending) >= self.batch_records:
            self._cut()

    def forget_exporter(self, exporter: ExporterKey) -> None:
        """Drop an exporter's decoder state (a TCP session ended)."""
        self.core.forget_exporter(exporter)
        self._templates_dirty = True

    def _records(self, event: RecordsDecoded, now: float) -> None:
        counts = self._c
        records = event.records
        counts["records_decoded"] += len(records)
        normalised: list[Normalised] = []
        try:
            self._normaliser.extend(normalised, records)
        except Exception:
            normalised = self._one_by_one(records)
        if self._leases and records:
            # One event is one exporter's (a message, or the sets buffered for one template).
            lease = self._leases.lookup(_canonical(records[0].exporter.address), now)
            if lease is not None:
                normalised = [_attributed(r, lease) for r in normalised]
        pending = self._pending
        apply = self.privacy.apply
        private = 0
        for record in normalised:
            try:
                kept = apply(record)
            except Exception:
                counts["normalise_errors"] += 1
                log.exception("nvm: the privacy policy failed on a record")
                continue
            if kept is None:
                private += 1
            else:
                pending.append(kept)
        if private:
            counts["records_private"] += private

    def _one_by_one(self, records: Sequence[DataRecord]) -> list[Normalised]:
        """The reference path, record by record, counting and logging the failures (bugs)."""
        normalised: list[Normalised] = []
        for record in records:
            try:
                normalised.append(normalise(record))
            except Exception:
                self._c["normalise_errors"] += 1
                log.exception(
                    "nvm: a record could not be normalised (template %d)", record.template_id
                )
        return normalised

    def _cut(self) -> None:
        """Move the pending batch onto the backlog (or drop it if the backlog is full)."""
        batch, self._pending = self._pending, []
        self._pending_since = None
        if not batch:
            return
        if self._backlog_records + len(batch) > self.max_backlog:
            self._c["records_lost"] += len(batch)
            return
        self._backlog.append(batch)
        self._backlog_records += len(batch)
        self._c["records_queued"] += len(batch)
        self._writer_idle.clear()
        self._wake_writer.set()

    # --- Statistics -----------------------------------------------------------------------------

    def stats(self) -> CollectorStats:
        """The pipeline counters."""
        return CollectorStats(**self._c)

    def exporter_stats(self) -> dict[str, dict[str, JsonValue]]:
        """Per-exporter decoder counters, keyed ``transport://address:port``."""
        return {
            format_exporter(key): dict(dataclasses.asdict(value))
            for key, value in self.core.stats().items()
        }

    # --- Lifecycle ------------------------------------------------------------------------------

    async def start(self, *, lease_events: LeasePublisher | None = None) -> None:
        """Restore templates, start the background tasks, sinks and the lease writer."""
        restored = await self._restore_templates()
        if restored:
            log.info("nvm: restored %d templates", restored)
        loop = asyncio.get_running_loop()
        for name, coro in (
            ("nvm-writer", self._writer()),
            ("nvm-timer", self._timer()),
            ("nvm-persist", self._persist()),
            ("nvm-retention", self._retention()),
        ):
            self._tasks.append(loop.create_task(coro, name=name))
        for sink in self.sinks:
            sink.start()
        if lease_events is not None:
            self._publisher = lease_events
            lease_events.add_listener(self._leases.event)
            lease_events.attach(self.store)
            try:
                await lease_events.wait_written()
            except TimeoutError:
                log.warning("nvm: lease history is slow to write; attribution may lag")

    async def flush(self) -> None:
        """Write everything received so far to the store and wait for the commit."""
        self._cut()
        await self._writer_idle.wait()
        await self.store.flush()

    async def stop(self) -> None:
        """Flush, persist templates and counters, stop every task and sink (not the store)."""
        try:
            await asyncio.wait_for(self.flush(), 30.0)
        except TimeoutError:
            log.warning("nvm: %d records not flushed at shutdown", self._backlog_records)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._publisher is not None:
            await self._publisher.detach()
            self._publisher = None
        await self.save_state()
        for sink in self.sinks:
            await sink.drain(2.0)
            await sink.stop()

    async def close(self) -> None:
        """Close the listeners, :meth:`stop`, then close the store if it is ours."""
        if self.listeners is not None:
            await self.listeners.close()
            self.listeners = None
        await self.stop()
        if self.owns_store:
            self.owns_store = False
            await self.store.close()

    async def save_state(self) -> None:
        """Persist the template cache and the exporter counters now."""
        await self._save_templates()
        await self._save_stats()

    # --- Background tasks -----------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            if not self._backlog:
                self._writer_idle.set()
                self._wake_writer.clear()
                await self._wake_writer.wait()
                continue
            batch = self._backlog[0]
            try:
                await self.store.write_batch(batch)
            except Exception:
                self._c["records_lost"] += len(batch)
                log.exception("nvm: a batch of %d records could not be queued", len(batch))
            else:
                self._c["records_written"] += len(batch)
            self._backlog.popleft()
            self._backlog_records -= len(batch)
            flows = [r for r in batch if isinstance(r, FlowRecord)]
            if flows:
                self.hub.publish(flows)
            for sink in self.sinks:
                sink.offer(batch)

    async def _timer(self) -> None:
        while True:
            now = self.clock()
            deadline = self.core.get_timer()
            if deadline is not None and deadline <= now:
                self.core.handle_timer(now)
            if self._pending_since is not None and now - self._pending_since >= self.linger:
                self._cut()
            await asyncio.sleep(self.linger / 2)

    async def _persist(self) -> None:
        last_stats = self.clock()
        while True:
            await asyncio.sleep(self.template_interval)
            try:
                if self._templates_dirty:
                    await self._save_templates()
                if self.clock() - last_stats >= self.stats_interval:
                    last_stats = self.clock()
                    await self._save_stats()
                    self._leases.prune(last_stats)
            except Exception:
                log.exception("nvm: saving collector state failed")

    async def _retention(self) -> None:
        if self.retention_days <= 0:
            return
        while True:
            try:
                deleted = await self.store.enforce_retention(self.retention_days, self.clock())
                if deleted:
                    log.info("nvm: retention removed %d rows", deleted)
            except Exception:
                log.exception("nvm: retention failed")
            await asyncio.sleep(_DAY / 4)

    async def _save_templates(self) -> None:
        self._templates_dirty = False
        snapshot = [json.loads(t.to_json()) for t in self.core.template_cache.snapshot()]
        await self.store.save_templates(snapshot)

    async def _restore_templates(self) -> int:
        stored: list[StoredTemplate] = []
        for item in await self.store.load_templates():
            try:
                stored.append(StoredTemplate.from_json(json.dumps(item)))
            except BadIpfix as exc:
                log.warning("nvm: skipping a persisted template: %s", exc)
        return self.core.template_cache.restore(stored)

    async def _save_stats(self) -> None:
        current = self.exporter_stats()
        changed: Mapping[str, Mapping[str, JsonValue]] = {
            name: values
            for name, values in current.items()
            if self._saved_stats.get(name) != values
        }
        if changed:
            await self.store.save_exporter_stats(changed)
            self._saved_stats.update(current)
