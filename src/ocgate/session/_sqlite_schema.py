"""The layout of the session database: tables, statements, and rows to and from sessions.

``extra`` is a pickle (see :mod:`ocgate.session._sqlite` on why the file must stay private), made
and read by the store's :class:`ExtraCodec` (plain :mod:`pickle` unless its owner gives one that
writes some objects by reference, as the authentication service does with its configuration);
the groups are JSON, addresses are text, times are wall-clock seconds. Decoding checks every
column's type and raises :class:`ValueError` (or whatever unpickling raises) for a row it cannot
use.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Network
from typing import Final, Protocol

from ocgate.bans import SavedBan
from ocgate.session._session import Session
from ocgate.session._store import COOKIE_BYTES

__all__ = [
    "ADOPT_SESSION",
    "APPLICATION_ID",
    "COLUMNS",
    "DELETE_SESSION",
    "INSERT_BAN",
    "INSERT_SESSION",
    "PICKLE",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SELECT_BANS",
    "SELECT_SESSIONS",
    "UPDATE_ADDRESSES",
    "UPDATE_SESSION",
    "UPDATE_STATE",
    "ExtraCodec",
    "address_row",
    "ban_row",
    "decode_ban",
    "decode_session",
    "encode_session",
    "state_row",
]

SCHEMA_VERSION: Final = 1
"""``PRAGMA user_version`` of the layout below."""
APPLICATION_ID: Final = 0x6F637373
"""``PRAGMA application_id`` of an ocgate session database (ASCII ``ocss``)."""
_PICKLE_PROTOCOL: Final = 5


class ExtraCodec(Protocol):
    """How a session's ``extra`` becomes the bytes of its row, and back."""

    def dumps(self, extra: dict[str, object]) -> bytes:
        """:raises pickle.PicklingError, TypeError, AttributeError: it cannot be written."""
        ...

    def loads(self, blob: bytes) -> object:
        """:raises Exception: whatever unpickling raises for bytes it cannot use."""
        ...


class _Pickle:
    def dumps(self, extra: dict[str, object]) -> bytes:
        return pickle.dumps(extra, protocol=_PICKLE_PROTOCOL)

    def loads(self, blob: bytes) -> object:
        return pickle.loads(blob)


PICKLE: Final[ExtraCodec] = _Pickle()
"""``extra`` as a plain pickle: every object in it written whole."""

SCHEMA: Final = (
    """CREATE TABLE sessions (
        sid TEXT PRIMARY KEY,
        token_digest BLOB NOT NULL UNIQUE,
        username TEXT NOT NULL,
        groups TEXT NOT NULL,
        selected_group TEXT,
        created REAL NOT NULL,
        authenticated_at REAL NOT NULL,
        expires_at REAL,
        session_deadline REAL,
        cookie_timeout REAL NOT NULL,
        ipv4 TEXT,
        ipv6 TEXT,
        connected INTEGER NOT NULL,
        tunnel_id INTEGER,
        remote_addr TEXT,
        user_agent TEXT,
        hostname TEXT,
        device TEXT,
        extra BLOB NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE bans (
        address TEXT PRIMARY KEY,
        score INTEGER NOT NULL,
        last_reset REAL NOT NULL,
        banned_until REAL
    ) WITHOUT ROWID""",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# Column order of ``encode_session`` and ``decode_session``.
# fmt: off
COLUMNS: Final = (
    "sid", "token_digest", "username", "groups", "selected_group", "created", "authenticated_at",
    "expires_at", "session_deadline", "cookie_timeout", "ipv4", "ipv6", "connected", "tunnel_id",
    "remote_addr", "user_agent", "hostname", "device", "extra",
)
# fmt: on
SELECT_SESSIONS: Final = f"SELECT {', '.join(COLUMNS)} FROM sessions ORDER BY created, sid"
INSERT_SESSION: Final = (
    f"INSERT INTO sessions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
ADOPT_SESSION: Final = (
    f"INSERT OR REPLACE INTO sessions ({', '.join(COLUMNS)})"
    f" VALUES ({', '.join('?' * len(COLUMNS))})"
)
# Everything but the sid (the key, last parameter) is rewritten by ``save``.
UPDATE_SESSION: Final = (
    f"UPDATE sessions SET {', '.join(f'{c} = ?' for c in COLUMNS[1:])} WHERE sid = ?"
)
UPDATE_STATE: Final = (
    "UPDATE sessions SET connected = ?, tunnel_id = ?, expires_at = ? WHERE sid = ?"
)
UPDATE_ADDRESSES: Final = "UPDATE sessions SET ipv4 = ?, ipv6 = ? WHERE sid = ?"
DELETE_SESSION: Final = "DELETE FROM sessions WHERE sid = ? AND token_digest = ?"
SELECT_BANS: Final = (
    "SELECT address, score, last_reset, banned_until FROM bans"
    " ORDER BY banned_until IS NULL, score DESC, address"
)
INSERT_BAN: Final = "INSERT OR REPLACE INTO bans VALUES (?, ?, ?, ?)"


def encode_session(s: Session, codec: ExtraCodec = PICKLE) -> tuple[object, ...]:
    try:
        extra = codec.dumps(s.extra)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise TypeError(f"session {s.sid}: extra cannot be pickled: {exc}") from exc
    return (
        s.sid,
        s.token_digest,
        s.username,
        json.dumps(list(s.groups)),
        s.group,
        s.created,
        s.authenticated_at,
        s.expires_at,
        s.session_deadline,
        s.cookie_timeout,
        *address_row(s)[:2],
        int(s.connected),
        s.tunnel_id,
        s.remote_addr,
        s.user_agent,
        s.hostname,
        s.device,
        extra,
    )


def decode_session(row: Sequence[object], codec: ExtraCodec = PICKLE) -> Session:
    sid, digest, username, groups, group, created, auth_at, expires_at, deadline = row[:9]
    cookie_timeout, ipv4, ipv6, connected, tunnel_id, remote, agent, hostname, device = row[9:18]
    group_list = json.loads(_text(groups))
    if not isinstance(group_list, list) or not all(isinstance(g, str) for g in group_list):
        raise ValueError(f"groups is not a list of names: {groups!r}")
    extra = codec.loads(_blob(row[18]))
    if not isinstance(extra, dict):
        raise ValueError(f"extra is a {type(extra).__name__}, not a dict")
    token_digest = _blob(digest)
    if len(token_digest) != COOKIE_BYTES:
        raise ValueError("token digest has the wrong length")
    return Session(
        sid=_text(sid),
        token_digest=token_digest,
        username=_text(username),
        groups=tuple(group_list),
        group=_optional_text(group),
        created=_number(created),
        authenticated_at=_number(auth_at),
        expires_at=None if expires_at is None else _number(expires_at),
        session_deadline=None if deadline is None else _number(deadline),
        cookie_timeout=_number(cookie_timeout),
        ipv4=None if ipv4 is None else IPv4Address(_text(ipv4)),
        ipv6=None if ipv6 is None else IPv6Network(_text(ipv6)),
        connected=bool(_integer(connected)),
        tunnel_id=None if tunnel_id is None else _integer(tunnel_id),
        remote_addr=_optional_text(remote),
        user_agent=_optional_text(agent),
        hostname=_optional_text(hostname),
        device=_optional_text(device),
        extra=extra,
    )


def state_row(s: Session) -> tuple[object, ...]:
    return (int(s.connected), s.tunnel_id, s.expires_at, s.sid)


def address_row(s: Session) -> tuple[str | None, str | None, str]:
    ipv4 = None if s.ipv4 is None else str(s.ipv4)
    ipv6 = None if s.ipv6 is None else str(s.ipv6)
    return ipv4, ipv6, s.sid


def ban_row(entry: SavedBan) -> tuple[object, ...]:
    return (entry.address, entry.score, entry.last_reset, entry.banned_until)


def decode_ban(row: Sequence[object]) -> SavedBan:
    address, score, last_reset, until = row
    return SavedBan(
        address=_text(address),
        score=_integer(score),
        last_reset=_number(last_reset),
        banned_until=None if until is None else _number(until),
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, found {type(value).__name__}")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _blob(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError(f"expected a blob, found {type(value).__name__}")
    return value


def _integer(value: object) -> int:
    if not isinstance(value, int):
        raise ValueError(f"expected an integer, found {type(value).__name__}")
    return value


def _number(value: object) -> float:
    if not isinstance(value, int | float):
        raise ValueError(f"expected a number, found {type(value).__name__}")
    return float(value)
