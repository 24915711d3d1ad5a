"""Sessions and address leases: who is logged in, with which cookie, holding which addresses.

Pure (sans-IO): time is passed in as ``now`` and randomness through ``random_bytes``. The one
exception is :class:`SqliteSessionStore`, which writes the sessions to a file so they survive a
restart.
"""

from __future__ import annotations

from ocgate.session._lease import Ipv4Pool, Ipv6Pool
from ocgate.session._session import Session, SessionCookie, assign_leases, release_leases
from ocgate.session._sqlite import SqliteSessionStore
from ocgate.session._store import (
    COOKIE_LENGTH,
    MemorySessionStore,
    SessionStore,
    cookie_digest_untrusted,
    parse_cookie_untrusted,
)

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
