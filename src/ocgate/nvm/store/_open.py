"""Choosing the store backend from a URL or path."""

from __future__ import annotations

from ocgate.nvm.store._base import Store
from ocgate.nvm.store._postgres import PostgresStore
from ocgate.nvm.store._sqlite import SqliteStore

__all__ = ["open_store"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_SCHEME = "sqlite://"


def open_store(url_or_path: str) -> Store:
    """The store for ``url_or_path`` (not opened yet: call ``open()`` and ``migrate()``).

    ``postgresql://…`` / ``postgres://…`` → :class:`PostgresStore`; ``sqlite:///abs/path``,
    ``sqlite://rel/path`` or a plain path → :class:`SqliteStore`.

    :raises ConfigError: PostgreSQL requested but the ``ocgate[postgres]`` extra is missing.
    :raises ValueError: empty path.
    """
    if url_or_path.startswith(_POSTGRES_SCHEMES):
        return PostgresStore(url_or_path)
    path = url_or_path.removeprefix(_SQLITE_SCHEME)
    if not path:
        raise ValueError("empty NVM store path")
    return SqliteStore(path)
