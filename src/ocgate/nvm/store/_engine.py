"""The SQL store shared by the SQLite and PostgreSQL backends.

Theory of operation
-------------------
One **writer thread** owns the only writing connection and consumes a bounded queue. Items are
record batches or calls (lease changes, migrations, stats, retention chunks, flush markers).
Consecutive record batches are merged into one transaction of up to ``max_batch_rows`` rows,
waiting at most ``linger`` seconds for more; a call ends the merge window, so the rows queued
before it are committed first (a flush is an empty call). Every call runs in its own
transaction and reports back through a future.

Flows are attributed on the way in: the writer looks up the source address of each flow in the
lease history (:class:`LeaseCache`: one query per distinct address, cached until that address's
leases change; lease changes run on the same thread, so they are ordered with the batches).
``write_batch`` first reduces each flow to plain tuples (``prepare_flow``) in the caller's thread;
the writer then attributes it, swaps its context, process and destination for dimension ids
(:class:`Dimension`: in-memory, misses interned once per batch) and inserts narrow rows with one
``executemany``/``COPY``, so its time goes to the database rather than to Python.

Flow ids are reserved a segment (65,536 ids) at a time, in a transaction of their own, so several
writers on one PostgreSQL database never collide. Queries filtering on a key that has a segment
index (user, UDID, host, address) read segment groups newest first, merging by
``(time_end, id)`` and stopping once no remaining segment can hold a better row
(:func:`_keyed_flows`); other queries use the ``(time_end, id)`` index directly.

Reads run in a small thread pool, each thread holding its own connection (SQLite WAL readers do
not block the writer; PostgreSQL readers are in autocommit mode). Retention deletes in chunks of
``retention_chunk`` rows, each chunk its own queued call, so ingest interleaves and is never
blocked for long; dimension rows go once no flow could still use them (``last_seen`` margin).

Backends provide a :class:`Dialect` (connection factory and migration lock) whose connections
follow the small :class:`Connection` protocol; the SQL here is written once with ``?``
placeholders and the PostgreSQL adapter rewrites them.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- the store is an I/O adapter, not a sans-IO core.
import concurrent.futures
import logging
import queue
import threading
import time  # noqa: TID251 -- the writer's linger window needs a monotonic clock.
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar, cast

from ocgate.errors import ConfigError
from ocgate.nvm._records import (
    EndpointRecord,
    FlowRecord,
    GenericRecord,
    InterfaceRecord,
    JsonValue,
    Normalised,
)
from ocgate.nvm.store._base import FlowFilter, Page, TopBy, decode_cursor, encode_cursor
from ocgate.nvm.store._dims import Dimension
from ocgate.nvm.store._leases import Lease, LeaseCache
from ocgate.nvm.store._rows import (
    CONTEXT_FIELDS,
    DESTINATION_FIELDS,
    ENDPOINT_COLUMNS,
    FLOW_COLUMNS,
    FLOW_SELECT,
    GENERIC_COLUMNS,
    INTERFACE_COLUMNS,
    PROCESS_FIELDS,
    Prepared,
    Row,
    dumps,
    endpoint_from_row,
    endpoint_row,
    flow_from_row,
    flow_sort_key,
    generic_row,
    interface_from_row,
    interface_row,
    loads,
    modules_json,
    prepare_flow,
    quoted,
)
from ocgate.nvm.store._schema import CREATE_VERSION_TABLE, MIGRATIONS, render
from ocgate.nvm.store._sql import (
    ENDPOINT_UPSERT,
    INTERFACE_UPSERT,
    SEGMENT_UPSERT,
    canonical_address,
    check_limit,
    decode_key_cursor,
    encode_key_cursor,
    flow_where,
    top_query,
)

__all__ = ["Connection", "Dialect", "SqlStore"]

log = logging.getLogger("ocgate.nvm.store")
T = TypeVar("T")

# A dimension row's last_seen is refreshed at most this often (flow time), and retention keeps
# dimension rows this much longer than flows, so a kept flow never loses its dimensions.
_DIM_REFRESH: Final = 3600.0
_DIM_MARGIN: Final = 4 * _DIM_REFRESH
# Flow ids come in blocks of 2**_SEG_BITS, one block per segment (``seg = id >> _SEG_BITS``).
_SEG_BITS: Final = 16
# Keyed flow queries read this many segments per statement at most (doubling from one).
_SEG_GROUP_MAX: Final = 64
_DAY: Final = 86400.0
_TEMPLATES_KEY: Final = "templates"


class Connection(Protocol):
    """What the engine needs of a backend connection (``?`` placeholders)."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement; returns the affected row count."""

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one query; returns all rows."""

    def executemany(self, sql: str, rows: Sequence[Row]) -> None:
        """Run one statement per parameter row."""

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """Insert many rows fast (executemany or COPY)."""

    def begin(self) -> None:
        """Start a transaction."""

    def commit(self) -> None:
        """Commit the transaction."""

    def rollback(self) -> None:
        """Roll back the transaction (no-op outside one)."""

    def close(self) -> None:
        """Close the connection."""


class Dialect(Protocol):
    """A backend: its name for :func:`render` and its connection factory."""

    @property
    def name(self) -> str:
        """``sqlite`` or ``postgres``."""

    def connect(self, *, writer: bool) -> Connection:
        """A new connection (the one writer, or a reader)."""

    def lock_migrations(self, conn: Connection) -> None:
        """Serialise concurrent migrators (within the current transaction)."""


_Item_record = Normalised | Prepared


@dataclass(slots=True)
class _Rows:
    records: Sequence[_Item_record]  # Flows already prepared (prepare_flow).


@dataclass(slots=True)
class _Call:
    fn: Callable[[Connection], object]
    future: concurrent.futures.Future[object]


_STOP: Final = object()
_Item = _Rows | _Call | object


class SqlStore:
    """A :class:`~ocgate.nvm.store.Store` over a SQL backend (see the module docstring).

    :param max_batch_rows: rows merged into one write transaction.
    :param linger: seconds the writer waits for more rows before committing a small batch.
    :param queue_batches: queued ``write_batch`` calls before writers wait (back-pressure).
    :param readers: threads (and connections) serving queries.
    :param retention_chunk: rows deleted per retention transaction.
    """

    def __init__(
        self,
        dialect: Dialect,
        *,
        max_batch_rows: int = 20000,
        linger: float = 0.05,
        queue_batches: int = 64,
        readers: int = 4,
        retention_chunk: int = 10000,
    ) -> None:
        self._dialect = dialect
        self._max_rows = max_batch_rows
        self._linger = linger
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_batches)
        self._readers_count = readers
        self._chunk = retention_chunk
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[Connection] = []
        self._lock = threading.Lock()
        self._leases: LeaseCache | None = None
        self._contexts = Dimension("flow_contexts", CONTEXT_FIELDS, _identity, refresh=_DIM_REFRESH)
        self._processes = Dimension(
            "flow_processes", (*PROCESS_FIELDS, "modules"), _process_values, refresh=_DIM_REFRESH
        )
        self._destinations = Dimension(
            "flow_destinations", DESTINATION_FIELDS, _identity, refresh=_DIM_REFRESH
        )
        self._ids: list[range] = []  # Reserved flow ids not used yet.
        self.rows_written = 0
        """Records committed so far."""
        self.write_errors = 0
        """Records lost to failed write transactions (each failure is logged)."""

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is not None:
            return
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._pool = ThreadPoolExecutor(self._readers_count, thread_name_prefix="nvm-store-read")
        self._thread = threading.Thread(
            target=self._writer_main, args=(ready,), name="nvm-store-writer", daemon=True
        )
        self._thread.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            self._pool.shutdown()
            raise

    async def close(self) -> None:
        thread, pool = self._thread, self._pool
        if thread is None or pool is None:
            return
        await self._put(_STOP)
        await asyncio.to_thread(thread.join)
        await asyncio.to_thread(pool.shutdown)
        self._thread = self._pool = None
        with self._lock:
            conns, self._reader_conns = self._reader_conns, []
        for conn in conns:
            conn.close()

    async def migrate(self) -> int:
        return await self._write_call(self._migrate)

    def _migrate(self, conn: Connection) -> int:
        self._dialect.lock_migrations(conn)
        conn.execute(CREATE_VERSION_TABLE)
        applied = {
            int(cast(int, row[0])) for row in conn.query("SELECT version FROM schema_version")
        }
        latest = MIGRATIONS[-1].version
        if applied and max(applied) > latest:
            raise ConfigError(
                f"the NVM database has schema version {max(applied)}; this ocgate knows {latest}"
            )
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            log.info(
                "nvm store: applying migration %d (%s)", migration.version, migration.description
            )
            for statement in migration.statements:
                conn.execute(render(statement, self._dialect.name))
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (migration.version, time.time()),
            )
        return latest

    # -- writer thread ----------------------------------------------------------------------

    def _writer_main(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            conn = self._dialect.connect(writer=True)
        except Exception as exc:
            ready.set_exception(exc)
            return
        self._leases = LeaseCache(lambda address: self._load_leases(conn, address))
        ready.set_result(None)
        try:
            self._writer_loop(conn)
        finally:
            conn.close()

    def _writer_loop(self, conn: Connection) -> None:
        held: _Item | None = None
        while True:
            item = held if held is not None else self._queue.get()
            held = None
            if item is _STOP:
                return
            if isinstance(item, _Call):
                self._run_call(conn, item)
                continue
            assert isinstance(item, _Rows)  # The queue holds only the three item kinds.
            batch = list(item.records)
            deadline = time.monotonic() + self._linger
            while len(batch) < self._max_rows:
                try:
                    timeout = deadline - time.monotonic()
                    nxt = (
                        self._queue.get(timeout=timeout)
                        if timeout > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if isinstance(nxt, _Rows):
                    batch.extend(nxt.records)
                else:
                    held = nxt
                    break
            self._write_records(conn, batch)

    def _run_call(self, conn: Connection, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            conn.begin()
            result = call.fn(conn)
            conn.commit()
        except Exception as exc:
            conn.rollback()
            call.future.set_exception(exc)
        else:
            call.future.set_result(result)

    def _write_records(self, conn: Connection, batch: list[_Item_record]) -> None:
        flows = [r for r in batch if isinstance(r, tuple)]
        endpoints = [r for r in batch if isinstance(r, EndpointRecord)]
        interfaces = [r for r in batch if isinstance(r, InterfaceRecord)]
        generic = [r for r in batch if isinstance(r, GenericRecord)]
        try:
            if flows:
                self._reserve_ids(conn, len(flows))
            conn.begin()
            if flows:
                self._insert_flows(conn, flows)
            if endpoints:
                conn.executemany(ENDPOINT_UPSERT, [endpoint_row(r) for r in endpoints])
            if interfaces:
                conn.executemany(INTERFACE_UPSERT, [interface_row(r) for r in interfaces])
            if generic:
                conn.bulk_insert(
                    "generic_records", GENERIC_COLUMNS, [generic_row(r) for r in generic]
                )
            conn.commit()
        except Exception:
            log.exception("nvm store: a batch of %d records could not be written", len(batch))
            conn.rollback()
            self._forget_caches(conn)
            self.write_errors += len(batch)
        else:
            self.rows_written += len(batch)

    def _reserve_ids(self, conn: Connection, count: int) -> None:
        """Make sure ``count`` flow ids are reserved (whole segments, own transaction)."""
        size = 1 << _SEG_BITS
        have = sum(len(r) for r in self._ids)
        while have < count:
            conn.begin()
            try:
                (row,) = conn.query(
                    "UPDATE flow_ids SET next_block = next_block + 1 WHERE name = 'flows' "
                    "RETURNING next_block"
                )
                conn.commit()
            except Exception:
                conn.rollback()
                raise
            block = int(cast(int, row[0])) - 1
            self._ids.append(range(block * size, (block + 1) * size))
            have += size

    def _take_ids(self, count: int) -> list[range]:
        taken: list[range] = []
        while count:
            head = self._ids[0]
            n = min(count, len(head))
            taken.append(head[:n])
            if n == len(head):
                self._ids.pop(0)
            else:
                self._ids[0] = head[n:]
            count -= n
        return taken

    def _insert_flows(self, conn: Connection, flows: list[Prepared]) -> None:
        """Attribute, intern and insert ``flows`` (inside the batch transaction)."""
        assert self._leases is not None  # Set before the writer loop starts.
        lookup = self._leases.lookup
        ctx, proc, dest = self._contexts, self._processes, self._destinations
        for dim in (ctx, proc, dest):
            dim.trim()
        ctx_get, proc_get, dest_get = ctx.cache.get, proc.cache.get, dest.cache.get
        ctx_resolve, proc_resolve, dest_resolve = ctx.resolve, proc.resolve, dest.resolve
        rows: list[Row] = []
        append = rows.append
        # Rows whose dimension ids are not known yet: (index, context key, process key, dest key)
        later: list[tuple[int, Row, Row, tuple[str | None, str | None] | None]] = []
        for ids in self._take_ids(len(flows)):
            start = len(rows)
            part = flows[start : start + len(ids)]
            for ident, (t0, t, src, vpn_user, vpn_session, base, pkey, dkey, tail) in zip(
                ids, part, strict=True
            ):
                if vpn_user is None and src is not None:
                    lease = lookup(src, t0)
                    if lease is not None:
                        vpn_user, vpn_session = lease.username, lease.session_id
                key = (*base, vpn_user, vpn_session)
                entry = ctx_get(key)
                cid = entry[0] if entry and t <= entry[1] else ctx_resolve(key, t)
                entry = proc_get(pkey)
                pid = entry[0] if entry and t <= entry[1] else proc_resolve(pkey, t)
                did = None
                if dkey is not None:
                    entry = dest_get(dkey)
                    did = entry[0] if entry and t <= entry[1] else dest_resolve(dkey, t)
                    if did is None:
                        cid = None  # Marks the row for the fix-up below.
                if cid is None or pid is None:
                    later.append((len(rows), key, pkey, dkey))
                append((ident, ident >> _SEG_BITS, cid, pid, did, *tail))
            times = [p[1] for p in part]
            conn.execute(SEGMENT_UPSERT, (ids.start >> _SEG_BITS, min(times), max(times)))
        if later:
            for dim in (ctx, proc, dest):
                dim.load_missing(conn)
            for index, key, pkey, dkey in later:
                row = rows[index]
                did = None if dkey is None else dest.cache[dkey][0]
                rows[index] = (*row[:2], ctx.cache[key][0], proc.cache[pkey][0], did, *row[5:])
        for dim in (ctx, proc, dest):
            touched = dim.pending()
            if touched:
                conn.executemany(dim.touch_sql, touched)
        conn.bulk_insert("flows", FLOW_COLUMNS, rows)

    @staticmethod
    def _load_leases(conn: Connection, address: str) -> list[Lease]:
        rows = conn.query(
            "SELECT lease_start, lease_end, username, session_id FROM vpn_leases "
            "WHERE address = ? ORDER BY lease_start, id",
            (address,),
        )
        return [
            Lease(
                start=float(cast(float, start)),
                end=None if end is None else float(cast(float, end)),
                username=str(user),
                session_id=str(session),
            )
            for start, end, user, session in rows
        ]

    # -- queue plumbing ---------------------------------------------------------------------

    async def _put(self, item: _Item) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the NVM store is not open")
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            await asyncio.to_thread(self._queue.put, item)

    async def _write_call(self, fn: Callable[[Connection], T]) -> T:
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        await self._put(_Call(fn, future))
        return cast(T, await asyncio.wrap_future(future))

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        if self._pool is None:
            raise RuntimeError("the NVM store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_read, fn)

    def _run_read(self, fn: Callable[[Connection], T]) -> T:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._dialect.connect(writer=False)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return fn(conn)

    # -- writes -----------------------------------------------------------------------------

    async def write_batch(self, records: Sequence[Normalised]) -> None:
        if records:
            # A new list (the caller may reuse its own); flows reduced to plain tuples here, so
            # the writer thread spends its time in the database (it holds the GIL less).
            await self._put(
                _Rows([prepare_flow(r) if isinstance(r, FlowRecord) else r for r in records])
            )

    async def flush(self) -> None:
        await self._write_call(lambda conn: None)

    async def save_exporter_stats(self, stats: Mapping[str, Mapping[str, JsonValue]]) -> None:
        now = time.time()
        rows: list[Row] = [(name, dumps(dict(values)), now) for name, values in stats.items()]

        def save(conn: Connection) -> None:
            conn.executemany(
                "INSERT INTO exporter_stats (exporter, stats, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (exporter) DO UPDATE SET stats = excluded.stats, "
                "updated_at = excluded.updated_at",
                rows,
            )

        if rows:
            await self._write_call(save)

    async def save_templates(self, templates: Sequence[Mapping[str, JsonValue]]) -> None:
        text = dumps([dict(t) for t in templates])
        await self._write_call(
            lambda conn: conn.execute(
                "INSERT INTO store_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_TEMPLATES_KEY, text),
            )
        )

    async def record_lease(
        self, *, username: str, session_id: str, address: str, start: float, end: float | None
    ) -> None:
        addr = canonical_address(address)

        def record(conn: Connection) -> None:
            # An address handed to a new lease ends whatever lease still held it.
            conn.execute(
                "UPDATE vpn_leases SET lease_end = ? "
                "WHERE address = ? AND lease_end IS NULL AND lease_start < ?",
                (start, addr, start),
            )
            updated = conn.execute(
                "UPDATE vpn_leases SET username = ?, lease_end = ? "
                "WHERE session_id = ? AND address = ? AND lease_start = ?",
                (username, end, session_id, addr, start),
            )
            if not updated:
                conn.execute(
                    "INSERT INTO vpn_leases "
                    "(username, session_id, address, lease_start, lease_end) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (username, session_id, addr, start, end),
                )
            self._invalidate(addr)

        await self._write_call(record)

    async def end_lease(self, *, session_id: str, address: str | None, end: float) -> None:
        addr = None if address is None else canonical_address(address)

        def finish(conn: Connection) -> None:
            if addr is None:
                rows = conn.query(
                    "SELECT DISTINCT address FROM vpn_leases "
                    "WHERE session_id = ? AND lease_end IS NULL",
                    (session_id,),
                )
                addresses = [str(row[0]) for row in rows]
            else:
                addresses = [addr]
            for one in addresses:
                conn.execute(
                    "UPDATE vpn_leases SET lease_end = ? "
                    "WHERE session_id = ? AND address = ? AND lease_end IS NULL",
                    (end, session_id, one),
                )
                self._invalidate(one)

        await self._write_call(finish)

    def _invalidate(self, address: str | None) -> None:
        if self._leases is not None:
            self._leases.invalidate(address)

    async def enforce_retention(self, days: float, now: float) -> int:
        if days <= 0:
            raise ValueError("retention must be a positive number of days")
        cutoff = now - days * _DAY
        chunk = self._chunk
        plans = (
            ("flows", "id", "time_end < ?", cutoff),
            ("flow_contexts", "id", "last_seen < ?", cutoff - _DIM_MARGIN),
            ("flow_processes", "id", "last_seen < ?", cutoff - _DIM_MARGIN),
            ("flow_destinations", "id", "last_seen < ?", cutoff - _DIM_MARGIN),
            ("generic_records", "id", "time < ?", cutoff),
            ("endpoints", "udid", "last_seen < ?", cutoff),
            ("vpn_leases", "id", "lease_end < ?", cutoff),
        )
        total = 0
        for table, key, condition, before in plans:
            sql = (
                f"DELETE FROM {table} WHERE {key} IN "
                f"(SELECT {key} FROM {table} WHERE {condition} LIMIT ?)"
            )
            while True:
                deleted = await self._write_call(_statement(sql, (before, chunk)))
                total += deleted
                if deleted < chunk:
                    break
        total += await self._write_call(
            lambda conn: conn.execute("DELETE FROM interfaces WHERE last_seen < ?", (cutoff,))
        )
        # Segment bounds are bookkeeping, not data: not counted.
        await self._write_call(
            lambda conn: conn.execute("DELETE FROM flow_segments WHERE max_time_end < ?", (cutoff,))
        )
        await self._write_call(self._forget_caches)
        return total

    def _forget_caches(self, conn: Connection) -> None:
        self._invalidate(None)
        for dim in (self._contexts, self._processes, self._destinations):
            dim.clear()

    # -- reads ------------------------------------------------------------------------------

    async def query_flows(
        self, filters: FlowFilter, *, cursor: str | None = None, limit: int = 100
    ) -> Page[FlowRecord]:
        check_limit(limit)
        where, params, keyed = flow_where(filters)
        after = None if cursor is None else decode_cursor(cursor)
        if keyed:
            rows = await self._read(
                lambda conn: _keyed_flows(conn, where, params, filters, after, limit + 1)
            )
        else:
            if after is not None:
                where.append("(flows.time_end < ? OR (flows.time_end = ? AND flows.id < ?))")
                params += [after[0], after[0], after[1]]
            sql = FLOW_SELECT
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY flows.time_end DESC, flows.id DESC LIMIT ?"
            params.append(limit + 1)
            rows = await self._read(lambda conn: conn.query(sql, params))
        items = [flow_from_row(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            assert last.id is not None  # Rows read from the table always have an id.
            next_cursor = encode_cursor(last.time_end, last.id)
        return Page(items, next_cursor)

    async def endpoints(
        self, *, udid: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[EndpointRecord]:
        check_limit(limit)
        sql = f"SELECT {quoted(ENDPOINT_COLUMNS)} FROM endpoints"
        where: list[str] = []
        params: list[object] = []
        if udid is not None:
            where.append("udid = ?")
            params.append(udid.lower())
        if cursor is not None:
            where.append("udid > ?")
            params.append(decode_key_cursor(cursor))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY udid LIMIT ?"
        params.append(limit + 1)
        rows = await self._read(lambda conn: conn.query(sql, params))
        items = [endpoint_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_key_cursor(items[-1].udid) if more else None)

    async def interfaces(self, udid: str) -> list[InterfaceRecord]:
        sql = (
            f"SELECT {quoted(INTERFACE_COLUMNS)} FROM interfaces WHERE udid = ? "
            "ORDER BY interface_uid"
        )
        rows = await self._read(lambda conn: conn.query(sql, (udid.lower(),)))
        return [interface_from_row(row) for row in rows]

    async def top(
        self, by: TopBy, *, since: float | None = None, until: float | None = None, limit: int = 10
    ) -> list[tuple[str, int]]:
        check_limit(limit)
        sql, params = top_query(by, since, until, limit)
        rows = await self._read(lambda conn: conn.query(sql, params))
        return [(str(k), int(cast(int, total))) for k, total in rows]

    async def exporter_stats(self) -> dict[str, dict[str, JsonValue]]:
        rows = await self._read(
            lambda conn: conn.query("SELECT exporter, stats FROM exporter_stats")
        )
        result: dict[str, dict[str, JsonValue]] = {}
        for name, text in rows:
            value = loads(text)
            result[str(name)] = value if isinstance(value, dict) else {}
        return result

    async def load_templates(self) -> list[dict[str, JsonValue]]:
        rows = await self._read(
            lambda conn: conn.query("SELECT value FROM store_meta WHERE key = ?", (_TEMPLATES_KEY,))
        )
        value = loads(rows[0][0]) if rows else None
        return [t for t in value if isinstance(t, dict)] if isinstance(value, list) else []

    async def attribute(self, address: str, at: float) -> tuple[str, str] | None:
        addr = canonical_address(address)
        rows = await self._read(
            lambda conn: conn.query(
                "SELECT username, session_id FROM vpn_leases WHERE address = ? "
                "AND lease_start <= ? AND (lease_end IS NULL OR lease_end > ?) "
                "ORDER BY lease_start DESC, id DESC LIMIT 1",
                (addr, at, at),
            )
        )
        return (str(rows[0][0]), str(rows[0][1])) if rows else None


def _keyed_flows(
    conn: Connection,
    where: list[str],
    params: list[object],
    filters: FlowFilter,
    after: tuple[float, int] | None,
    wanted: int,
) -> list[Row]:
    """The first ``wanted`` flows matching ``where``, read segment by segment.

    The filter's index is ``(seg, key)``, so each statement reads a group of segments, newest
    (by their greatest ``time_end``) first; the scan stops once ``wanted`` rows are in hand and
    no segment left can hold a row that sorts before the last of them.
    """
    conds = list(where)
    args = list(params)
    if after is not None:
        conds.append("(+flows.time_end < ? OR (+flows.time_end = ? AND flows.id < ?))")
        args += [after[0], after[0], after[1]]
    seg_where = []
    seg_args: list[object] = []
    upper = after[0] if after is not None else None
    if upper is not None:
        seg_where.append("min_time_end <= ?")
        seg_args.append(upper)
    if filters.until is not None:
        seg_where.append("min_time_end < ?")
        seg_args.append(filters.until)
    if filters.since is not None:
        seg_where.append("max_time_end >= ?")
        seg_args.append(filters.since)
    sql = "SELECT seg, max_time_end FROM flow_segments"
    if seg_where:
        sql += " WHERE " + " AND ".join(seg_where)
    segments = conn.query(sql + " ORDER BY max_time_end DESC, seg DESC", seg_args)
    found: list[Row] = []
    index = 0
    group = 1
    while index < len(segments):
        if len(found) >= wanted:
            kth = flow_sort_key(found[wanted - 1])[0]
            if float(cast(float, segments[index][1])) < kth:
                break
        chunk = [segments[i][0] for i in range(index, min(index + group, len(segments)))]
        index += len(chunk)
        group = min(group * 2, _SEG_GROUP_MAX)
        marks = ", ".join("?" * len(chunk))
        sql = (
            f"{FLOW_SELECT} WHERE flows.seg IN ({marks}) AND {' AND '.join(conds)} "
            "ORDER BY +flows.time_end DESC, flows.id DESC LIMIT ?"
        )
        found.extend(conn.query(sql, [*chunk, *args, wanted]))
        found.sort(key=flow_sort_key, reverse=True)
        del found[wanted:]
    return found


def _statement(sql: str, params: Sequence[object]) -> Callable[[Connection], int]:
    return lambda conn: conn.execute(sql, params)


def _identity(key: Hashable) -> Row:
    return cast(Row, key)


def _process_values(key: Hashable) -> Row:
    *fields, modules = cast(tuple[object, ...], key)
    return (*fields, modules_json(cast(tuple[tuple[str | None, str | None], ...], modules)))
