"""SQLite backend of the NVM store: the embedded default.

The database runs in WAL mode with ``synchronous=NORMAL`` (a crash may lose the last
transactions but never corrupts the file; readers never block the writer), with 16 KiB pages
(set when the file is created: fewer, larger pages per write transaction measured faster).
The one writer connection is owned by the engine's writer, which runs in a child process;
readers get their own ``query_only`` connections. ``:memory:`` is not supported (each
connection would see its own database).

The database holds who went where: it is private. :meth:`SqliteStore.open` creates a missing
database file mode 0600 and :func:`make_private_dirs` (used by ``ocgate.nvm._serve``) its missing
directories mode 0700, whatever the umask (an explicit ``chmod`` after creating). SQLite gives the
``-wal`` and ``-shm`` files the database file's mode. Existing files and directories keep theirs.

Checkpoints (copying the WAL back into the database file) run in a separate thread as
``PASSIVE`` checkpoints, which never block the writer, instead of inside the writer's commits;
measured, that alone lifts the sustained ingest rate by about a fifth. The writer still
checkpoints by itself if the WAL ever grows past ``_WRITER_CHECKPOINT_PAGES`` (a safety net should
the checkpoint thread fall behind).
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- the store is an I/O adapter, not a sans-IO core.
import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from typing import Final

from ocgate.nvm.store._engine import Connection, SqlStore
from ocgate.nvm.store._rows import Row, quoted

__all__ = ["SqliteDialect", "SqliteStore", "create_private_file", "make_private_dirs"]

_BUSY_TIMEOUT_S: Final = 30.0
_CHECKPOINT_INTERVAL_S: Final = 0.5
_WRITER_CHECKPOINT_PAGES: Final = 20000
_PAGE_SIZE: Final = 16384
_FILE_MODE: Final = 0o600
_DIR_MODE: Final = 0o700
log = logging.getLogger("ocgate.nvm.store")


def make_private_dirs(directory: str) -> None:
    """Create ``directory`` and its missing parents, each mode 0700 whatever the umask.

    :raises OSError: one of them cannot be created.
    """
    missing: list[str] = []
    path = os.path.abspath(directory)
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, _DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
            continue  # Made meanwhile by someone else: theirs, mode and all.
        os.chmod(path, _DIR_MODE)


def create_private_file(path: str) -> bool:
    """Create ``path`` empty, mode 0600 whatever the umask, unless it exists.

    :returns: whether it was created.
    :raises OSError: it cannot be created (a missing directory among them).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)
    return True


class _SqliteConnection:
    """:class:`Connection` over :mod:`sqlite3` in autocommit mode with explicit BEGIN."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        rows: list[Row] = self._conn.execute(sql, params).fetchall()
        return rows

    def executemany(self, sql: str, rows: Sequence[Row]) -> None:
        self._conn.executemany(sql, rows)

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        marks = ", ".join("?" * len(columns))
        self._conn.executemany(f"INSERT INTO {table} ({quoted(columns)}) VALUES ({marks})", rows)

    def begin(self) -> None:
        self._conn.execute("BEGIN")

    def commit(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()

    def broken(self) -> bool:
        return False  # A file: nothing between the writer and it can go away.


class SqliteDialect:
    """Connections to one SQLite file."""

    name: Final = "sqlite"
    lease_max_age: Final = None  # One file, one gateway: its writer records every lease.

    def __init__(self, path: str) -> None:
        self.path = path

    def connect(self, *, writer: bool) -> Connection:
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            if writer:
                # Only takes effect while the file is still empty (before WAL mode).
                conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA temp_store=MEMORY")
                conn.execute("PRAGMA cache_size=-65536")
                conn.execute(f"PRAGMA wal_autocheckpoint={_WRITER_CHECKPOINT_PAGES}")
            else:
                conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error:
            conn.close()
            raise
        return _SqliteConnection(conn)

    def lock_migrations(self, conn: Connection) -> None:
        # Called first in the migration's (still empty, deferred) transaction: restart it as
        # IMMEDIATE so a second migrating process waits for the write lock (busy timeout) and
        # then sees the versions the first one applied.
        conn.rollback()
        conn.execute("BEGIN IMMEDIATE")


class SqliteStore(SqlStore):
    """The NVM store in a SQLite file (created if missing).

    :param path: database file; its directory must exist.
    :param tuning: keyword arguments of :class:`~ocgate.nvm.store._engine.SqlStore`; the writer
        runs in a child process unless ``writer_process=False``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_batch_rows: int = 20000,
        linger: float = 0.05,
        queue_batches: int = 64,
        readers: int = 4,
        retention_chunk: int = 10000,
        writer_process: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        super().__init__(
            SqliteDialect(self.path),
            max_batch_rows=max_batch_rows,
            linger=linger,
            queue_batches=queue_batches,
            readers=readers,
            retention_chunk=retention_chunk,
            writer_process=writer_process,
        )

        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    async def open(self) -> None:
        with contextlib.suppress(FileNotFoundError):  # No directory: sqlite3 says so below.
            create_private_file(self.path)
        await super().open()
        if self._checkpointer is None:
            self._stop.clear()
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="nvm-store-checkpoint", daemon=True
            )
            self._checkpointer.start()

    async def close(self) -> None:
        thread, self._checkpointer = self._checkpointer, None
        if thread is not None:
            self._stop.set()
            await asyncio.to_thread(thread.join)
        await super().close()

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            while not self._stop.wait(_CHECKPOINT_INTERVAL_S):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    log.warning("nvm store: checkpoint failed: %s", exc)
        finally:
            conn.close()
