"""Opening the durable session store of the authentication service."""

from __future__ import annotations

from ocgate.config import Config
from ocgate.session import SessionStore

__all__ = ["open_session_store", "session_store_path"]


def session_store_path(config: Config) -> str:
    """``session-store``'s path, or by default a file beside ``socket-file`` (runtime state)."""
    if config.session_store is not None:
        return config.session_store.removeprefix("sqlite://")
    return f"{config.socket_file}.sessions.sqlite"


def open_session_store(path: str, *, now: float) -> SessionStore:
    """The SQLite store at ``path``: every unexpired session of an earlier run comes back."""
    from ocgate.session import SqliteSessionStore

    store: SessionStore = SqliteSessionStore.open(path, now=now)
    return store
