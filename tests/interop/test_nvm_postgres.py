"""The NVM store tests, run against SQLite and a real PostgreSQL server.

Every test of ``tests/unit/nvm/store/test_nvm_store.py`` that takes the ``store`` fixture is
imported here; the ``store`` fixture below is parametrised over both backends, so SQLite and
PostgreSQL must pass the very same assertions. The PostgreSQL cluster is private to this module
(see ``_postgres.py``); each test gets a fresh database.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocgate.nvm.store import FlowFilter, PostgresStore, SqliteStore, Store
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


@pytest.mark.parametrize("max_age", [0.2, None])
def test_a_lease_recorded_by_another_node_reaches_attribution(
    pg_cluster: PgCluster, runner: asyncio.Runner, max_age: float | None
) -> None:
    """Two gateways on one PostgreSQL database (issue 14 §4): node B records a lease of an address
    whose history node A's writer has cached (as "no lease"); with ``lease_max_age`` A's next flow
    from that address is attributed to B's user. Without it (``None``, what a lone writer may
    assume) A keeps its stale history — which is why PostgreSQL stores set it."""
    url = pg_cluster.url(pg_cluster.create_database())
    addr, exporter = "10.8.0.7", "udp://10.8.0.7:50000"
    node_a = PostgresStore(url, linger=0.001, lease_max_age=max_age)
    node_b = PostgresStore(url, linger=0.001, lease_max_age=max_age)
    for node in (node_a, node_b):
        runner.run(node.open())
    try:
        runner.run(node_a.migrate())
        _cases.write(runner, node_a, [_cases.flow(_cases.T10, exporter=exporter, src_port=1)])
        runner.run(
            node_b.record_lease(
                username="erin", session_id="s9", address=addr, start=_cases.T10, end=None
            )
        )
        time.sleep(0.3)
        _cases.write(runner, node_a, [_cases.flow(_cases.T10 + 1, exporter=exporter, src_port=2)])
        flows = _cases.all_flows(runner, node_a, FlowFilter())
        got = {f.src_port: f.vpn_user for f in flows}
        assert got == {1: None, 2: "erin" if max_age is not None else None}
    finally:
        for node in (node_a, node_b):
            runner.run(node.close())


def test_the_writer_connects_again_after_its_connection_is_lost(
    pg_cluster: PgCluster, runner: asyncio.Runner
) -> None:
    """The server ends the writer's connection (a restart, a cut network, an administrator's
    ``pg_terminate_backend``): the batch in flight is lost and counted, and the next ones are
    written on a new connection — the writer does not stop (issue 14 §5, failure model)."""
    import psycopg

    database = pg_cluster.create_database()
    url = pg_cluster.url(database)
    store = PostgresStore(url, linger=0.001)
    runner.run(store.open())
    try:
        runner.run(store.migrate())
        _cases.write(runner, store, [_cases.flow(_cases.T10, src_port=1)])
        with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
        _cases.write(runner, store, [_cases.flow(_cases.T10 + 1, src_port=2)])  # May be lost.
        _cases.write(runner, store, [_cases.flow(_cases.T10 + 2, src_port=3)])
        ports = {f.src_port for f in _cases.all_flows(runner, store, FlowFilter())}
        assert {1, 3} <= ports
        assert store.write_errors == (0 if 2 in ports else 1)
    finally:
        runner.run(store.close())
