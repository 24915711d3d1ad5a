"""Running the NVM collector: embedded in ``ocgate serve``, or alone (``ocgate nvm serve``).

Embedding (what the gateway does)::

    leases = LeasePublisher()
    service = await start_embedded_collector(config, lease_events=leases)
    ...
    leases.lease_started(username, session_id, "10.10.0.5", time.time())   # tunnel up
    leases.lease_ended(username, session_id, None, time.time())            # tunnel down
    ...
    await service.close()   # API, then the collector: flush, save templates and counters, store

With ``nvm-api-listen`` set, the REST/WebSocket API (``ocgate.nvm.api``, extra ``ocgate[api]``)
runs in the same process on the collector's store and live hub.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- the collector's process runner.
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Protocol

from ocgate.config import Config, load_config
from ocgate.errors import ConfigError
from ocgate.nvm._collector import Collector, LeasePublisher
from ocgate.nvm._config import NvmSettings
from ocgate.nvm._hub import FlowHub
from ocgate.nvm._listeners import start_listeners
from ocgate.nvm._siem import build_sinks
from ocgate.nvm.store import Store, open_store

__all__ = [
    "NvmService",
    "open_collector",
    "open_nvm_store",
    "run_standalone",
    "start_embedded_collector",
]

log = logging.getLogger("ocgate.nvm")


async def open_nvm_store(url: str) -> Store:
    """Open and migrate the store at ``url`` (creating a SQLite file's directory)."""
    if not url.startswith(("postgresql://", "postgres://")):
        path = url.removeprefix("sqlite://")
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
    store = open_store(url)
    await store.open()
    try:
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    return store


async def open_collector(
    settings: NvmSettings,
    *,
    lease_events: LeasePublisher | None = None,
    hub: FlowHub | None = None,
    store: Store | None = None,
) -> Collector:
    """Open the store (unless given), start the pipeline, sinks and listeners.

    :param lease_events: the gateway's lease publisher (flows are attributed to its leases).
    :param hub: the live hub the API subscribes to (a new one when ``None``).
    :param store: an opened store to use instead of ``settings.store`` (not closed by us).
    """
    own = store is None
    if store is None:
        store = await open_nvm_store(settings.store)
    collector = Collector(
        store=store,
        privacy=settings.privacy,
        hub=hub,
        sinks=build_sinks(settings),
        allow=settings.allow,
        retention_days=settings.retention_days,
    )
    collector.owns_store = own
    try:
        await collector.start(lease_events=lease_events)
        collector.listeners = await start_listeners(collector, settings)
    except BaseException:
        await collector.close()
        raise
    return collector


@dataclass(slots=True)
class NvmService:
    """A running collector with its live hub and, when configured, the REST/WebSocket API."""

    collector: Collector
    hub: FlowHub
    api: ApiHandle | None = None

    async def close(self) -> None:
        if self.api is not None:
            self.hub.close()  # Open WebSocket streams end with code 1001.
            await self.api.close()
            self.api = None
        await self.collector.close()


class ApiHandle(Protocol):
    async def close(self) -> None: ...


async def start_service(
    settings: NvmSettings, *, lease_events: LeasePublisher | None = None
) -> NvmService:
    """Collector, hub and (with ``nvm-api-listen``) the API, started in that order."""
    hub = FlowHub()
    collector = await open_collector(settings, lease_events=lease_events, hub=hub)
    service = NvmService(collector=collector, hub=hub)
    if settings.api_listen:
        try:
            service.api = await _start_api(settings, collector, hub)
        except BaseException:
            await service.close()
            raise
    return service


async def _start_api(settings: NvmSettings, collector: Collector, hub: FlowHub) -> ApiHandle:
    from ocgate.metrics import parse_listen_address
    from ocgate.nvm.api import create_app, load_tokens, serve_api

    assert settings.api_listen is not None
    if settings.api_token_file is None:
        raise ConfigError("the API needs bearer tokens", key="nvm-api-token-file")
    app = create_app(
        collector.store, hub, load_tokens(settings.api_token_file), stats=collector.exporter_stats
    )
    host, port = parse_listen_address(settings.api_listen)
    server = await serve_api(app, host, port)
    log.info("event=listening proto=nvm-api address=%s", (host, port))
    return server


async def start_embedded_collector(
    config: Config, *, lease_events: LeasePublisher | None
) -> NvmService:
    """Start the collector (and its API) inside the gateway process (module docstring).

    :raises ConfigError: inconsistent ``nvm-*`` settings.
    :raises OSError: a listener could not bind.
    """
    return await start_service(NvmSettings.from_config(config), lease_events=lease_events)


async def _run(settings: NvmSettings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = await start_service(settings)
    collector = service.collector
    listeners = collector.listeners
    log.info(
        "nvm: collector running (%s), store %s",
        ", ".join(str(b) for b in getattr(listeners, "bound", [])),
        settings.store.split("@")[-1],
    )
    try:
        await stop.wait()
    finally:
        log.info("nvm: stopping; %s", collector.stats())
        await service.close()


def run_standalone(config_path: str, *, debug: int = 0) -> int:
    """``ocgate nvm serve``: run the collector alone until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=logging.DEBUG if debug >= 3 else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        settings = NvmSettings.from_config(load_config(config_path))
    except ConfigError as exc:
        print(f"ocgate nvm: {exc}", file=sys.stderr)
        return 1
    if not (settings.listen or settings.dtls_listen):
        print("ocgate nvm: no nvm-listen or nvm-dtls-listen in the configuration", file=sys.stderr)
        return 1
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(settings))
    return 0
