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
runs in the same process on the collector's store and live hub. ``service.internal_api()`` gives
the API's GET routes in-process, without HTTP or tokens, with or without ``nvm-api-listen``.

Alone (``ocgate nvm serve -c FILE``), the collector reads only the collector keys of ``FILE``
(:func:`ocgate.config.load_collector_config`), serves ``metrics-listen`` itself, and reports any
configuration error, found while loading or while starting, as one
``file:line: key: problem (expected: …)`` line on stderr with exit status 1.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- the collector's process runner.
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ocgate.config import CollectorConfig, Config, load_collector_config
from ocgate.errors import ConfigError, OcgateError
from ocgate.nvm._collector import Collector, LeasePublisher
from ocgate.nvm._config import NvmSettings
from ocgate.nvm._hub import FlowHub
from ocgate.nvm._listeners import start_listeners
from ocgate.nvm._siem import build_sinks
from ocgate.nvm.store import Store, open_store
from ocgate.nvm.store._sqlite import make_private_dirs

if TYPE_CHECKING:
    from ocgate.nvm.api._internal import InternalApi

__all__ = [
    "NvmService",
    "open_collector",
    "open_nvm_store",
    "run_standalone",
    "start_embedded_collector",
]

log = logging.getLogger("ocgate.nvm")


_STORE_FORM = "a writable SQLite path or a reachable PostgreSQL database"


async def open_nvm_store(url: str) -> Store:
    """Open and migrate the store at ``url`` (creating a SQLite file's directory, mode 0700).

    :raises ConfigError: (key ``nvm-store``) the directory cannot be made or the database cannot
        be opened or reached.
    """
    where = url.split("@")[-1]  # Never the password of a PostgreSQL URL.
    if not url.startswith(("postgresql://", "postgres://")):
        path = url.removeprefix("sqlite://")
        directory = os.path.dirname(path)
        if directory:
            try:
                make_private_dirs(directory)
            except OSError as exc:
                message = f"cannot create {directory}: {exc.strerror or exc}"
                raise ConfigError(message, key="nvm-store", expected=_STORE_FORM) from None
    store = open_store(url)
    try:
        await store.open()
    except OcgateError:
        raise
    except Exception as exc:  # sqlite3.Error, psycopg.Error: the drivers share no base class.
        with contextlib.suppress(Exception):
            await store.close()
        message = f"cannot open the NVM store {where}: {exc}".splitlines()[0]
        raise ConfigError(message, key="nvm-store", expected=_STORE_FORM) from None
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
        allow=settings.exporter_networks(),
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
    metrics: asyncio.Server | None = None

    def internal_api(self) -> InternalApi:
        """The API's GET routes on this collector's store, hub and live counters, called
        in-process without HTTP or tokens (for the admin console; ``nvm-api-listen`` need not
        be set). Needs the ``ocgate[api]`` extra (starlette).

        :raises ImportError: starlette is not installed.
        """
        from ocgate.nvm.api._internal import InternalApi

        collector = self.collector
        return InternalApi(collector.store, self.hub, stats=collector.exporter_stats)

    async def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            await self.metrics.wait_closed()
            self.metrics = None
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
    """Collector, hub, then the API (``nvm-api-listen``) and metrics (``settings.metrics_listen``).

    :raises ConfigError: a file the settings name is unusable, or the API extra is missing.
    :raises OSError: a listener could not bind.
    """
    hub = FlowHub()
    collector = await open_collector(settings, lease_events=lease_events, hub=hub)
    service = NvmService(collector=collector, hub=hub)
    try:
        if settings.api_listen:
            service.api = await _start_api(settings, collector, hub)
        if settings.metrics_listen:
            service.metrics = await _start_metrics(settings.metrics_listen, collector)
    except BaseException:
        await service.close()
        raise
    return service


async def _start_metrics(listen: str, collector: Collector) -> asyncio.Server:
    from ocgate.metrics import parse_listen_address, serve_metrics
    from ocgate.nvm._metrics import CollectorMetrics

    host, port = parse_listen_address(listen)
    server = await serve_metrics(host, port, CollectorMetrics(collector.stats).render)
    log.info("event=listening proto=metrics address=%s", (host, port))
    return server


async def _start_api(settings: NvmSettings, collector: Collector, hub: FlowHub) -> ApiHandle:
    from ocgate.metrics import parse_listen_address
    from ocgate.nvm._tokens import load_tokens

    try:
        from ocgate.nvm.api import create_app, serve_api
    except ImportError as exc:
        raise ConfigError(
            str(exc), key="nvm-api-listen", expected="pip install 'ocgate[api]'"
        ) from None
    assert settings.api_listen is not None
    assert settings.api_token_file is not None  # NvmSettings checks it.
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


def _check_standalone(config: CollectorConfig) -> None:
    settings = config.settings
    if not (settings.listen or settings.dtls_listen):
        raise ConfigError(
            "no collector listener is configured",
            file=config.source,
            key="nvm-listen",
            expected="nvm-listen = udp://0.0.0.0:2055 or nvm-dtls-listen = dtls://0.0.0.0:4740",
        )


def run_standalone(config_path: str, *, debug: int = 0) -> int:
    """``ocgate nvm serve``: run the collector alone until SIGINT/SIGTERM.

    :returns: 0 after a signal; 1, with one line on stderr, for a configuration error or a
        listener that cannot bind.
    """
    logging.basicConfig(
        level=logging.DEBUG if debug >= 3 else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    config: CollectorConfig | None = None
    try:
        config = load_collector_config(config_path)
        _check_standalone(config)
        for warning in config.warnings:
            log.warning("event=config-warning %s", warning)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(config.settings))
    except ConfigError as exc:
        located = exc if config is None else config.locate(exc)
        print(f"ocgate nvm: error: {located}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ocgate nvm: error: cannot start the collector: {exc}", file=sys.stderr)
        return 1
    return 0
