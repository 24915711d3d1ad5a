"""Interning of flow dimensions (endpoint context, process, hostname) into small tables.

Theory of operation
-------------------
Most of a flow's bytes repeat across the flows of one endpoint (user, UDID, VPN attribution) or
of one process (name, hashes, module list). The writer replaces them with the integer id of a
row of a dimension table, so ``flows`` rows stay narrow and its indexes are integer-keyed.

Each :class:`Dimension` keeps an in-memory map ``key tuple -> (id, refresh_after)``. The misses
of a batch are interned together: one ``executemany`` of ``… ON CONFLICT (key) DO UPDATE`` and
one ``SELECT … WHERE key IN (…)`` per 500 keys (``key`` is a digest of the values, so NULLs
compare equal and several writers agree on one row). Every dimension row
carries ``last_seen``, the newest ``time_end`` of a flow using it, refreshed at most every
``refresh`` seconds of flow time, so retention can delete rows no kept flow refers to. The map
is cleared when it outgrows its bound, when a write transaction fails (it may hold ids that were
rolled back) and after retention.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from typing import Final, Protocol, cast

from ocgate.nvm.store._rows import Row, dumps, quoted

__all__ = ["Dimension"]

_DEFAULT_ENTRIES: Final = 262144
_SELECT_CHUNK: Final = 500


class _Conn(Protocol):
    def executemany(self, sql: str, rows: Sequence[Row]) -> None: ...

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...


class Dimension:
    """One dimension table and its cache (used by the writer thread only).

    :param table: table name; it has ``id``, ``key``, the ``columns`` and ``last_seen``.
    :param encode: the column values of a key tuple.
    :param refresh: seconds of flow time between ``last_seen`` refreshes of one row.
    """

    def __init__(
        self,
        table: str,
        columns: Sequence[str],
        encode: Callable[[Hashable], Row],
        *,
        refresh: float,
        max_entries: int = _DEFAULT_ENTRIES,
    ) -> None:
        self.table = table
        self._encode = encode
        self._refresh = refresh
        self._max = max_entries
        marks = ", ".join("?" * (len(columns) + 2))
        self._upsert = (
            f"INSERT INTO {table} (key, {quoted(columns)}, last_seen) VALUES ({marks}) "
            f"ON CONFLICT (key) DO UPDATE SET last_seen = CASE WHEN excluded.last_seen > "
            f"{table}.last_seen THEN excluded.last_seen ELSE {table}.last_seen END"
        )
        self._touch = f"UPDATE {table} SET last_seen = ? WHERE id = ? AND last_seen < ?"
        self.cache: dict[Hashable, tuple[int, float]] = {}
        """``key -> (id, refresh_after)``; the writer reads it directly on its fast path."""
        self._pending: dict[int, float] = {}
        self._missing: dict[Hashable, float] = {}
        self.loads = 0
        """Cache misses resolved in the database."""

    def resolve(self, key: Hashable, t: float) -> int | None:
        """The id of ``key`` noting a flow at time ``t``; ``None`` if not cached yet.

        Keys that are not cached are noted and interned by :meth:`load_missing`.
        """
        entry = self.cache.get(key)
        if entry is None:
            if t > self._missing.get(key, t - 1.0):
                self._missing[key] = t
            return None
        ident = entry[0]
        if t > entry[1]:
            self.cache[key] = (ident, t + self._refresh)
            if t > self._pending.get(ident, t - 1.0):
                self._pending[ident] = t
        return ident

    def load_missing(self, conn: _Conn) -> None:
        """Intern the keys :meth:`resolve` did not know (upsert, then read their ids)."""
        if not self._missing:
            return
        self.loads += len(self._missing)
        by_digest: dict[str, Hashable] = {}
        rows: list[Row] = []
        for key, t in self._missing.items():
            values = self._encode(key)
            digest = hashlib.sha256(dumps(list(values)).encode()).hexdigest()[:32]  # type: ignore[arg-type]
            by_digest[digest] = key
            rows.append((digest, *values, t))
        conn.executemany(self._upsert, rows)
        digests = list(by_digest)
        for start in range(0, len(digests), _SELECT_CHUNK):
            chunk = digests[start : start + _SELECT_CHUNK]
            marks = ", ".join("?" * len(chunk))
            for found, ident in conn.query(
                f"SELECT key, id FROM {self.table} WHERE key IN ({marks})", chunk
            ):
                key = by_digest[str(found)]
                self.cache[key] = (int(cast(int, ident)), self._missing[key] + self._refresh)
        self._missing.clear()

    def pending(self) -> list[Row]:
        """Parameters of :attr:`touch_sql` for the refreshes noted since the last call."""
        rows: list[Row] = [(t, ident, t) for ident, t in self._pending.items()]
        self._pending.clear()
        return rows

    @property
    def touch_sql(self) -> str:
        """``UPDATE`` of ``last_seen`` taking ``(t, id, t)``."""
        return self._touch

    def trim(self) -> None:
        """Empty the cache if it outgrew its bound (call between batches, never within one)."""
        if len(self.cache) > self._max:
            self.cache.clear()

    def clear(self) -> None:
        """Forget every cached id."""
        self.cache.clear()
        self._pending.clear()
        self._missing.clear()
