"""Sessions and address leases: who is logged in, with which cookie, holding which addresses.

Pure (sans-IO): time is passed in as ``now`` and randomness through ``random_bytes``. The one
exception is :class:`SqliteSessionStore`, which writes the sessions to a file so they survive a
restart; it is imported on first use (PEP 562), so a worker, which never opens the store, does
not load ``sqlite3``.
"""

from __future__ import annotations

from ocgate.session._lease import Ipv4Pool, Ipv6Pool
from ocgate.session._session import Session, SessionCookie, assign_leases, release_leases
from ocgate.session._store import (
    COOKIE_LENGTH,
    MemorySessionStore,
    SessionStore,
    cookie_digest_untrusted,
    parse_cookie_untrusted,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocgate.session._sqlite import SqliteSessionStore

__all__ = [
    "COOKIE_LENGTH",
    "Ipv4Pool",
    "Ipv6Pool",
    "MemorySessionStore",
    "Session",
    "SessionCookie",
    "SessionStore",
    "SqliteSessionStore",
    "assign_leases",
    "cookie_digest_untrusted",
    "parse_cookie_untrusted",
    "release_leases",
]


def __getattr__(name: str) -> object:
    if name == "SqliteSessionStore":
        from ocgate.session._sqlite import SqliteSessionStore

        return SqliteSessionStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
