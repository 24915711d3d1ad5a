"""Opening the durable session store of the authentication service."""

from __future__ import annotations

from collections.abc import Callable

from ocgate.config import Config
from ocgate.session import SessionStore

__all__ = ["open_session_store", "session_store_path"]


def session_store_path(config: Config) -> str:
    """``session-store``'s path, or by default a file beside ``socket-file`` (runtime state)."""
    if config.session_store is not None:
        return config.session_store.removeprefix("sqlite://")
    return f"{config.socket_file}.sessions.sqlite"


def open_session_store(
    path: str, *, now: float, on_queued: Callable[[], None] | None = None
) -> SessionStore:
    """The SQLite store at ``path``: every unexpired session of an earlier run comes back.

    ``on_queued``: group commit (see :class:`~ocgate.session.SqliteSessionStore`).
    """
    from ocgate.session import SqliteSessionStore

    store: SessionStore = SqliteSessionStore.open(path, now=now, on_queued=on_queued)
    return store
