"""SqliteSessionStore: what survives closing and reopening the file.

The behaviour it shares with MemorySessionStore is tested over both stores in
test_session_store.py. Times here are wall-clock seconds, as the durable store requires.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import sqlite3
import stat
from collections.abc import Callable
from contextlib import closing
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path
from types import MappingProxyType

import pytest

from ocgate.bans import BanPolicy, BanTable, SavedBan
from ocgate.config import AuthMethod, Config
from ocgate.errors import ConfigError, InvalidCookie
from ocgate.gateway import SessionSettings
from ocgate.radius import RadiusResult
from ocgate.session import (
    Ipv4Pool,
    Ipv6Pool,
    Session,
    SessionCookie,
    SessionStore,
    SqliteSessionStore,
    assign_leases,
)

T0 = 1_700_000_000.0
COOKIE_TIMEOUT = 300.0
SETTINGS = SessionSettings(
    config=Config(
        source="/etc/ocserv/ocserv.conf",
        auth=(AuthMethod(name="plain", params={"passwd": "/etc/ocserv/ocpasswd"}),),
    ),
    explicit_ipv4=IPv4Address("192.0.2.50"),
    hostname="laptop",
)
RADIUS = RadiusResult(username="alice", groups=("staff",), framed_ipv4=IPv4Address("192.0.2.50"))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sessions.sqlite"


def create(
    store: SessionStore,
    now: float = T0,
    user: str = "alice",
    session_timeout: float | None = None,
) -> tuple[SessionCookie, Session]:
    return store.create(
        username=user,
        groups=["staff", "vpn"],
        group="vpn",
        now=now,
        user_agent="Open AnyConnect VPN Agent v9.01",
        remote_addr="192.0.2.7",
        cookie_timeout=COOKIE_TIMEOUT,
        session_timeout=session_timeout,
    )


def fields(session: Session) -> tuple[object, ...]:
    return tuple(getattr(session, f.name) for f in dataclasses.fields(Session))


def pools(subnet_prefix: int = 64) -> tuple[Ipv4Pool, Ipv6Pool]:
    return (
        Ipv4Pool(IPv4Network("10.10.0.0/24"), predictable=True),
        Ipv6Pool(IPv6Network("fd00:10::/48"), subnet_prefix, predictable=True),
    )


def sql(path: Path, statement: str) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(statement)
        conn.commit()


# --- restoring sessions -----------------------------------------------------------------------


def test_reopen_restores_sessions_and_cookies(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        cookie, s = create(store)
        s.ipv4 = IPv4Address("10.10.0.7")
        s.ipv6 = IPv6Network("fd00:10:0:7::/64")
        s.hostname, s.device = "laptop", "vpns3"
        s.remote_addr, s.user_agent = "198.51.100.1", "AnyConnect Windows 4.10"
        s.extra.update(settings=SETTINGS, radius=RADIUS)
        store.save(s)
        other_cookie, t = create(store, now=T0 + 1, user="bob", session_timeout=3600)
        store.mark_connected(t, T0 + 2, tunnel_id=3)
        store.mark_disconnected(t, T0 + 5, COOKIE_TIMEOUT, tunnel_id=3)
        before = {x.sid: fields(x) for x in store.sessions()}

    with SqliteSessionStore(db, now=T0 + 100) as again:
        assert {x.sid: fields(x) for x in again.sessions()} == before
        restored = again.lookup(cookie, T0 + 100)
        assert restored.sid == s.sid
        assert restored.extra == {"settings": SETTINGS, "radius": RADIUS}
        assert restored.cookie_timeout == COOKIE_TIMEOUT
        assert again.lookup(other_cookie, T0 + 100).username == "bob"
        assert again.expired_at_open == []
        # The same randomness again cannot collide with what was restored.
        new_cookie, new = create(again, now=T0 + 100)
        assert new.sid not in before
        assert new_cookie not in (cookie, other_cookie)


def test_expired_session_is_gone_after_reopen(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        old_cookie, old = create(store, now=T0)
        _, new = create(store, now=T0 + 200, user="bob")

    with SqliteSessionStore(db, now=T0 + COOKIE_TIMEOUT) as store:
        assert [s.sid for s in store.sessions()] == [new.sid]
        assert [s.sid for s in store.expired_at_open] == [old.sid]
        with pytest.raises(InvalidCookie):
            store.lookup(old_cookie, T0 + COOKIE_TIMEOUT)

    # The row was deleted: even an earlier clock does not bring it back.
    with SqliteSessionStore(db, now=T0) as store:
        assert [s.sid for s in store.sessions()] == [new.sid]
        assert store.expired_at_open == []


def test_connected_session_comes_back_disconnected(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        cookie, s = create(store)
        store.mark_connected(s, T0 + 1, tunnel_id=7)

    later = T0 + 10_000.0
    with SqliteSessionStore(db, now=later) as store:
        back = store.lookup(cookie, later)
        assert not back.connected
        assert back.tunnel_id is None
        assert back.expires_at == later + COOKIE_TIMEOUT
        assert store.lookup(cookie, later + COOKIE_TIMEOUT - 1) is back
        with pytest.raises(InvalidCookie, match="expired"):
            store.lookup(cookie, later + COOKIE_TIMEOUT)

    # The new expiry was written: it does not move again at the next open.
    with SqliteSessionStore(db, now=later + 100) as store:
        assert store.by_sid(s.sid).expires_at == later + COOKIE_TIMEOUT
    with SqliteSessionStore(db, now=later + COOKIE_TIMEOUT) as store:
        assert store.sessions() == []


def test_connected_session_past_its_deadline_is_dropped(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        _, s = create(store, session_timeout=600)
        store.mark_connected(s, T0 + 1, tunnel_id=7)
    with SqliteSessionStore(db, now=T0 + 600) as store:
        assert store.sessions() == []
        (gone,) = store.expired_at_open
        assert gone.sid == s.sid
        assert not gone.connected


def test_survives_the_process_dying(db: Path) -> None:
    cookie_file = db.parent / "cookie"
    db.parent.mkdir()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits without returning to pytest.
        code = 1
        try:
            store = SqliteSessionStore(db, now=T0)
            cookie, s = create(store)
            store.mark_connected(s, T0, tunnel_id=1)
            cookie_file.write_text(cookie)
            code = 0
        finally:
            os._exit(code)  # No close(): the database and its lock are dropped by the kernel.
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with SqliteSessionStore(db, now=T0 + 50) as store:
        s = store.lookup(cookie_file.read_text(), T0 + 50)
        assert (s.connected, s.expires_at) == (False, T0 + 50 + COOKIE_TIMEOUT)


def test_invalidate_and_expire_persist(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        _, gone = create(store)
        _, stale = create(store, now=T0 - 250, user="bob")
        _, kept = create(store, user="carol")
        store.invalidate(gone)
        assert store.expire(T0 + 50) == [stale]
    with SqliteSessionStore(db, now=T0 + 60) as store:
        assert [s.sid for s in store.sessions()] == [kept.sid]


def test_late_writes_never_bring_a_session_back(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        _, s = create(store)
        store.invalidate(s)
        s.hostname = "late"
        store.save(s)
        store.mark_connected(s, T0 + 1, tunnel_id=1)
        store.mark_disconnected(s, T0 + 2, COOKIE_TIMEOUT)
        with SqliteSessionStore(db.with_name("other.sqlite"), now=T0) as other:
            _, stranger = create(other)
        store.save(stranger)
    with SqliteSessionStore(db, now=T0 + 3) as store:
        assert store.sessions() == []


def test_unpicklable_extra_is_refused(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        _, s = create(store)
        s.extra["view"] = MappingProxyType({})
        with pytest.raises(TypeError, match=f"session {s.sid}: extra cannot be pickled"):
            store.save(s)


def test_undecodable_row_is_dropped(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        _, broken = create(store)
        _, fine = create(store, user="bob")
    sql(db, f"UPDATE sessions SET extra = x'8004deadbeef' WHERE sid = '{broken.sid}'")
    with caplog.at_level(logging.WARNING, logger="ocgate.session"):
        store = SqliteSessionStore(db, now=T0 + 1)
    with store:
        assert [s.sid for s in store.sessions()] == [fine.sid]
    assert f"event=session-dropped db={db} row='{broken.sid}'" in caplog.text
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (1,)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("groups", "'{\"staff\": 1}'"),
        ("groups", "'not json'"),
        ("extra", "x'80054e2e'"),  # A pickled None, not a dict.
        ("token_digest", "x'00'"),
        ("username", "x'00'"),
        ("created", "'yesterday'"),
        ("connected", "'yes'"),
        ("ipv4", "'10.0.0.300'"),
        ("extra", "'text'"),
    ],
)
def test_malformed_rows_are_dropped(db: Path, column: str, value: str) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        _, broken = create(store)
        _, fine = create(store, user="bob")
    sql(db, f"UPDATE sessions SET {column} = {value} WHERE sid = '{broken.sid}'")
    with SqliteSessionStore(db, now=T0 + 1) as store:
        assert [s.sid for s in store.sessions()] == [fine.sid]


def test_failed_write_undoes_create(db: Path) -> None:
    store = SqliteSessionStore(db, now=T0)
    store.close()
    with pytest.raises(ValueError, match="closed"):
        create(store)
    assert len(store) == 0
    store.close()  # Closing twice is fine.


def test_write_failures_raise_os_error(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        _, s = create(store)
        store._db().execute("PRAGMA query_only = ON")  # Every write now fails inside SQLite.
        with pytest.raises(OSError, match="session database write failed") as info:
            create(store, user="bob")
        assert info.value.errno == errno.EIO
        assert info.value.filename == str(db)
        assert store.sessions() == [s]  # The failed create was undone.
        with pytest.raises(OSError, match="readonly"):
            store.mark_connected(s, T0 + 1, tunnel_id=1)
        with pytest.raises(OSError, match="readonly"):
            store.save_bans([])
        assert s.connected  # Memory holds the change; the file does not.
        store._db().execute("PRAGMA query_only = OFF")
        store.expire(T0 + 2)  # The store still works once the file can be written again.


def test_satisfies_the_protocol(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as durable:
        store: SessionStore = durable
        assert store.sessions() == []
        assert repr(durable) == f"SqliteSessionStore({str(db)!r}, sessions=0)"


# --- leases -----------------------------------------------------------------------------------


@pytest.fixture
def leased(db: Path) -> Path:
    """A database with two pool-leased sessions, one with an explicit address, one with none."""
    v4, v6 = pools()
    with SqliteSessionStore(db, now=T0) as store:
        for i, user in enumerate(("alice", "bob")):
            _, s = create(store, now=T0 + i, user=user)
            assign_leases(s, v4, v6)
            store.save(s)
        _, s = create(store, now=T0 + 2, user="carol")
        s.ipv4 = IPv4Address("192.0.2.50")
        store.save(s)
        create(store, now=T0 + 3, user="dave")  # No address at all.
    return db


def by_user(store: SqliteSessionStore) -> dict[str, Session]:
    return {s.username: s for s in store.sessions()}


def test_leases_restore_into_fresh_pools(leased: Path) -> None:
    v4, v6 = pools()
    with SqliteSessionStore(leased, now=T0 + 10) as store:
        assert store.restore_leases(v4, v6) == []
        users = by_user(store)
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    assert (v4.in_use, v6.in_use) == (2, 2)
    for s in (alice, bob):
        assert s.ipv4 in v4
        assert s.ipv6 in v6
        # Nobody else can be given these addresses now.
        assert v4.allocate("mallory", prefer=s.ipv4) != s.ipv4
        assert v6.allocate("mallory", prefer=s.ipv6) != s.ipv6
    assert carol.ipv4 == IPv4Address("192.0.2.50")
    assert carol.ipv6 is None


def test_leases_that_cannot_be_kept_are_cleared(leased: Path) -> None:
    v4, _ = pools()
    v6 = pools(subnet_prefix=56)[1]  # ipv6-subnet-prefix changed since the leases were given.
    with SqliteSessionStore(leased, now=T0 + 10) as store:
        users = by_user(store)
        taken = v4.allocate("mallory", prefer=users["alice"].ipv4)
        # An explicit address that an older session already holds cannot be kept either.
        users["carol"].ipv4 = users["bob"].ipv4 = IPv4Address("192.0.2.60")
        assert store.restore_leases(v4, v6) == [users["alice"], users["bob"], users["carol"]]
        assert users["alice"].ipv4 is None
        assert users["bob"].ipv4 == IPv4Address("192.0.2.60")
        assert users["carol"].ipv4 is None
        assert all(s.ipv6 is None for s in users.values())
        assert (v4.in_use, v6.in_use) == (1, 0)
        assert taken in v4
    with SqliteSessionStore(leased, now=T0 + 20) as store:
        assert all(s.ipv6 is None for s in store.sessions())
        assert by_user(store)["alice"].ipv4 is None


def test_addresses_without_a_pool_are_kept(leased: Path) -> None:
    with SqliteSessionStore(leased, now=T0 + 10) as store:
        before = {s.sid: (s.ipv4, s.ipv6) for s in store.sessions()}
        assert store.restore_leases(None, None) == []
        assert {s.sid: (s.ipv4, s.ipv6) for s in store.sessions()} == before


def test_explicit_ipv6_held_twice_is_kept_once(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        sessions = [create(store, now=T0 + i, user=f"u{i}")[1] for i in range(2)]
        for s in sessions:
            s.ipv6 = IPv6Network("2001:db8:5::/64")
        assert store.restore_leases(*pools()) == [sessions[1]]
        assert [s.ipv6 for s in sessions] == [IPv6Network("2001:db8:5::/64"), None]


# --- bans -------------------------------------------------------------------------------------

POLICY = BanPolicy(max_score=50, reset_time=100, ban_time=30)


def test_bans_round_trip(db: Path) -> None:
    table = BanTable(POLICY)
    table.add_points("198.18.0.2", 60, now=10.0)  # Banned until 40 on the monotonic clock.
    table.add_points("198.18.0.3", 20, now=15.0)
    with SqliteSessionStore(db, now=T0) as store:
        store.save_bans(table.snapshot(now_mono=20.0, now_wall=T0))
    with SqliteSessionStore.open(db, T0 + 5) as store:
        saved = store.load_bans()
    assert saved == [
        SavedBan(address="198.18.0.2", score=60, last_reset=T0 - 10, banned_until=T0 + 20),
        SavedBan(address="198.18.0.3", score=20, last_reset=T0 - 5, banned_until=None),
    ]
    # A new process: its monotonic clock reads 1000 at wall time T0 + 5.
    restored = BanTable(POLICY)
    restored.restore(saved, now_mono=1000.0, now_wall=T0 + 5)
    assert restored.is_banned("198.18.0.2", 1014.9)
    assert not restored.is_banned("198.18.0.2", 1015.0)
    assert [(e.address, e.score) for e in restored.entries(1089.9)] == [("198.18.0.3", 20)]
    assert restored.entries(1090.0) == []


def test_saved_bans_are_bounded_and_replaced(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ocgate.session._sqlite.MAX_SAVED_BANS", 2)
    entries = [
        SavedBan(address=f"198.18.0.{i}", score=i, last_reset=T0, banned_until=None)
        for i in range(1, 5)
    ]
    entries.append(SavedBan(address="198.18.1.1", score=50, last_reset=T0, banned_until=T0 + 9))
    with SqliteSessionStore(db, now=T0) as store:
        store.save_bans(entries)
        assert [e.address for e in store.load_bans()] == ["198.18.1.1", "198.18.0.4"]
        store.save_bans([])
        assert store.load_bans() == []


def test_failed_ban_save_keeps_the_previous_bans(db: Path) -> None:
    before = [SavedBan(address="198.18.0.2", score=60, last_reset=T0, banned_until=T0 + 30)]
    unbindable = SavedBan(address="198.18.0.3", score=1, last_reset=[T0], banned_until=None)  # type: ignore[arg-type]
    with SqliteSessionStore(db, now=T0) as store:
        store.save_bans(before)
        with pytest.raises(OSError, match="write failed"):
            store.save_bans([unbindable])
        assert store.load_bans() == before


def test_malformed_ban_row_is_skipped(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = SavedBan(address="198.18.0.2", score=60, last_reset=T0, banned_until=T0 + 30)
    with SqliteSessionStore(db, now=T0) as store:
        store.save_bans([good, dataclasses.replace(good, address="198.18.0.3")])
    sql(db, "UPDATE bans SET score = 'many' WHERE address = '198.18.0.3'")
    with SqliteSessionStore(db, now=T0) as store, caplog.at_level(logging.WARNING):
        assert store.load_bans() == [good]
    assert "event=ban-dropped" in caplog.text


# --- the file ---------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private_whatever_the_umask(db: Path) -> None:
    old = os.umask(0)
    try:
        with SqliteSessionStore(db, now=T0) as store:
            create(store)
            assert mode(db.parent) == 0o700
            assert mode(db) == 0o600
            assert mode(Path(f"{db}.lock")) == 0o600
            assert mode(Path(f"{db}-wal")) == 0o600
            assert mode(Path(f"{db}-shm")) == 0o600
    finally:
        os.umask(old)


def test_loose_mode_is_tightened(db: Path) -> None:
    db.parent.mkdir(mode=0o755)
    db.touch(mode=0o644)
    db.chmod(0o644)
    with SqliteSessionStore(db, now=T0):
        assert mode(db) == 0o600
    assert mode(db.parent) == 0o755  # A directory it did not create is left alone.


def test_wal_mode(db: Path) -> None:
    with SqliteSessionStore(db, now=T0), closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)


def test_lock_refuses_a_second_opener(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as first:
        create(first)
        with pytest.raises(
            BlockingIOError, match=rf"in use by another process \(pid {os.getpid()}\)"
        ):
            SqliteSessionStore(db, now=T0)
    with SqliteSessionStore(db, now=T0) as second:
        assert len(second) == 1


def corrupt_garbage(db: Path) -> None:
    db.write_bytes(b"this is not a database at all\n" * 200)


def corrupt_foreign(db: Path) -> None:
    sql(db, "CREATE TABLE users (name TEXT)")


def corrupt_newer(db: Path) -> None:
    SqliteSessionStore(db, now=T0).close()
    sql(db, "PRAGMA user_version = 99")


def corrupt_pages(db: Path) -> None:
    with SqliteSessionStore(db, now=T0) as store:
        for i in range(200):
            create(store, user=f"user{i}")
    data = bytearray(db.read_bytes())
    assert len(data) > 3 * 4096
    data[4096 : 3 * 4096] = b"\xa5" * (2 * 4096)
    db.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (corrupt_garbage, "file is not a database"),
        (corrupt_foreign, "belongs to another program"),
        (corrupt_newer, "schema version 99; this ocgate reads 1"),
        (corrupt_pages, "malformed|corrupt|Page|page"),
    ],
)
def test_unusable_file_gives_a_clear_error(
    db: Path, damage: Callable[[Path], None], message: str
) -> None:
    db.parent.mkdir()
    damage(db)
    with pytest.raises(ConfigError, match=message) as info:
        SqliteSessionStore(db, now=T0)
    assert str(info.value).startswith(f"{db}: not a usable ocgate session database")
    # The failed open let go of the lock: a fresh file opens.
    db.unlink()
    with SqliteSessionStore(db, now=T0) as store:
        assert store.sessions() == []


def test_special_file_is_refused(db: Path) -> None:
    db.parent.mkdir()
    os.mkfifo(db, 0o600)
    with pytest.raises(ConfigError, match="not a regular file"):
        SqliteSessionStore(db, now=T0)


def test_directory_in_the_way_gives_an_os_error(db: Path) -> None:
    db.mkdir(parents=True)
    with pytest.raises(OSError, match=r"sessions\.sqlite"):
        SqliteSessionStore(db, now=T0)


def test_page_cache_is_small(db: Path) -> None:
    """The store is read whole at start, then written row by row: SQLite's default 2 MB page
    cache only held sec-mod's memory up (2.6 MB less with 1,000 sessions, bench_gateway)."""
    with SqliteSessionStore(db, now=T0) as store:
        assert store._conn.execute("PRAGMA cache_size").fetchone()[0] == -256


# --- group commit (on_queued) -------------------------------------------------------------------


def _rows(db: Path) -> list[tuple[str, int]]:
    """(sid, connected) of every row in the file, as another reader sees it."""
    with closing(sqlite3.connect(db)) as conn:
        return sorted(conn.execute("SELECT sid, connected FROM sessions").fetchall())


def test_group_commit_queues_row_changes_until_flush(db: Path) -> None:
    calls: list[int] = []
    with SqliteSessionStore(db, now=T0, on_queued=lambda: calls.append(store.queued)) as store:
        _, alice = create(store)
        _, bob = create(store, user="bob")
        store.mark_connected(alice, T0 + 1, tunnel_id=7)
        assert calls == [1]  # Called once, when the queue got its first change.
        assert store.queued == 3
        assert _rows(db) == []  # Nothing committed yet.
        store.flush()
        assert store.queued == 0
        assert _rows(db) == sorted([(alice.sid, 1), (bob.sid, 0)])
        store.invalidate(bob)
        assert calls == [1, 1]  # A new batch calls again.
    # Closing committed the last batch.
    assert _rows(db) == [(alice.sid, 1)]


def test_group_commit_keeps_the_order_of_changes(db: Path) -> None:
    # An expire (its own transaction) runs after the queued changes it follows, in one commit.
    with SqliteSessionStore(db, now=T0, on_queued=lambda: None) as store:
        _, alice = create(store)
        store.mark_connected(alice, T0 + 1)
        store.mark_disconnected(alice, T0 + 2, COOKIE_TIMEOUT)
        assert store.expire(T0 + 2 + COOKIE_TIMEOUT + 1) == [alice]
        assert store.queued == 0
        assert _rows(db) == []
    with SqliteSessionStore(db, now=T0 + 1) as again:
        assert again.sessions() == []


def test_group_commit_failure_is_raised_by_flush_and_memory_keeps_the_change(db: Path) -> None:
    with SqliteSessionStore(db, now=T0, on_queued=lambda: None) as store:
        _, alice = create(store)
        store.flush()
        store._db().execute("PRAGMA query_only = ON")
        store.mark_connected(alice, T0 + 1, tunnel_id=1)  # Queued: no error yet.
        with pytest.raises(OSError, match="session database write failed"):
            store.flush()
        assert store.queued == 0  # The batch is dropped; memory holds the change.
        assert alice.connected
        store._db().execute("PRAGMA query_only = OFF")
        store.save(alice)  # A later save writes the whole row again.
        store.flush()
    assert _rows(db) == [(alice.sid, 1)]
