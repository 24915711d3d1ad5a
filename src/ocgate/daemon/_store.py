"""Opening the durable session store of the authentication service."""

from __future__ import annotations

from collections.abc import Callable

from ocgate.config import Config
from ocgate.daemon._wire import ConfigReferences
from ocgate.session import SessionStore

__all__ = ["open_session_store", "session_store_path", "shared_store_url"]


def shared_store_url(config: Config) -> str | None:
    """The Redis/Valkey server ``session-store`` names (sessions shared by several gateways),
    or ``None`` for the embedded store alone."""
    url = config.session_store
    return url if url is not None and url.startswith(("redis://", "rediss://")) else None


def session_store_path(config: Config) -> str:
    """``session-store``'s path, or by default a file beside ``socket-file`` (runtime state).

    With a shared (Redis) store the node keeps this file too, as its durable copy of the
    sessions it serves."""
    if config.session_store is not None and shared_store_url(config) is None:
        return config.session_store.removeprefix("sqlite://")
    return f"{config.socket_file}.sessions.sqlite"


def open_session_store(
    path: str,
    *,
    now: float,
    references: ConfigReferences,
    on_queued: Callable[[], None] | None = None,
) -> SessionStore:
    """The SQLite store at ``path``: every unexpired session of an earlier run comes back.

    ``references``: the configuration sessions are written with by reference (and restored
    with). ``on_queued``: group commit (see :class:`~ocgate.session.SqliteSessionStore`).
    """
    from ocgate.session import SqliteSessionStore

    store: SessionStore = SqliteSessionStore.open(
        path, now=now, on_queued=on_queued, codec=references
    )
    return store
