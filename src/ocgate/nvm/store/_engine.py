"""The SQL store shared by the SQLite and PostgreSQL backends.

Theory of operation
-------------------
One **writer** (:class:`~ocgate.nvm.store._writer.Writer`) owns the only writing connection and
consumes a bounded queue. Items are record batches or calls (lease changes, migrations, stats,
retention chunks, flush markers), calls naming a writer operation so they can cross a process
boundary. The writer merges consecutive batches into one transaction, runs every call in its own
transaction and reports back through a future; it also attributes flows (lease history), interns
their dimensions and reserves flow ids (see ``_writer``). ``write_batch`` first reduces each
flow to plain tuples (``prepare_flow``) in the caller's thread.

The writer runs in a thread, or (``writer_process=True``, SQLite's default) in a child process
(``_process``): there its Python work (binding row parameters) no longer competes for the GIL
with the collector's decoding; the parent only pickles the prepared tuples.

Flow ids are reserved a segment (65,536 ids) at a time. Queries filtering on a key that has a
segment index (user, UDID, host, address) read segment groups newest first, merging by
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
import time  # noqa: TID251 -- exporter stats carry a wall-clock time.
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Protocol, TypeVar, cast

from ocgate.nvm._records import (
    EndpointRecord,
    FlowRecord,
    InterfaceRecord,
    JsonValue,
    Normalised,
)
from ocgate.nvm.store._base import FlowFilter, Page, TopBy, decode_cursor, encode_cursor
from ocgate.nvm.store._process import WriterProcess, settle
from ocgate.nvm.store._rows import (
    ENDPOINT_COLUMNS,
    FLOW_SELECT,
    INTERFACE_COLUMNS,
    Row,
    dumps,
    endpoint_from_row,
    flow_from_row,
    flow_sort_key,
    interface_from_row,
    loads,
    prepare_flow,
    quoted,
)
from ocgate.nvm.store._sql import (
    canonical_address,
    check_limit,
    decode_key_cursor,
    encode_key_cursor,
    flow_where,
    timeline_query,
    top_query,
)
from ocgate.nvm.store._writer import DIM_MARGIN, STOP, Call, Writer

__all__ = ["Connection", "Dialect", "SqlStore"]

log = logging.getLogger("ocgate.nvm.store")
T = TypeVar("T")

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

    def broken(self) -> bool:
        """Whether the connection can no longer be used (the server went away)."""


class Dialect(Protocol):
    """A backend: its name for :func:`render` and its connection factory."""

    @property
    def name(self) -> str:
        """``sqlite`` or ``postgres``."""

    @property
    def lease_max_age(self) -> float | None:
        """Seconds the writer trusts a cached lease history (``None``: this writer is the only
        one that records leases, so it invalidates them itself)."""

    def connect(self, *, writer: bool) -> Connection:
        """A new connection (the one writer, or a reader)."""

    def lock_migrations(self, conn: Connection) -> None:
        """Serialise concurrent migrators (within the current transaction)."""


class SqlStore:
    """A :class:`~ocgate.nvm.store.Store` over a SQL backend (see the module docstring).

    :param max_batch_rows: rows merged into one write transaction.
    :param linger: seconds the writer waits for more rows before committing a small batch.
    :param queue_batches: queued ``write_batch`` calls before writers wait (back-pressure).
    :param readers: threads (and connections) serving queries.
    :param retention_chunk: rows deleted per retention transaction.
    :param writer_process: run the writer in a child process rather than a thread.
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
        writer_process: bool = False,
    ) -> None:
        self._dialect = dialect
        self._max_rows = max_batch_rows
        self._linger = linger
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_batches)
        self._readers_count = readers
        self._chunk = retention_chunk
        self._use_process = writer_process
        self._writer: Writer | WriterProcess | None = None
        self._last: Writer | WriterProcess | None = None  # Its counters outlive close().
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[Connection] = []
        self._lock = threading.Lock()

    @property
    def rows_written(self) -> int:
        """Records committed so far (by the current writer)."""
        return 0 if self._last is None else self._last.rows_written

    @property
    def write_errors(self) -> int:
        """Records lost to failed write transactions (each failure is logged)."""
        return 0 if self._last is None else self._last.write_errors

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        settings = {"max_batch_rows": self._max_rows, "linger": self._linger, "seg_bits": _SEG_BITS}
        pool = ThreadPoolExecutor(self._readers_count, thread_name_prefix="nvm-store-read")
        try:
            if self._use_process:
                # Calls run on this connection until the child is ready (see WriterProcess);
                # opening it here also surfaces a bad path now rather than at the first write.
                local = Writer(
                    self._dialect, max_batch_rows=self._max_rows, linger=0.0, seg_bits=_SEG_BITS
                )
                await asyncio.to_thread(local.connect)
                proc = WriterProcess(self._dialect, dict(settings), self._queue, local)
                proc.start()
                self._writer = self._last = proc
            else:
                writer = Writer(
                    self._dialect,
                    max_batch_rows=self._max_rows,
                    linger=self._linger,
                    seg_bits=_SEG_BITS,
                )
                await self._start_thread(writer)
        except BaseException:
            pool.shutdown()
            raise
        self._pool = pool

    async def _start_thread(self, writer: Writer) -> None:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._writer_main, args=(writer, ready), name="nvm-store-writer", daemon=True
        )
        thread.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            await asyncio.to_thread(thread.join)
            raise
        self._writer = self._last = writer
        self._thread = thread

    async def close(self) -> None:
        writer, pool = self._writer, self._pool
        if writer is None or pool is None:
            return
        await asyncio.to_thread(self._queue.put, STOP)
        if isinstance(writer, WriterProcess):
            await asyncio.to_thread(writer.join)
        elif self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(pool.shutdown)
        self._thread = self._pool = None
        with self._lock:
            conns, self._reader_conns = self._reader_conns, []
        for conn in conns:
            conn.close()
        self._writer = None

    async def migrate(self) -> int:
        return cast(int, await self._write_call("migrate"))

    # -- writer thread ----------------------------------------------------------------------

    def _writer_main(self, writer: Writer, ready: concurrent.futures.Future[None]) -> None:
        try:
            writer.connect()
        except Exception as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            writer.run(self._get, _settle, _nothing)
        finally:
            writer.close()

    def _get(self, timeout: float | None) -> object:
        if timeout is None:
            return self._queue.get()
        return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()

    # -- queue plumbing ---------------------------------------------------------------------

    def _alive(self) -> bool:
        writer = self._writer
        if isinstance(writer, WriterProcess):
            return writer.alive
        return self._thread is not None and self._thread.is_alive()

    async def _put(self, item: object) -> None:
        if not self._alive():
            raise RuntimeError("the NVM store is not open")
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            await asyncio.to_thread(self._queue.put, item)

    async def _write_call(self, op: str, *args: object) -> object:
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        await self._put(Call(op, args, future))
        return await asyncio.wrap_future(future)

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
            # the writer spends its time in the database (and they pickle cheaply).
            await self._put([prepare_flow(r) if isinstance(r, FlowRecord) else r for r in records])

    async def flush(self) -> None:
        await self._write_call("noop")

    async def save_exporter_stats(self, stats: Mapping[str, Mapping[str, JsonValue]]) -> None:
        now = time.time()
        rows: list[Row] = [(name, dumps(dict(values)), now) for name, values in stats.items()]
        if rows:
            await self._write_call(
                "executemany",
                "INSERT INTO exporter_stats (exporter, stats, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (exporter) DO UPDATE SET stats = excluded.stats, "
                "updated_at = excluded.updated_at",
                rows,
            )

    async def save_templates(self, templates: Sequence[Mapping[str, JsonValue]]) -> None:
        text = dumps([dict(t) for t in templates])
        await self._write_call(
            "execute",
            "INSERT INTO store_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_TEMPLATES_KEY, text),
        )

    async def record_lease(
        self,
        *,
        username: str,
        session_id: str,
        address: str,
        start: float,
        end: float | None,
        device: tuple[str, str, str] = ("", "", ""),
    ) -> None:
        addr = canonical_address(address)
        await self._write_call("record_lease", username, session_id, addr, start, end, device)

    async def end_lease(self, *, session_id: str, address: str | None, end: float) -> None:
        addr = None if address is None else canonical_address(address)
        await self._write_call("end_lease", session_id, addr, end)

    async def enforce_retention(self, days: float, now: float) -> int:
        if days <= 0:
            raise ValueError("retention must be a positive number of days")
        cutoff = now - days * _DAY
        chunk = self._chunk
        plans = (
            ("flows", "id", "time_end < ?", cutoff),
            ("flow_contexts", "id", "last_seen < ?", cutoff - DIM_MARGIN),
            ("flow_processes", "id", "last_seen < ?", cutoff - DIM_MARGIN),
            ("flow_destinations", "id", "last_seen < ?", cutoff - DIM_MARGIN),
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
                deleted = cast(int, await self._write_call("execute", sql, (before, chunk)))
                total += deleted
                if deleted < chunk:
                    break
        total += cast(
            int,
            await self._write_call(
                "execute", "DELETE FROM interfaces WHERE last_seen < ?", (cutoff,)
            ),
        )
        # Segment bounds are bookkeeping, not data: not counted.
        await self._write_call(
            "execute", "DELETE FROM flow_segments WHERE max_time_end < ?", (cutoff,)
        )
        await self._write_call("forget_caches")
        return total

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
        self,
        by: TopBy,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 10,
        user: str | None = None,
    ) -> list[tuple[str, int]]:
        check_limit(limit)
        sql, params = top_query(by, since, until, limit, user)
        rows = await self._read(lambda conn: conn.query(sql, params))
        return [(str(k), int(cast(int, total))) for k, total in rows]

    async def timeline(
        self, *, since: float, until: float, step: int, user: str | None = None
    ) -> list[tuple[int, int]]:
        sql, params = timeline_query(self._dialect.name, since, until, step, user)
        origin = int(since // step) * step
        rows = await self._read(lambda conn: conn.query(sql, params))
        return [(origin + int(cast(float, k)) * step, int(cast(int, total))) for k, total in rows]

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


def _settle(token: object, error: BaseException | None, result: object) -> None:
    """Report a finished call to its future (the writer thread's ``done``)."""
    settle(cast(concurrent.futures.Future[object], token), error, result)


def _nothing() -> None:
    """The writer thread's ``after_batch`` (its counters are read directly)."""
