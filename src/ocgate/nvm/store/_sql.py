"""SQL text shared by both dialects: upserts, filters, key cursors (``?`` placeholders)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Final

from ocgate.nvm.store._base import FlowFilter
from ocgate.nvm.store._rows import ENDPOINT_COLUMNS, INTERFACE_COLUMNS, quoted

__all__ = [
    "BYTES_TOTAL",
    "ENDPOINT_UPSERT",
    "INTERFACE_UPSERT",
    "SEGMENT_UPSERT",
    "TOP_KEYS",
    "canonical_address",
    "check_limit",
    "decode_key_cursor",
    "encode_key_cursor",
    "flow_where",
    "timeline_query",
    "top_query",
    "upsert",
]

SEGMENT_UPSERT: Final = (
    "INSERT INTO flow_segments (seg, min_time_end, max_time_end) VALUES (?, ?, ?) "
    "ON CONFLICT (seg) DO UPDATE SET "
    "min_time_end = CASE WHEN excluded.min_time_end < flow_segments.min_time_end "
    "THEN excluded.min_time_end ELSE flow_segments.min_time_end END, "
    "max_time_end = CASE WHEN excluded.max_time_end > flow_segments.max_time_end "
    "THEN excluded.max_time_end ELSE flow_segments.max_time_end END"
)

# by -> (dimension table, flows column, key expression over the dimension row)
TOP_KEYS: Final[Mapping[str, tuple[str, str, str]]] = {
    "user": ("flow_contexts", "ctx_id", 'COALESCE(d.vpn_user, d."user")'),
    "process": ("flow_processes", "proc_id", "d.process_name"),
    "host": ("flow_destinations", "dst_id", "d.dst_hostname"),
}
BYTES_TOTAL: Final = "COALESCE(bytes_in, 0) + COALESCE(bytes_out, 0) + COALESCE(octets, 0)"


def upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """Insert or merge: newer reports win, ``first_seen``/``last_seen`` widen, NULLs never erase."""
    newer = f"excluded.last_seen >= {table}.last_seen"
    sets = []
    for name in columns:
        if name in key:
            continue
        if name == "first_seen":
            sets.append(
                f"first_seen = CASE WHEN excluded.first_seen < {table}.first_seen "
                f"THEN excluded.first_seen ELSE {table}.first_seen END"
            )
        elif name == "last_seen":
            sets.append(
                f"last_seen = CASE WHEN {newer} THEN excluded.last_seen ELSE {table}.last_seen END"
            )
        else:
            sets.append(
                f'"{name}" = CASE WHEN {newer} THEN COALESCE(excluded."{name}", {table}."{name}") '
                f'ELSE {table}."{name}" END'
            )
    marks = ", ".join("?" * len(columns))
    return (
        f"INSERT INTO {table} ({quoted(columns)}) VALUES ({marks}) "
        f"ON CONFLICT ({quoted(key)}) DO UPDATE SET {', '.join(sets)}"
    )


ENDPOINT_UPSERT: Final = upsert("endpoints", ENDPOINT_COLUMNS, ("udid",))
INTERFACE_UPSERT: Final = upsert("interfaces", INTERFACE_COLUMNS, ("udid", "interface_uid"))


def canonical_address(text: str) -> str:
    """Canonical text of an address (``2001:DB8::0001`` → ``2001:db8::1``); prefixes dropped."""
    return ipaddress.ip_address(text.split("/", 1)[0].strip()).compressed


def encode_key_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(b"k" + key.encode()).rstrip(b"=").decode("ascii")


def decode_key_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if raw[:1] != b"k":
            raise ValueError("invalid cursor")
        return raw[1:].decode()
    except (binascii.Error, UnicodeError):
        raise ValueError("invalid cursor") from None


def check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError("limit must be at least 1")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def flow_where(filters: FlowFilter) -> tuple[list[str], list[object], bool]:
    """SQL conditions and parameters of a :class:`FlowFilter`, and whether any condition is
    served by a segment index (``flows (seg, …)``: user, UDID, host, address)."""
    where: list[str] = []
    params: list[object] = []
    if filters.user is not None:
        where.append(
            'flows.ctx_id IN (SELECT id FROM flow_contexts WHERE vpn_user = ? OR "user" = ?)'
        )
        params += [filters.user] * 2
    if filters.udid is not None:
        where.append("flows.ctx_id IN (SELECT id FROM flow_contexts WHERE udid = ?)")
        params.append(filters.udid.lower())
    if filters.host is not None:
        if filters.host.startswith("*."):
            where.append(
                "flows.dst_id IN (SELECT id FROM flow_destinations "
                "WHERE lower(dst_hostname) LIKE ? ESCAPE '\\')"
            )
            params.append("%" + _like_escape(filters.host[1:].lower()))
        else:
            where.append(
                "flows.dst_id IN (SELECT id FROM flow_destinations WHERE lower(dst_hostname) = ?)"
            )
            params.append(filters.host.lower())
    if filters.address is not None:
        addr = canonical_address(filters.address)
        where.append(
            "(flows.ctx_id IN (SELECT id FROM flow_contexts WHERE src_addr = ?) "
            "OR flows.dst_id IN (SELECT id FROM flow_destinations WHERE dst_addr = ?))"
        )
        params += [addr, addr]
    keyed = bool(where)
    if filters.process is not None:
        where.append("flows.proc_id IN (SELECT id FROM flow_processes WHERE process_name = ?)")
        params.append(filters.process)
    if filters.since is not None:
        where.append("+flows.time_end >= ?" if keyed else "flows.time_end >= ?")
        params.append(filters.since)
    if filters.until is not None:
        where.append("+flows.time_end < ?" if keyed else "flows.time_end < ?")
        params.append(filters.until)
    return where, params, keyed


def _user_condition(user: str | None, where: list[str], params: list[object]) -> None:
    """The :class:`FlowFilter` ``user`` condition (``vpn_user`` or NVM ``user``), unqualified."""
    if user is not None:
        where.append('ctx_id IN (SELECT id FROM flow_contexts WHERE vpn_user = ? OR "user" = ?)')
        params += [user, user]


def top_query(
    by: str, since: float | None, until: float | None, limit: int, user: str | None = None
) -> tuple[str, list[object]]:
    """SQL and parameters ranking ``by`` (``user``/``process``/``host``) by bytes.

    Flows are summed per dimension id first, then the (few) ids are named and summed by key.
    ``user`` keeps only the flows of that user (:class:`FlowFilter` semantics).
    """
    spec = TOP_KEYS.get(by)
    if spec is None:
        raise ValueError(f"cannot rank by {by!r}")
    table, column, key = spec
    where = [f"{column} IS NOT NULL"]
    params: list[object] = []
    if since is not None:
        where.append("time_end >= ?")
        params.append(since)
    if until is not None:
        where.append("time_end < ?")
        params.append(until)
    _user_condition(user, where, params)
    sql = (
        f"SELECT {key} AS k, SUM(t.total) AS total FROM "
        f"(SELECT {column} AS dim, SUM({BYTES_TOTAL}) AS total FROM flows "
        f"WHERE {' AND '.join(where)} GROUP BY {column}) t "
        f"JOIN {table} d ON d.id = t.dim WHERE {key} IS NOT NULL "
        "GROUP BY 1 ORDER BY total DESC, k LIMIT ?"
    )
    params.append(limit)
    return sql, params


def timeline_query(
    dialect: str, since: float, until: float, step: int, user: str | None = None
) -> tuple[str, list[object]]:
    """SQL and parameters summing bytes per ``step``-second bucket of ``time_end``.

    Rows are ``(k, bytes)`` for the non-empty buckets, ``k`` the bucket's index counted from
    ``origin = floor(since / step) * step`` (so buckets are aligned to multiples of ``step``).
    Every counted flow has ``time_end >= since >= origin``: the quotient is never negative, and
    SQLite's ``CAST(... AS INTEGER)`` (truncation) is its floor; PostgreSQL's cast rounds, so it
    uses ``FLOOR`` (SQLite has ``floor`` only when built with its math functions).
    """
    if step < 1:
        raise ValueError("step must be at least 1 second")
    origin = float((since // step) * step)
    quotient = "(time_end - ?) / ?"
    bucket = f"FLOOR({quotient})" if dialect == "postgres" else f"CAST({quotient} AS INTEGER)"
    where = ["time_end >= ?", "time_end < ?"]
    params: list[object] = [origin, float(step), since, until]
    _user_condition(user, where, params)
    sql = (
        f"SELECT {bucket} AS k, SUM({BYTES_TOTAL}) AS total FROM flows "
        f"WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1"
    )
    return sql, params
