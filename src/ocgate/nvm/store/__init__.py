"""Storage of NVM records: SQLite (embedded default) and PostgreSQL (extra ``ocgate[postgres]``).

``open_store(url_or_path)`` picks the backend; every backend implements :class:`Store`.
"""

from __future__ import annotations

from ocgate.nvm.store._base import FlowFilter, Page, Store, TopBy
from ocgate.nvm.store._open import open_store
from ocgate.nvm.store._postgres import PostgresStore
from ocgate.nvm.store._sqlite import SqliteStore

__all__ = ["FlowFilter", "Page", "PostgresStore", "SqliteStore", "Store", "TopBy", "open_store"]
