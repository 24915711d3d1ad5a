"""Prometheus metrics of the gateway.

Counters are incremented where events happen (logins, handshakes, script failures, bans). Values
that describe the present (sessions by state and transport, live byte counters of open tunnels) are
read at scrape time from a snapshot callable, so nothing has to be kept in step by hand. Byte and
packet counters add the totals of closed tunnels to the live counters of open ones, so they only
ever grow.

Names follow the Prometheus conventions (``ocgate_`` prefix, ``_total`` counters, base units).
The registry is :mod:`ocgate.metrics._core`'s, not ``prometheus_client``'s (see there why).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ocgate.ipfilter import DropReason
from ocgate.metrics._core import (
    Counter,
    MetricFamily,
    Registry,
    counter_family,
    gauge_family,
    platform_collector,
    process_collector,
)
from ocgate.metrics._merge import render_merged, samples_of

__all__ = ["GatewayMetrics", "LiveState", "TunnelCounters"]


@dataclass(frozen=True, slots=True)
class TunnelCounters:
    """Per-direction traffic of one tunnel (from the client = rx, to the client = tx)."""

    transport: str
    """``cstp`` or ``dtls``: where data currently flows."""
    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int
    dropped: tuple[int, ...] = ()
    """Packets from the client the tunnel's filter dropped, indexed by
    :class:`~ocgate.ipfilter.DropReason`."""
    rx_refused: int = 0
    """Packets from the client the filter admitted and the TUN device refused."""
    rx_over_limit: int = 0
    """Packets from the client over ``rx-data-per-sec``."""
    tx_over_limit: int = 0
    """Packets for the client over ``tx-data-per-sec``."""
    tx_no_room: int = 0
    """Packets for the client dropped because its socket or TLS connection had no room."""
    tx_oversize: int = 0
    """Packets for the client longer than its tunnel carries."""


@dataclass(frozen=True, slots=True)
class LiveState:
    """What the gateway looks like at scrape time."""

    tunnels: Iterable[TunnelCounters]
    sessions_disconnected: int
    """Sessions whose cookie is still valid but that have no tunnel (waiting for a reconnect)."""
    banned_addresses: int = 0


@dataclass(slots=True)
class _Closed:
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    by_transport: dict[str, int] = field(default_factory=dict)
    dropped: list[int] = field(default_factory=lambda: [0] * len(DropReason))
    discarded: dict[tuple[str, str], int] = field(default_factory=dict)


class _LiveCollector:
    def __init__(self, snapshot: Callable[[], LiveState], closed: _Closed) -> None:
        self._snapshot = snapshot
        self._closed = closed

    def collect(self) -> Iterator[MetricFamily]:
        state = self._snapshot()
        tunnels = list(state.tunnels)
        sessions = gauge_family(
            "ocgate_sessions",
            "Sessions by state and data transport",
            labels=["state", "transport"],
        )
        for transport in ("cstp", "dtls"):
            count = sum(1 for t in tunnels if t.transport == transport)
            sessions.add_metric(["connected", transport], count)
        sessions.add_metric(["disconnected", "none"], state.sessions_disconnected)
        yield sessions
        closed = self._closed
        traffic = counter_family(
            "ocgate_tunnel_bytes", "IP bytes carried, by direction", labels=["direction"]
        )
        traffic.add_metric(["rx"], closed.rx_bytes + sum(t.rx_bytes for t in tunnels))
        traffic.add_metric(["tx"], closed.tx_bytes + sum(t.tx_bytes for t in tunnels))
        yield traffic
        packets = counter_family(
            "ocgate_tunnel_packets", "IP packets carried, by direction", labels=["direction"]
        )
        packets.add_metric(["rx"], closed.rx_packets + sum(t.rx_packets for t in tunnels))
        packets.add_metric(["tx"], closed.tx_packets + sum(t.tx_packets for t in tunnels))
        yield packets
        dropped = counter_family(
            "ocgate_tunnel_dropped_packets",
            "Packets from clients not written to the TUN device, by reason (spoofed-source, "
            "link-local, malformed, restricted-route, restricted-port)",
            labels=["reason"],
        )
        for reason in DropReason:
            live = sum(t.dropped[reason] for t in tunnels if len(t.dropped) > reason)
            dropped.add_metric([reason.label], closed.dropped[reason] + live)
        yield dropped
        discarded = counter_family(
            "ocgate_tunnel_discarded_packets",
            "Packets the tunnels did not carry for want of room or over a limit, by direction and "
            "cause: rx (from clients) tun-refused, rate-limit; tx (to clients) no-room, "
            "oversize, rate-limit",
            labels=["direction", "cause"],
        )
        for key, count in _discarded(tunnels).items():
            discarded.add_metric(list(key), closed.discarded.get(key, 0) + count)
        yield discarded
        bans = gauge_family("ocgate_banned_addresses", "Source addresses currently banned")
        bans.add_metric([], state.banned_addresses)
        yield bans


class GatewayMetrics:
    """The gateway's metrics registry; :meth:`render` gives the Prometheus text exposition."""

    def __init__(self, snapshot: Callable[[], LiveState]) -> None:
        self.registry = Registry()
        self._closed = _Closed()
        self.registry.register(_LiveCollector(snapshot, self._closed))
        self.registry.register(process_collector())
        self.registry.register(platform_collector())
        self.logins = Counter(
            "ocgate_logins",
            "Login attempts by result and reason",
            ["result", "reason"],
            registry=self.registry,
        )
        self.dtls_handshakes = Counter(
            "ocgate_dtls_handshakes",
            "Completed DTLS handshakes by mode",
            ["mode"],
            registry=self.registry,
        )
        self.script_failures = Counter(
            "ocgate_script_failures",
            "Scripts that exited non-zero, were killed or could not run",
            ["script"],
            registry=self.registry,
        )
        self.bans = Counter(
            "ocgate_bans",
            "Source addresses banned after reaching max-ban-score",
            registry=self.registry,
        )
        self.tunnels_closed = Counter(
            "ocgate_tunnels_closed",
            "Tunnels that ended, by reason",
            ["reason"],
            registry=self.registry,
        )

    def tunnel_closed(self, counters: TunnelCounters, reason: str) -> None:
        """Fold a closed tunnel's traffic into the totals."""
        closed = self._closed
        closed.rx_bytes += counters.rx_bytes
        closed.tx_bytes += counters.tx_bytes
        closed.rx_packets += counters.rx_packets
        closed.tx_packets += counters.tx_packets
        for index, count in enumerate(counters.dropped[: len(closed.dropped)]):
            closed.dropped[index] += count
        for key, count in _discarded([counters]).items():
            closed.discarded[key] = closed.discarded.get(key, 0) + count
        self.tunnels_closed.labels(reason=reason).inc()

    def render(self) -> bytes:
        return render_merged([samples_of(self.registry)])


def _discarded(tunnels: Iterable[TunnelCounters]) -> dict[tuple[str, str], int]:
    """``ocgate_tunnel_discarded_packets`` of ``tunnels``, by ``(direction, cause)``."""
    totals = dict.fromkeys(_DISCARD_KEYS, 0)
    for t in tunnels:
        totals["rx", "tun-refused"] += t.rx_refused
        totals["rx", "rate-limit"] += t.rx_over_limit
        totals["tx", "no-room"] += t.tx_no_room
        totals["tx", "oversize"] += t.tx_oversize
        totals["tx", "rate-limit"] += t.tx_over_limit
    return totals


_DISCARD_KEYS = (
    ("rx", "tun-refused"), ("rx", "rate-limit"),
    ("tx", "no-room"), ("tx", "oversize"), ("tx", "rate-limit"),
)  # fmt: skip
