"""PostgreSQL backend of the NVM store (extra ``ocgate[postgres]``: psycopg 3).

Same schema and SQL as SQLite (see ``_schema.py``); the adapter rewrites ``?`` placeholders to
``%s``, inserts flows with ``COPY … FROM STDIN`` and serialises migrators with a transaction-level
advisory lock. The writer connection runs in explicit transactions, readers in autocommit mode.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, LiteralString

from ocgate.errors import ConfigError
from ocgate.nvm.store._engine import Connection, SqlStore
from ocgate.nvm.store._rows import Row, quoted

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresDialect", "PostgresStore"]

_EXTRA_HINT: Final = "PostgreSQL storage needs psycopg 3: pip install 'ocgate[postgres]'"
# pg_advisory_xact_lock key of the migration runner ("ocgn" in ASCII).
_MIGRATION_LOCK: Final = 0x6F63676E
SHARED_LEASE_AGE: Final = 5.0
"""Seconds the writer trusts a cached lease history: several gateways may share the database, and
a lease another node records reaches this node's attribution within this time."""


@functools.lru_cache(maxsize=256)
def _pg_sql(sql: str) -> LiteralString:
    """``?`` placeholders → ``%s`` (literal ``%`` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgConnection:
    """:class:`Connection` over a psycopg 3 connection."""

    def __init__(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._conn.execute(_pg_sql(sql), params).rowcount

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return self._conn.execute(_pg_sql(sql), params).fetchall()

    def executemany(self, sql: str, rows: Sequence[Row]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_pg_sql(sql), rows)

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        statement: LiteralString = f"COPY {table} ({quoted(columns)}) FROM STDIN"
        with self._conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def begin(self) -> None:
        # psycopg opens a transaction implicitly with the first statement.
        pass

    def commit(self) -> None:
        self._conn.commit()

    def rollback(self) -> None:
        self._conn.rollback()

    def close(self) -> None:
        self._conn.close()

    def broken(self) -> bool:
        return bool(self._conn.closed or self._conn.broken)


def _require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:  # pragma: no cover -- the dev environment has the extra installed.
        raise ConfigError(_EXTRA_HINT) from None


class PostgresDialect:
    """Connections to one PostgreSQL database."""

    name: Final = "postgres"

    def __init__(self, url: str, *, lease_max_age: float | None = SHARED_LEASE_AGE) -> None:
        self.url = url
        self.lease_max_age = lease_max_age

    def connect(self, *, writer: bool) -> Connection:
        _require_psycopg()
        import psycopg

        conn: psycopg.Connection[tuple[object, ...]] = psycopg.connect(
            self.url, autocommit=not writer
        )
        return _PgConnection(conn)

    def lock_migrations(self, conn: Connection) -> None:
        conn.query("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))


class PostgresStore(SqlStore):
    """The NVM store in a PostgreSQL database.

    :param url: a libpq connection string or URL (``postgresql://user@host/db``).
    :param lease_max_age: seconds the writer trusts a cached lease history: several gateways may
        record leases in one database, and another node's lease must reach attribution here.
    :raises ConfigError: psycopg is not installed (install the ``ocgate[postgres]`` extra).
    """

    def __init__(
        self,
        url: str,
        *,
        max_batch_rows: int = 20000,
        linger: float = 0.05,
        queue_batches: int = 64,
        readers: int = 4,
        retention_chunk: int = 10000,
        lease_max_age: float | None = SHARED_LEASE_AGE,
    ) -> None:
        _require_psycopg()
        self._url = url
        super().__init__(
            PostgresDialect(url, lease_max_age=lease_max_age),
            max_batch_rows=max_batch_rows,
            linger=linger,
            queue_batches=queue_batches,
            readers=readers,
            retention_chunk=retention_chunk,
        )

    def __repr__(self) -> str:
        # The URL may carry a password: show only that it is a PostgreSQL store.
        return "PostgresStore(<url>)"
