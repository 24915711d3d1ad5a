"""Sessions that survive a restart: :class:`SqliteSessionStore`, a durable :class:`SessionStore`.

Theory of operation
-------------------
* The store is a :class:`~ocgate.session.MemorySessionStore` whose mutations are written through
  to a SQLite file. The in-memory dicts stay the index every lookup uses; SQLite is only written,
  and read once, when the store is opened. ``create``, ``mark_connected``, ``mark_disconnected``,
  ``invalidate``, ``expire`` and :meth:`SqliteSessionStore.save` each commit one small
  transaction before they return — unless the owner asked for **group commit** (``on_queued``):
  then the row changes queue in order and :meth:`SqliteSessionStore.flush` commits the queue in
  one transaction. A commit costs far more than the statements in it (the write lock, WAL frames
  of every page touched, the WAL index), and one login makes five or six row changes, so the
  authentication service commits at most every few milliseconds instead (``bench_gateway.py
  logins``). The cost: a crash loses the changes still queued (a session created in the last
  milliseconds is forgotten and its user logs in again), and a failed commit is reported by
  ``flush``, not by the mutation, so the changes of that batch hold in memory only.
* The owner changes some fields itself (``ipv4``, ``ipv6``, ``hostname``, ``device``,
  ``remote_addr``, ``user_agent``, ``group``, ``extra``); it calls
  :meth:`SqliteSessionStore.save` afterwards, or the change is lost at the next restart.
* Cookies are never stored, only their SHA-256 digest, as in memory. ``Session.extra`` holds
  arbitrary objects (a ``SessionSettings`` with its frozen ``Config``, a ``RadiusResult``) and is
  stored as a pickle, made by the store's ``codec`` (``ExtraCodec``: the authentication service
  writes its own configuration by reference, not whole; ``ocgate.daemon._wire``). Unpickling runs
  code, so **the database is private to the authentication service**: the file (and its
  ``-wal``/``-shm`` companions and the ``.lock`` file) has mode 0600, a directory the store
  creates has mode 0700, and anyone who can write the file can run code as the service. Never
  place it where another user can write, never load a file from elsewhere.
* Times are **wall-clock seconds** (``time.time()``), not a monotonic clock: they must mean the
  same thing after the process (or the machine) restarts.
* Opening the file restores every session that is not over at ``now``. A session recorded as
  connected (the gateway stopped while its tunnel was up) comes back disconnected, with no tunnel
  and with its cookie good for its own ``cookie_timeout`` from ``now``, so the client reconnects
  with the same cookie and, after :meth:`SqliteSessionStore.restore_leases`, gets the same
  addresses. Sessions over at ``now`` are deleted and listed in ``expired_at_open`` (for
  accounting stops); a row that cannot be decoded (for example an ``extra`` whose class was
  renamed by an upgrade) is deleted with a warning, so the user simply logs in again.
* Durability: WAL journal with ``synchronous=NORMAL``. A power loss may lose the last commits (a
  session created just before is forgotten and its user logs in again) but never corrupts the
  file; a crash of the process alone loses nothing written through, and with group commit only
  what was still queued.
* One owner: opening takes an exclusive ``flock`` on ``PATH.lock`` (which records the owner's
  pid) and keeps it until :meth:`SqliteSessionStore.close`. A second opener, in this process or
  another, gets :class:`BlockingIOError`. The lock dies with its process, so a crash leaves no
  stale lock behind. A store is used from the thread that opened it.
* The file is recognised by ``PRAGMA application_id`` and versioned by ``PRAGMA user_version``
  (the tables and the row codec are in :mod:`ocgate.session._sqlite_schema`).
  A file that is not a SQLite database, belongs to another program, is damaged or comes from a
  newer ocgate raises :class:`~ocgate.errors.ConfigError` naming the path.
* Bans: :meth:`SqliteSessionStore.save_bans` replaces the stored ban table with a
  :meth:`~ocgate.bans.BanTable.snapshot` (at most :data:`MAX_SAVED_BANS` rows, bans first, then by
  score); :meth:`SqliteSessionStore.load_bans` reads it back for
  :meth:`~ocgate.bans.BanTable.restore`.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from ipaddress import IPv4Address, IPv6Network
from types import TracebackType
from typing import Final

from ocgate.bans import SavedBan
from ocgate.errors import ConfigError
from ocgate.session._lease import Ipv4Pool, Ipv6Pool
from ocgate.session._session import Session, SessionCookie
from ocgate.session._sqlite_schema import (
    ADOPT_SESSION,
    APPLICATION_ID,
    DELETE_SESSION,
    INSERT_BAN,
    INSERT_SESSION,
    PICKLE,
    SCHEMA,
    SCHEMA_VERSION,
    SELECT_BANS,
    SELECT_SESSIONS,
    UPDATE_ADDRESSES,
    UPDATE_SESSION,
    UPDATE_STATE,
    ExtraCodec,
    address_row,
    ban_row,
    decode_ban,
    decode_session,
    encode_session,
    state_row,
)
from ocgate.session._store import MemorySessionStore, RandomBytes

__all__ = ["MAX_SAVED_BANS", "SqliteSessionStore"]

MAX_SAVED_BANS: Final = 65536
"""At most this many ban rows are stored; bans and high scores are kept first."""

_BUSY_TIMEOUT_S: Final = 5.0
log = logging.getLogger("ocgate.session")


class SqliteSessionStore(MemorySessionStore):
    """A :class:`~ocgate.session.SessionStore` kept in a SQLite file across restarts.

    Opening restores the sessions stored in ``path`` that are not over at ``now`` (see the module
    docstring). All times, ``now`` included, are wall-clock seconds (``time.time()``).

    :param path: the database file; created (mode 0600) if missing, and its directory (mode 0700)
        if that is missing too.
    :param now: the wall-clock time of opening.
    :param random_bytes: source of cookie and session-id randomness.
    :raises BlockingIOError: another open store (in any process) holds the file.
    :raises ConfigError: the file is not an ocgate session database, is damaged, or is newer.
    :raises OSError: the file or its directory cannot be created or opened.

    :param on_queued: group commit: mutations queue their row changes instead of committing, and
        this is called when the queue gets its first change; the owner then calls :meth:`flush`
        soon (the authentication service: a few milliseconds later, on its event loop).
    :param codec: writes and reads each session's ``extra`` (plain pickle by default).

    Every mutation raises :class:`OSError` if the database cannot be written (the change then
    holds in memory only, except for ``create``, which is undone) and :class:`ValueError` after
    :meth:`close`; with group commit, :meth:`flush` raises the :class:`OSError` instead.
    """

    __slots__ = ("_codec", "_conn", "_lock_fd", "_on_queued", "_queued", "expired_at_open", "path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        now: float,
        random_bytes: RandomBytes = secrets.token_bytes,
        on_queued: Callable[[], None] | None = None,
        codec: ExtraCodec = PICKLE,
    ) -> None:
        super().__init__(random_bytes)
        self.path = os.fspath(path)
        self._codec = codec
        self._on_queued = on_queued
        self._queued: list[tuple[str, Sequence[object]]] = []
        self.expired_at_open: list[Session] = []
        """Sessions found over when the file was opened; already deleted, their tunnels gone."""
        self._conn: sqlite3.Connection | None = None
        self._lock_fd = -1
        _make_directory(self.path)
        self._lock_fd = _lock(self.path)
        try:
            self._conn = _connect(self.path)
            self._restore(now)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise _bad_file(self.path, exc) from exc
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        now: float,
        *,
        random_bytes: RandomBytes = secrets.token_bytes,
        on_queued: Callable[[], None] | None = None,
        codec: ExtraCodec = PICKLE,
    ) -> SqliteSessionStore:
        """The same as ``SqliteSessionStore(path, now=now, ...)`` with the same keywords."""
        return cls(path, now=now, random_bytes=random_bytes, on_queued=on_queued, codec=codec)

    def __repr__(self) -> str:
        return f"SqliteSessionStore({self.path!r}, sessions={len(self)})"

    def __enter__(self) -> SqliteSessionStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Commit what is queued, close the database and release the lock; calling it again does
        nothing.

        The sessions stay readable in memory; any further mutation raises :class:`ValueError`.
        A queue that cannot be committed is logged and lost (the file keeps its last commit).
        """
        if self._conn is not None and self._queued:
            try:
                self.flush()
            except OSError as exc:
                log.error("event=session-store-write-failed db=%s error=%r", self.path, str(exc))
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()
        finally:
            fd, self._lock_fd = self._lock_fd, -1
            if fd >= 0:
                os.close(fd)

    # --- opening ------------------------------------------------------------------------------

    def _restore(self, now: float) -> None:
        rows = self._db().execute(SELECT_SESSIONS).fetchall()
        bad: list[tuple[object]] = []
        gone: list[tuple[str, bytes]] = []
        rearmed: list[Session] = []
        for row in rows:
            try:
                session = decode_session(row, self._codec)
            # Unpickling can raise nearly anything (ModuleNotFoundError, AttributeError after an
            # upgrade renamed a class, UnpicklingError); any of them means "drop this row".
            except Exception as exc:
                log.warning("event=session-dropped db=%s row=%r error=%r", self.path, row[0], exc)
                bad.append((row[0],))
                continue
            if session.is_expired(now):
                session.connected, session.tunnel_id = False, None
                self.expired_at_open.append(session)
                gone.append((session.sid, session.token_digest))
                continue
            if session.connected:
                session.connected, session.tunnel_id = False, None
                session.expires_at = now + session.cookie_timeout
                rearmed.append(session)
            self._by_digest[session.token_digest] = session
            self._by_sid[session.sid] = session
        with self._transaction() as tx:
            tx.executemany("DELETE FROM sessions WHERE sid = ?", bad)
            tx.executemany(DELETE_SESSION, gone)
            tx.executemany(UPDATE_STATE, [state_row(s) for s in rearmed])

    # --- SessionStore, written through ----------------------------------------------------------

    def create(
        self,
        *,
        username: str,
        groups: Sequence[str],
        group: str | None,
        now: float,
        user_agent: str | None,
        remote_addr: str | None,
        cookie_timeout: float,
        session_timeout: float | None,
    ) -> tuple[SessionCookie, Session]:
        cookie, session = super().create(
            username=username,
            groups=groups,
            group=group,
            now=now,
            user_agent=user_agent,
            remote_addr=remote_addr,
            cookie_timeout=cookie_timeout,
            session_timeout=session_timeout,
        )
        session.cookie_timeout = cookie_timeout
        try:
            self._write(INSERT_SESSION, encode_session(session, self._codec))
        except BaseException:
            super().invalidate(session)
            raise
        return cookie, session

    def adopt(self, session: Session) -> None:
        """Keep ``session``, made elsewhere (another gateway, through a shared store), as if it
        had been created here: indexed by its cookie digest and sid, and written through. A
        session already known by that digest or sid is replaced.

        :raises TypeError: ``session.extra`` holds something that cannot be pickled.
        """
        for old in (self._by_digest.get(session.token_digest), self._by_sid.get(session.sid)):
            if old is not None:
                super().invalidate(old)
        self._by_digest[session.token_digest] = session
        self._by_sid[session.sid] = session
        try:
            self._write(ADOPT_SESSION, encode_session(session, self._codec))
        except BaseException:
            super().invalidate(session)
            raise

    def mark_connected(self, session: Session, now: float, *, tunnel_id: int | None = None) -> None:
        super().mark_connected(session, now, tunnel_id=tunnel_id)
        if self._owns(session):
            self._write(UPDATE_STATE, state_row(session))

    def mark_disconnected(
        self, session: Session, now: float, cookie_timeout: float, *, tunnel_id: int | None = None
    ) -> None:
        super().mark_disconnected(session, now, cookie_timeout, tunnel_id=tunnel_id)
        if self._owns(session):
            self._write(UPDATE_STATE, state_row(session))

    def invalidate(self, session: Session) -> None:
        super().invalidate(session)
        self._write(DELETE_SESSION, (session.sid, session.token_digest))

    def expire(self, now: float) -> list[Session]:
        # The same choice as MemorySessionStore.expire, with every delete in one transaction.
        expired = [s for s in self._by_sid.values() if s.is_expired(now)]
        for session in expired:
            super().invalidate(session)
        with self._transaction() as tx:
            tx.executemany(DELETE_SESSION, [(s.sid, s.token_digest) for s in expired])
        return expired

    def save(self, session: Session) -> None:
        """Write every field of ``session`` after the owner changed some of them.

        Does nothing for a session that is not (or no longer) in the store, so a late save cannot
        bring an invalidated session back.

        :raises TypeError: ``session.extra`` holds something that cannot be pickled.
        """
        if self._owns(session):
            row = encode_session(session, self._codec)
            self._write(UPDATE_SESSION, (*row[1:], row[0]))

    # --- leases and bans ----------------------------------------------------------------------

    def restore_leases(self, pool4: Ipv4Pool | None, pool6: Ipv6Pool | None) -> list[Session]:
        """Reserve every session's addresses again in ``pool4`` and ``pool6`` after opening.

        Call it with the pools before they lease anything. Sessions are taken oldest first. An
        address of a pool's range is leased from that pool again; an address outside it (or with
        no pool for its family) is an explicit one (``explicit-ipv4``, RADIUS) and is kept as it
        is unless an older session already holds it. An address that cannot be kept (its lease
        is taken, or it is inside a pool's range but no longer a lease of it, e.g. after
        ``ipv6-subnet-prefix`` changed) is cleared and saved, and the client gets a new one when
        it reconnects.

        :returns: the sessions that lost an address, oldest first.
        """
        lost: list[Session] = []
        explicit: set[IPv4Address | IPv6Network] = set()
        for session in sorted(self._by_sid.values(), key=lambda s: (s.created, s.sid)):
            keep4 = _reserve4(session, pool4, explicit)
            keep6 = _reserve6(session, pool6, explicit)
            if not (keep4 and keep6):
                session.ipv4 = session.ipv4 if keep4 else None
                session.ipv6 = session.ipv6 if keep6 else None
                lost.append(session)
        with self._transaction() as tx:
            tx.executemany(UPDATE_ADDRESSES, [address_row(s) for s in lost])
        return lost

    def save_bans(self, entries: Iterable[SavedBan]) -> None:
        """Replace the stored bans with ``entries`` (a :meth:`~ocgate.bans.BanTable.snapshot`).

        At most :data:`MAX_SAVED_BANS` are kept: bans first, then the highest scores.
        """
        kept = sorted(entries, key=lambda e: (e.banned_until is None, -e.score, e.address))
        with self._transaction() as tx:
            tx.execute("DELETE FROM bans")
            tx.executemany(INSERT_BAN, [ban_row(e) for e in kept[:MAX_SAVED_BANS]])

    def load_bans(self) -> list[SavedBan]:
        """The bans last saved with :meth:`save_bans` (wall-clock times), bans first.

        A row that cannot be decoded is skipped.
        """
        try:
            rows = self._db().execute(SELECT_BANS).fetchall()
        except sqlite3.Error as exc:
            raise self._write_failed(exc) from exc
        bans: list[SavedBan] = []
        for row in rows:
            try:
                bans.append(decode_ban(row))
            except ValueError as exc:
                log.warning("event=ban-dropped db=%s row=%r error=%r", self.path, row[0], exc)
        return bans

    # --- helpers ------------------------------------------------------------------------------

    def _owns(self, session: Session) -> bool:
        return self._by_sid.get(session.sid) is session

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"session database {self.path} is closed")
        return self._conn

    @property
    def queued(self) -> int:
        """Row changes waiting for :meth:`flush` (group commit)."""
        return len(self._queued)

    def flush(self) -> None:
        """Commit the queued row changes in one transaction (group commit; nothing if none).

        :raises OSError: the database cannot be written; the queue is dropped (the changes hold
            in memory only, and a later save of a session writes its whole row again).
        """
        if self._queued:
            with self._transaction():
                pass  # _transaction runs the queue first.

    def _write(self, statement: str, params: Sequence[object]) -> None:
        """Run one statement in its own (autocommit) transaction, or queue it (group commit)."""
        conn = self._db()
        if self._on_queued is not None:
            self._queued.append((statement, params))
            if len(self._queued) == 1:
                self._on_queued()
            return
        try:
            conn.execute(statement, params)
        except sqlite3.Error as exc:
            raise self._write_failed(exc) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction that first runs the queued row changes, in their order."""
        conn = self._db()
        queued, self._queued = self._queued, []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement, params in queued:
                conn.execute(statement, params)
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._write_failed(exc) from exc
            raise

    def _write_failed(self, exc: sqlite3.Error) -> OSError:
        # The single place where SQLite errors of a running store become OSError (disk full,
        # I/O error, a file damaged underneath): the change holds in memory only.
        return OSError(errno.EIO, f"session database write failed: {exc}", self.path)


# --- the file -----------------------------------------------------------------------------------


def _make_directory(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
        os.chmod(parent, 0o700)


def _open_private(path: str) -> int:
    """Open ``path`` read-write, creating it with mode 0600; take group and other access away."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError("not a regular file", file=path)
        if stat.S_IMODE(mode) & 0o077:
            log.warning("event=mode-tightened file=%s mode=%o", path, stat.S_IMODE(mode))
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock(path: str) -> int:
    """Take the exclusive lock of the database at ``path``; return the lock file's descriptor."""
    lock_path = path + ".lock"
    fd = _open_private(lock_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise BlockingIOError(
            errno.EWOULDBLOCK,
            f"session database {path} is in use by another process{who}",
            lock_path,
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _bad_file(path: str, why: object) -> ConfigError:
    return ConfigError(
        f"not a usable ocgate session database: {why}",
        file=path,
        expected="a file written by ocgate (move it away to start with no sessions)",
    )


_CACHE_KIB = 256
"""SQLite page cache of the store's connection, in KiB."""


def _connect(path: str) -> sqlite3.Connection:
    os.close(_open_private(path))
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        _check_schema(conn, path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            log.warning("event=no-wal db=%s journal_mode=%s", path, mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        # The store is read whole once, at start, then written row by row: SQLite's default page
        # cache (2 MB) would only keep sec-mod's memory up. The OS caches the file anyway.
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


def _check_schema(conn: sqlite3.Connection, path: str) -> None:
    """Accept an empty file or one of ours at a known version; refuse anything else."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id == version == tables == 0:
        return
    if app_id != APPLICATION_ID:
        raise _bad_file(path, f"it belongs to another program (application_id {app_id:#x})")
    if version != SCHEMA_VERSION:
        raise _bad_file(path, f"schema version {version}; this ocgate reads {SCHEMA_VERSION}")
    problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise _bad_file(path, "; ".join(map(str, problems[:3])))


# --- leases -------------------------------------------------------------------------------------


def _reserve4(
    session: Session, pool: Ipv4Pool | None, explicit: set[IPv4Address | IPv6Network]
) -> bool:
    addr = session.ipv4
    if addr is None:
        return True
    if pool is None or addr not in pool.network:
        if addr in explicit:
            return False
        explicit.add(addr)
        return True
    if not pool.owns(addr) or addr in pool:
        return False
    got = pool.allocate(session.username, prefer=addr)
    if got != addr:  # pragma: no cover - a free address of the pool is always honoured.
        pool.release(got)
        return False
    return True


def _reserve6(
    session: Session, pool: Ipv6Pool | None, explicit: set[IPv4Address | IPv6Network]
) -> bool:
    lease = session.ipv6
    if lease is None:
        return True
    if pool is None or not lease.overlaps(pool.network):
        if lease in explicit:
            return False
        explicit.add(lease)
        return True
    if not pool.owns(lease) or lease in pool:
        return False
    got = pool.allocate(session.username, prefer=lease)
    if got != lease:  # pragma: no cover - a free lease of the pool is always honoured.
        pool.release(got)
        return False
    return True
