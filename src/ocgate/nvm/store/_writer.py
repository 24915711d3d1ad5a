"""The writing side of the SQL store: one connection, one loop, run in a thread or a process.

Theory of operation
-------------------
A :class:`Writer` owns the only writing connection, the lease cache, the dimension caches and
the reserved flow ids, so everything that must stay consistent (attribution, dimension ids,
flow ids) lives in one place whichever thread or process runs it. :meth:`Writer.run` consumes
items from a ``get`` function: a ``list`` of records (flows already reduced by ``prepare_flow``),
a :class:`Call` (an operation named by string, so it can cross a process boundary; see the
``op_*`` methods) or :data:`STOP`. Consecutive record lists are merged into one transaction of
up to ``max_batch_rows`` rows, waiting at most ``linger`` seconds for more; a call ends the merge
window, so the rows queued before it are committed first (a flush is the empty ``noop`` call).
Every call runs in its own transaction and reports through ``done``.

Flows are attributed on the way in: the writer looks up the address of each flow's *exporter*
(never the flow's claimed source address) in the lease history (:class:`LeaseCache`: one query
per distinct address, cached until that address's leases change; lease changes are calls, so
they are ordered with the batches), swaps its
context, process and destination for dimension ids (:class:`Dimension`: in-memory, misses
interned once per batch) and inserts narrow rows with one ``executemany``/``COPY``.

Flow ids are reserved a segment (``2**seg_bits`` ids) at a time, in a transaction of their own,
so several writers on one PostgreSQL database never collide.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time  # noqa: TID251 -- the linger window needs a monotonic clock; this is an I/O adapter.
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast

from ocgate.errors import ConfigError
from ocgate.nvm._records import EndpointRecord, GenericRecord, InterfaceRecord, Normalised
from ocgate.nvm.store._dims import Dimension
from ocgate.nvm.store._leases import Lease, LeaseCache
from ocgate.nvm.store._rows import (
    CONTEXT_FIELDS,
    DESTINATION_FIELDS,
    FLOW_COLUMNS,
    GENERIC_COLUMNS,
    PROCESS_FIELDS,
    Prepared,
    Row,
    endpoint_row,
    generic_row,
    interface_row,
    modules_json,
)
from ocgate.nvm.store._schema import CREATE_VERSION_TABLE, MIGRATIONS, render
from ocgate.nvm.store._sql import ENDPOINT_UPSERT, INTERFACE_UPSERT, SEGMENT_UPSERT

if TYPE_CHECKING:
    from ocgate.nvm.store._engine import Connection, Dialect

__all__ = ["DIM_MARGIN", "STOP", "Call", "Record", "Writer"]

log = logging.getLogger("ocgate.nvm.store")

# A dimension row's last_seen is refreshed at most this often (flow time), and retention keeps
# dimension rows this much longer than flows, so a kept flow never loses its dimensions.
_DIM_REFRESH: Final = 3600.0
DIM_MARGIN: Final = 4 * _DIM_REFRESH

Record = Normalised | Prepared
"""What a record list holds: flows already prepared, other records as they are."""


@dataclass(slots=True)
class Call:
    """Run ``Writer.op_<op>(conn, *args)`` in a transaction of its own; ``token``: the caller."""

    op: str
    args: tuple[object, ...]
    token: object


STOP: Final = "stop"
"""The item that ends :meth:`Writer.run`."""

Get = Callable[[float | None], object]
"""Next item; waits at most the given seconds (``None``: forever), else raises ``queue.Empty``."""
Done = Callable[[object, BaseException | None, object], None]
"""``(token, error, result)`` of a finished call."""


class Writer:
    """The writer's state and loop (see the module docstring).

    :param dialect: the backend (its writer connection is opened by :meth:`connect`).
    :param max_batch_rows: rows merged into one write transaction.
    :param linger: seconds to wait for more rows before committing a small batch.
    :param seg_bits: flow ids per segment, as a power of two.
    """

    def __init__(
        self, dialect: Dialect, *, max_batch_rows: int, linger: float, seg_bits: int
    ) -> None:
        self._dialect = dialect
        self._max_rows = max_batch_rows
        self._linger = linger
        self._seg_bits = seg_bits
        self._conn: Connection | None = None
        self._leases: LeaseCache | None = None
        self._contexts = Dimension("flow_contexts", CONTEXT_FIELDS, _identity, refresh=_DIM_REFRESH)
        self._processes = Dimension(
            "flow_processes", (*PROCESS_FIELDS, "modules"), _process_values, refresh=_DIM_REFRESH
        )
        self._destinations = Dimension(
            "flow_destinations", DESTINATION_FIELDS, _identity, refresh=_DIM_REFRESH
        )
        self._ids: list[range] = []  # Reserved flow ids not used yet.
        self._next_connect = 0.0
        """When a broken connection may be replaced next (monotonic; one try a second)."""
        self.rows_written = 0
        """Records committed so far."""
        self.write_errors = 0
        """Records lost to failed write transactions (each failure is logged)."""

    def connect(self) -> None:
        """Open the writer connection (raises what the backend raises)."""
        conn = self._dialect.connect(writer=True)
        self._conn = conn
        self._leases = LeaseCache(
            lambda address: _load_leases(conn, address),
            max_age=self._dialect.lease_max_age,
            clock=time.monotonic,
        )

    def close(self) -> None:
        """Close the writer connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _usable(self) -> Connection | None:
        """The writer connection, replaced first if the backend reports it broken (the server
        restarted, the network cut it): at most one new try a second; ``None`` until one works.
        What is written meanwhile is lost and counted, as any failed batch."""
        conn = self._conn
        if conn is not None and not conn.broken():
            return conn
        if conn is not None:
            log.warning("nvm store: the writer's connection is broken; connecting again")
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None
        if time.monotonic() < self._next_connect:
            return None
        self._next_connect = time.monotonic() + 1.0
        try:
            self.connect()
        except Exception as exc:
            log.warning("nvm store: the writer cannot connect: %s", exc)
            return None
        self._ids.clear()  # Reserved ids were in the old session's view; reserve afresh.
        log.info("nvm store: the writer is connected again")
        return self._conn

    def run(self, get: Get, done: Done, after_batch: Callable[[], None]) -> None:
        """Consume items until :data:`STOP`; ``after_batch`` runs after each record transaction."""
        assert self._conn is not None  # connect() first.
        held: object = None
        while True:
            item = held if held is not None else get(None)
            held = None
            if isinstance(item, str):  # STOP
                return
            conn = self._usable()
            if isinstance(item, Call):
                if conn is None:
                    done(item.token, ConnectionError("the store cannot be reached"), None)
                else:
                    done(item.token, *self.run_call(item))
                continue
            batch = list(cast(list[Record], item))
            deadline = time.monotonic() + self._linger
            while len(batch) < self._max_rows:
                try:
                    nxt = get(max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if isinstance(nxt, list):
                    batch.extend(nxt)
                else:
                    held = nxt
                    break
            if conn is None:
                self.write_errors += len(batch)
            else:
                self._write_records(conn, batch)
            after_batch()

    def run_call(self, call: Call) -> tuple[BaseException | None, object]:
        """Run ``call`` in a transaction of its own; ``(error, result)``."""
        conn = self._conn
        assert conn is not None  # connect() first.
        try:
            fn = getattr(self, "op_" + call.op)
            conn.begin()
            result = fn(conn, *call.args)
            conn.commit()
        except Exception as exc:
            with contextlib.suppress(Exception):  # A broken connection cannot roll back either.
                conn.rollback()
            return exc, None
        return None, result

    def _write_records(self, conn: Connection, batch: list[Record]) -> None:
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
            with contextlib.suppress(Exception):  # A broken connection cannot roll back either.
                conn.rollback()
            self.op_forget_caches(conn)
            self.write_errors += len(batch)
        else:
            self.rows_written += len(batch)

    def _reserve_ids(self, conn: Connection, count: int) -> None:
        """Make sure ``count`` flow ids are reserved (whole segments, own transaction)."""
        size = 1 << self._seg_bits
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
        seg_bits = self._seg_bits
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
            for ident, (t0, t, by, vpn_user, vpn_session, base, pkey, dkey, tail) in zip(
                ids, part, strict=True
            ):
                if vpn_user is None and by is not None:
                    lease = lookup(by, t0)
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
                append((ident, ident >> seg_bits, cid, pid, did, *tail))
            times = [p[1] for p in part]
            conn.execute(SEGMENT_UPSERT, (ids.start >> seg_bits, min(times), max(times)))
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

    # -- calls (``Call.op`` names the method without its ``op_`` prefix) ---------------------

    def op_noop(self, conn: Connection) -> None:
        """Nothing: a flush (its transaction follows every row queued before it)."""

    def op_execute(self, conn: Connection, sql: str, params: Sequence[object]) -> int:
        """One statement; its affected row count."""
        return conn.execute(sql, params)

    def op_executemany(self, conn: Connection, sql: str, rows: Sequence[Row]) -> None:
        """One statement per parameter row."""
        conn.executemany(sql, rows)

    def op_migrate(self, conn: Connection) -> int:
        """Apply the missing migrations; the latest schema version."""
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

    def op_record_lease(
        self,
        conn: Connection,
        username: str,
        session_id: str,
        addr: str,
        start: float,
        end: float | None,
        device: tuple[str, str, str] = ("", "", ""),
    ) -> None:
        """Record (or update) a lease of ``addr`` (canonical); ``device`` is what the login said of
        the machine: platform, computer name, unique id (``""``: not said, stored as NULL)."""
        platform, name, unique_id = (value or None for value in device)
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
                "(username, session_id, address, lease_start, lease_end, "
                "device_platform, device_name, device_unique_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (username, session_id, addr, start, end, platform, name, unique_id),
            )
        self._invalidate(addr)

    def op_end_lease(self, conn: Connection, session_id: str, addr: str | None, end: float) -> None:
        """End the open leases of ``session_id`` (on ``addr`` only, if given)."""
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

    def op_forget_caches(self, conn: Connection) -> None:
        """Forget cached leases and dimension ids (after retention or a failed write)."""
        self._invalidate(None)
        for dim in (self._contexts, self._processes, self._destinations):
            dim.clear()

    def _invalidate(self, address: str | None) -> None:
        if self._leases is not None:
            self._leases.invalidate(address)


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


def _identity(key: Hashable) -> Row:
    return cast(Row, key)


def _process_values(key: Hashable) -> Row:
    *fields, modules = cast(tuple[object, ...], key)
    return (*fields, modules_json(cast(tuple[tuple[str | None, str | None], ...], modules)))
