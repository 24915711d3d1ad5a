"""LeaseCache: per-address lease histories, and how long one is trusted (``max_age``)."""

from __future__ import annotations

import pytest

from ocgate.nvm.store._leases import Lease, LeaseCache

ALICE = Lease(start=100.0, end=None, username="alice", session_id="s1")
BOB = Lease(start=200.0, end=None, username="bob", session_id="s2")


class _Database:
    """The lease rows another writer may change behind the cache's back."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Lease]] = {"10.0.0.1": [ALICE]}
        self.queries = 0

    def load(self, address: str) -> list[Lease]:
        self.queries += 1
        return list(self.rows.get(address, []))


def test_without_max_age_a_history_lives_until_invalidated() -> None:
    db = _Database()
    cache = LeaseCache(db.load)
    assert cache.lookup("10.0.0.1", 250.0) == ALICE
    db.rows["10.0.0.1"] = [ALICE, BOB]  # Another writer: this cache never hears of it ...
    assert cache.lookup("10.0.0.1", 250.0) == ALICE
    cache.invalidate("10.0.0.1")  # ... only its own writer's changes invalidate.
    assert cache.lookup("10.0.0.1", 250.0) == BOB
    assert db.queries == 2


def test_with_max_age_another_writers_lease_is_seen_once_the_history_is_old() -> None:
    db, now = _Database(), [0.0]
    cache = LeaseCache(db.load, max_age=5.0, clock=lambda: now[0])
    assert cache.lookup("10.0.0.1", 250.0) == ALICE
    db.rows["10.0.0.1"] = [ALICE, BOB]
    now[0] = 5.0
    assert cache.lookup("10.0.0.1", 250.0) == ALICE  # Still within max_age: no query.
    assert db.queries == 1
    now[0] = 5.5
    assert cache.lookup("10.0.0.1", 250.0) == BOB
    assert cache.lookup("10.0.0.1", 150.0) == ALICE
    assert db.queries == 2


def test_max_age_needs_a_clock() -> None:
    with pytest.raises(ValueError, match="clock"):
        LeaseCache(lambda _address: [], max_age=1.0)
