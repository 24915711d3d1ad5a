"""Fixtures of the NVM API tests: a real SQLite store with the data set of nvm_api_data, the app,
a client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from nvm_api_data import (
    ENDPOINTS,
    FLOWS,
    INTERFACE,
    OTHER_TOKEN,
    SAVED_STATS,
    T0,
    TOKEN,
    live_stats,
)
from starlette.testclient import TestClient

from ocgate.nvm._hub import FlowHub
from ocgate.nvm._records import Normalised
from ocgate.nvm.api import create_app
from ocgate.nvm.store import Store, open_store


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture
def store(runner: asyncio.Runner, tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite://{tmp_path}/nvm.db")
    runner.run(store.open())
    runner.run(store.migrate())
    runner.run(
        store.record_lease(
            username="alice", session_id="s1", address="10.8.0.2", start=T0 - 100, end=None
        )
    )
    records: list[Normalised] = [*FLOWS, *ENDPOINTS, INTERFACE]
    runner.run(store.write_batch(records))
    runner.run(store.save_exporter_stats(SAVED_STATS))
    runner.run(store.flush())
    try:
        yield store
    finally:
        runner.run(store.close())


@pytest.fixture
def hub() -> FlowHub:
    return FlowHub()


@pytest.fixture
def client(store: Store, hub: FlowHub) -> Iterator[TestClient]:
    app = create_app(store, hub, [TOKEN, OTHER_TOKEN], stats=live_stats)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app, headers=headers) as client:
        yield client
    hub.close()
