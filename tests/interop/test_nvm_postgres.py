"""The NVM store tests, run against SQLite and a real PostgreSQL server.

Every test of ``tests/unit/nvm/store/test_nvm_store.py`` that takes the ``store`` fixture is
imported here; the ``store`` fixture below is parametrised over both backends, so SQLite and
PostgreSQL must pass the very same assertions. The PostgreSQL cluster is private to this module
(see ``_postgres.py``); each test gets a fresh database.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocgate.nvm.store import PostgresStore, SqliteStore, Store
from ocgate.nvm.store._schema import MIGRATIONS
from tests.unit.nvm.store import test_nvm_store as _cases

from ._postgres import PgCluster, postgres_skip_reason, start_cluster

pytestmark = pytest.mark.interop

runner = _cases.runner
for _name, _fn in vars(_cases).items():
    if _name.startswith("test_") and "store" in inspect.signature(_fn).parameters:
        globals()[_name] = _fn


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    reason = postgres_skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(params=["sqlite", "postgres"])
def store(
    request: pytest.FixtureRequest, runner: asyncio.Runner, tmp_path: Path
) -> Iterator[Store]:
    database = None
    cluster: PgCluster | None = None
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        database = cluster.create_database()
        store: SqliteStore | PostgresStore = PostgresStore(cluster.url(database), linger=0.001)
    else:
        store = SqliteStore(tmp_path / "nvm.db", linger=0.001)
    runner.run(store.open())
    try:
        runner.run(store.migrate())
        yield store
    finally:
        runner.run(store.close())
        if cluster is not None and database is not None:
            cluster.drop_database(database)


def test_postgres_migrations_race(pg_cluster: PgCluster, runner: asyncio.Runner) -> None:
    """Two stores migrating the same fresh database at once: both succeed, one schema."""
    url = pg_cluster.url(pg_cluster.create_database())

    async def both() -> list[int]:
        stores = [PostgresStore(url), PostgresStore(url)]
        for s in stores:
            await s.open()
        try:
            return list(await asyncio.gather(*(s.migrate() for s in stores)))
        finally:
            for s in stores:
                await s.close()

    latest = MIGRATIONS[-1].version
    assert runner.run(both()) == [latest, latest]
