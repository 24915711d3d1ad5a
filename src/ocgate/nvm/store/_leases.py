"""Attribution of flows to VPN leases: which session held an exporter's address at a flow's time.

Theory of operation
-------------------
The gateway records every address lease (``vpn_leases``: address, user, session, start, end).
A lease covers ``start <= t < end`` (``end`` NULL: still open), so an address handed from alice to
bob at 11:00 attributes an 11:00 flow to bob. Per batch, the writer asks :class:`LeaseCache` once
per distinct exporter address (never the flow's claimed source address); the cache loads that
address's whole lease history (one query), sorted by start, and answers each flow by bisection.
Lease changes go through the same writer and invalidate the address, so the cache never serves
stale history of its own. Another gateway writing the same database (several nodes on one
PostgreSQL) changes leases this cache never hears of: with ``max_age`` a history older than that
is loaded again at its next lookup, so another node's lease reaches attribution within
``max_age``. The cache is bounded by address count (it is emptied when full: cheaper per lookup
than an LRU); retention clears it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["Lease", "LeaseCache"]

_DEFAULT_SIZE: Final = 16384


@dataclass(frozen=True, slots=True)
class Lease:
    """One lease of one address."""

    start: float
    end: float | None
    username: str
    session_id: str


class _History:
    __slots__ = ("leases", "loaded", "starts")

    def __init__(self, leases: list[Lease], loaded: float) -> None:
        self.loaded = loaded
        self.leases = sorted(leases, key=lambda lease: lease.start)
        self.starts = [lease.start for lease in self.leases]

    def at(self, t: float) -> Lease | None:
        index = bisect.bisect_right(self.starts, t) - 1
        if index < 0:
            return None
        lease = self.leases[index]
        if lease.end is not None and t >= lease.end:
            return None
        return lease


class LeaseCache:
    """Per-address lease histories, loaded on demand by ``load(address)``.

    :param max_age: seconds a loaded history is trusted (``None``: until invalidated), for a
        database other writers change too; ``clock`` (monotonic seconds) measures it.
    """

    def __init__(
        self,
        load: Callable[[str], list[Lease]],
        *,
        max_addresses: int = _DEFAULT_SIZE,
        max_age: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if max_age is not None and clock is None:
            raise ValueError("a lease cache with a max_age needs a clock")
        self._load = load
        self._max = max_addresses
        self._max_age = max_age
        self._clock = clock or (lambda: 0.0)
        self._histories: dict[str, _History] = {}
        self.loads = 0
        """How many histories were loaded (one query each)."""

    def lookup(self, address: str, t: float) -> Lease | None:
        """The lease of ``address`` that covers time ``t``."""
        history = self._histories.get(address)
        max_age = self._max_age
        if history is not None and max_age is not None and self._clock() - history.loaded > max_age:
            history = None
        if history is None:
            self.loads += 1
            history = _History(self._load(address), self._clock())
            if len(self._histories) >= self._max:
                self._histories.clear()
            self._histories[address] = history
        return history.at(t)

    def invalidate(self, address: str | None = None) -> None:
        """Forget one address (or all of them)."""
        if address is None:
            self._histories.clear()
        else:
            self._histories.pop(address, None)
