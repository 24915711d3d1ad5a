"""The storage interface of the NVM collector: the ``Store`` protocol, filters, pages, cursors.

Theory of operation
-------------------
Every method is ``async``; implementations keep blocking database work off the event loop (one
writer thread, a small reader pool). Records are written in the order :meth:`Store.write_batch`
receives them; a write returns once the records are *queued* (it waits only when the bounded queue
is full, so ingest is lossless under back-pressure); :meth:`Store.flush` waits until everything
queued before it is committed. Lease changes and other small writes wait for their commit.

Flows are listed newest first, ordered by ``(time_end, id)`` descending, and paged with an opaque
keyset cursor over that pair, so pages never repeat or skip a row that existed when the first page
was read, however many rows arrive meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Literal, Protocol, TypeVar

from ocgate.nvm._records import EndpointRecord, FlowRecord, InterfaceRecord, JsonValue, Normalised

__all__ = [
    "FlowFilter",
    "Page",
    "Store",
    "TopBy",
    "decode_cursor",
    "encode_cursor",
]

T = TypeVar("T")
TopBy = Literal["user", "process", "host"]

# Cursor layout: "f" (1 byte, format version) + time_end (float64) + id (int64), big-endian,
# then base64url without padding.
_CURSOR: Final = struct.Struct(">cdq")
_CURSOR_TAG: Final = b"f"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowFilter:
    """Which flows :meth:`Store.query_flows` returns; unset fields do not filter.

    :param user: equals ``vpn_user`` (the VPN login) or ``user`` (NVM's ``AUTHORITY\\name``).
    :param udid: endpoint UDID, lower-case hex.
    :param process: process name, exact (``svchost.exe``).
    :param host: destination hostname: exact match, case-insensitive; ``*.example.com`` matches
        the subdomains of ``example.com`` (not ``example.com`` itself).
    :param address: source or destination address (any textual form of an IP address).
    :param since: ``time_end >= since`` (epoch seconds).
    :param until: ``time_end < until``.
    """

    user: str | None = None
    udid: str | None = None
    process: str | None = None
    host: str | None = None
    address: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results; ``next_cursor`` is ``None`` on the last page."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(time_end: float, row_id: int) -> str:
    """The opaque cursor that resumes after the row ``(time_end, row_id)``."""
    raw = _CURSOR.pack(_CURSOR_TAG, time_end, row_id)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[float, int]:
    """Inverse of :func:`encode_cursor`.

    :raises ValueError: the cursor was not made by :func:`encode_cursor`.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, time_end, row_id = _CURSOR.unpack(raw)
    except (binascii.Error, struct.error, UnicodeEncodeError):
        raise ValueError("invalid cursor") from None
    if tag != _CURSOR_TAG or time_end != time_end:  # NaN never comes from a stored row.
        raise ValueError("invalid cursor")
    return float(time_end), int(row_id)


class Store(Protocol):
    """Persistent storage of normalised NVM records, VPN lease history and collector state."""

    async def open(self) -> None:
        """Connect and start the writer; call before anything else."""

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close every connection."""

    async def migrate(self) -> int:
        """Apply pending schema migrations (idempotent); returns the schema version."""

    async def write_batch(self, records: Sequence[Normalised]) -> None:
        """Queue records for storage.

        A flow without ``vpn_user`` is attributed on the way to the lease that held its
        *exporter's* address (``FlowRecord.exporter``) at the flow's start; its claimed
        ``src_addr`` is never looked up.
        """

    async def flush(self) -> None:
        """Wait until every record queued so far is committed."""

    async def query_flows(
        self, filters: FlowFilter, *, cursor: str | None = None, limit: int = 100
    ) -> Page[FlowRecord]:
        """Flows matching ``filters``, newest first.

        :raises ValueError: malformed cursor or address, or ``limit`` < 1.
        """

    async def endpoints(
        self, *, udid: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[EndpointRecord]:
        """Known endpoints ordered by UDID (paged by UDID)."""

    async def interfaces(self, udid: str) -> list[InterfaceRecord]:
        """Interfaces reported by one endpoint, ordered by interface UID."""

    async def top(
        self,
        by: TopBy,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 10,
        user: str | None = None,
    ) -> list[tuple[str, int]]:
        """The keys with the most bytes (``bytes_in + bytes_out + octets``) in the time range.

        ``user`` ranks ``vpn_user`` (falling back to the NVM user), ``process`` the process name,
        ``host`` the destination hostname; flows without the key are left out. The ``user``
        parameter keeps only that user's flows (:attr:`FlowFilter.user` semantics).
        """

    async def timeline(
        self, *, since: float, until: float, step: int, user: str | None = None
    ) -> list[tuple[int, int]]:
        """Bytes (as :meth:`top` counts them) of the flows with ``since <= time_end < until``
        per ``step``-second bucket: ``(bucket start, bytes)`` for the non-empty buckets, in time
        order. Buckets start at multiples of ``step`` (epoch seconds); ``user`` filters as
        :attr:`FlowFilter.user`.

        :raises ValueError: ``step`` < 1.
        """

    async def save_exporter_stats(self, stats: Mapping[str, Mapping[str, JsonValue]]) -> None:
        """Replace the saved counters of the named exporters."""

    async def exporter_stats(self) -> dict[str, dict[str, JsonValue]]:
        """The saved counters, by exporter."""

    async def save_templates(self, templates: Sequence[Mapping[str, JsonValue]]) -> None:
        """Replace the persisted template snapshot."""

    async def load_templates(self) -> list[dict[str, JsonValue]]:
        """The persisted template snapshot (empty if none)."""

    async def record_lease(
        self,
        *,
        username: str,
        session_id: str,
        address: str,
        start: float,
        end: float | None,
        device: tuple[str, str, str] = ("", "", ""),
    ) -> None:
        """Note that ``address`` was leased to ``username`` from ``start`` (until ``end``), on the
        ``device`` its login described (platform, computer name, unique id; ``""`` unknown)."""

    async def end_lease(self, *, session_id: str, address: str | None, end: float) -> None:
        """Close the open leases of a session (of one address, or all of them)."""

    async def attribute(self, address: str, at: float) -> tuple[str, str] | None:
        """``(username, session_id)`` that held ``address`` at time ``at``, if any."""

    async def enforce_retention(self, days: float, now: float) -> int:
        """Delete data older than ``days`` in bounded chunks; returns the rows deleted."""
