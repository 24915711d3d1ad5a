"""The accept gate: which new TCP connection a worker gets, which one waits, which one is refused.

Theory of operation (sans-IO: the caller passes ``now``, a monotonic time in seconds). The
supervisor accepts every TCP connection and, before a worker reads a byte of it, asks the gate with
the peer's address (the address is all it knows; it never reads the connection). ocserv's main
process does the same at accept. The gate refuses, at once and without TLS:

* a banned source (the bans are the authentication service's, pushed here as they change; an IPv6
  client is its /64, as in :func:`ocgate.bans.ban_key`);
* beyond the pre-authentication caps: connections that have not reached a tunnel yet (TLS
  handshake, login, CONNECT), at most ``max_pre_auth`` in all and ``max_pre_auth_per_source`` from
  one source. A connection leaves that state when its worker reports it (tunnel up, or closed):
  :meth:`AdmissionGate.release`. The worker's own timers (``auth-timeout``) bound how long one may
  stay, so a flood of half-open handshakes holds at most the caps' worth of slots for that long.
  Loopback is exempt from the per-source cap (a local proxy or health check speaks for many).

``rate-limit-ms`` spaces connections *per source*: a source's next connection is handed to a worker
no sooner than that long after its previous one (the caller holds it meanwhile; it counts against
the caps). One busy source therefore cannot delay everyone else's logins.

ocserv counts every connection at accept against ``max-clients``; ocgate does not, on purpose: with
a ``max-clients`` of a few dozen, one source holding that many silent connections would lock
everybody out. ``max-clients`` bounds tunnels (checked at CONNECT, where a reconnect replacing its
own tunnel is not counted twice); the pre-authentication caps bound the rest.

Behind a balancer (``listen-proxy-proto``) the peer is the balancer, so the supervisor admits
each connection *unattributed* (:meth:`AdmissionGate.admit_unattributed`: only the global cap
applies) and the worker, having read the PROXY protocol header, names the client:
:meth:`AdmissionGate.attribute` then applies the bans, the per-source cap and the rate slot to that
address, exactly as :meth:`~AdmissionGate.admit` does to a peer. The balancer's own address is
never banned or capped.

Every table is bounded: pending connections by the global cap, bans by :data:`MAX_BANS`, per-source
rate slots by ``max_sources`` (stale ones go first, then the oldest).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ocgate.bans._table import ban_key
from ocgate.errors import OcgateError

__all__ = ["MAX_BANS", "Admission", "AdmissionGate", "AdmissionRefused", "GatePolicy"]

MAX_BANS = 65536
"""At most this many banned sources are remembered (the authentication service keeps as many)."""


class AdmissionRefused(OcgateError):
    """A connection the gate turns away; the message says why (for the log)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GatePolicy:
    """The limits (ocserv.conf keys; 0 = no limit).

    :param max_pre_auth: ``max-pre-auth-clients``: connections not yet in a tunnel, in all.
    :param max_pre_auth_per_source: ``max-pre-auth-per-source``: the same from one source.
    :param rate_limit: ``rate-limit-ms`` in seconds: the spacing of one source's connections.
    """

    max_pre_auth: int = 1024
    max_pre_auth_per_source: int = 256
    rate_limit: float = 0.0


@dataclass(frozen=True, slots=True)
class Admission:
    """A connection let in: hand it to a worker after ``delay`` seconds, with ``token``."""

    token: int
    delay: float


class AdmissionGate:
    """Bans, caps and rate slots by source, for the connections the supervisor accepts.

    :param policy: the limits.
    :param max_sources: the most sources whose rate slot is remembered.
    """

    def __init__(self, policy: GatePolicy, *, max_sources: int = 65536) -> None:
        self.policy = policy
        self._max_sources = max_sources
        self._bans: dict[str, float] = {}
        self._slots: dict[str, float] = {}  # Source -> when its next connection may start.
        self._pending: dict[int, str | None] = {}  # Token -> source (None: not known yet).
        self._per_source: dict[str, int] = {}
        self._next_token = 0

    @property
    def pending(self) -> int:
        """Connections let in that have not reached a tunnel (or closed) yet."""
        return len(self._pending)

    def pending_from(self, address: str) -> int:
        key = ban_key(address)
        return self._per_source.get(key, 0) if key is not None else 0

    @property
    def banned(self) -> int:
        return len(self._bans)

    # Admission ------------------------------------------------------------------------------------

    def admit(self, address: str, now: float) -> Admission:
        """Let a connection from ``address`` in, or refuse it.

        :raises AdmissionRefused: banned, or a cap is reached.
        """
        key = ban_key(address) or address
        self._refuse_banned(key, now)
        self._refuse_over_global_cap()
        self._refuse_over_source_cap(key)
        token = self._new_token()
        return Admission(token=token, delay=self._count(token, key, now))

    def admit_unattributed(self) -> Admission:
        """Let in a connection whose source is not known yet (``listen-proxy-proto``: the peer is
        the balancer); only the global cap applies until :meth:`attribute` names the source.

        :raises AdmissionRefused: the global cap is reached.
        """
        self._refuse_over_global_cap()
        token = self._new_token()
        self._pending[token] = None
        return Admission(token=token, delay=0.0)

    def attribute(self, token: int, address: str, now: float) -> float:
        """The connection of ``token`` (admitted unattributed) is from ``address``: apply the bans,
        the per-source cap and the rate slot to it. A refused one stays counted until released.

        :returns: the delay before the connection may proceed (``rate-limit-ms``).
        :raises AdmissionRefused: banned, over the per-source cap, or ``token`` is not a
            connection waiting for its source.
        """
        if token not in self._pending or self._pending[token] is not None:
            raise AdmissionRefused("not a connection waiting for its source address")
        key = ban_key(address) or address
        self._refuse_banned(key, now)
        self._refuse_over_source_cap(key)
        return self._count(token, key, now)

    def release(self, token: int) -> None:
        """The connection of ``token`` reached its tunnel or closed (unknown tokens are ignored)."""
        key = self._pending.pop(token, None)
        if key is None:
            return
        left = self._per_source[key] - 1
        if left:
            self._per_source[key] = left
        else:
            del self._per_source[key]

    def _refuse_banned(self, key: str, now: float) -> None:
        until = self._bans.get(key)
        if until is not None:
            if now < until:
                raise AdmissionRefused("address is banned")
            del self._bans[key]

    def _refuse_over_global_cap(self) -> None:
        limit = self.policy.max_pre_auth
        if limit and len(self._pending) >= limit:
            raise AdmissionRefused("too many connections before authentication")

    def _refuse_over_source_cap(self, key: str) -> None:
        limit = self.policy.max_pre_auth_per_source
        if limit and self._per_source.get(key, 0) >= limit and not _is_loopback_key(key):
            raise AdmissionRefused("too many connections before authentication from this source")

    def _new_token(self) -> int:
        self._next_token += 1
        return self._next_token

    def _count(self, token: int, key: str, now: float) -> float:
        """Count ``token`` against ``key`` and take the source's rate slot; return the delay."""
        delay = self._take_slot(key, now)
        self._pending[token] = key
        self._per_source[key] = self._per_source.get(key, 0) + 1
        return delay

    def _take_slot(self, key: str, now: float) -> float:
        rate = self.policy.rate_limit
        if rate <= 0:
            return 0.0
        start = max(now, self._slots.pop(key, now))
        if len(self._slots) >= self._max_sources:
            self._prune_slots(now)
        self._slots[key] = start + rate  # Re-inserted: the dict's order is last use.
        return start - now

    def _prune_slots(self, now: float) -> None:
        stale = [key for key, when in self._slots.items() if when <= now]
        for key in stale:
            del self._slots[key]
        if len(self._slots) >= self._max_sources:  # Sources all waiting: forget the oldest half.
            for key in list(self._slots)[: len(self._slots) // 2]:
                del self._slots[key]

    # Bans (pushed by the authentication service) --------------------------------------------------

    def ban(self, address: str, until: float) -> None:
        """Refuse ``address`` (its /64 for IPv6) until ``until``."""
        key = ban_key(address)
        if key is None:
            return
        if key not in self._bans and len(self._bans) >= MAX_BANS:
            del self._bans[min(self._bans, key=self._bans.__getitem__)]  # Ends soonest.
        self._bans[key] = until

    def unban(self, address: str) -> None:
        key = ban_key(address)
        if key is not None:
            self._bans.pop(key, None)

    def replace_bans(self, bans: Iterable[tuple[str, float]]) -> None:
        """Forget every ban, then ban each ``(address, until)``."""
        self._bans.clear()
        for address, until in bans:
            self.ban(address, until)


def _is_loopback_key(key: str) -> bool:
    try:
        return ipaddress.ip_network(key, strict=False).network_address.is_loopback
    except ValueError:
        return False
