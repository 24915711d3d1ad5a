"""Prometheus metrics of the collector running alone (``metrics-listen``, ``ocgate nvm serve``).

The pipeline counters of :meth:`Collector.stats` are read at scrape time, so nothing is kept in
step by hand. Names follow the gateway's (``ocgate_`` prefix, ``_total`` counters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ocgate.nvm._collector import CollectorStats

__all__ = ["CollectorMetrics"]

_COUNTERS: Final = {
    "messages": "IPFIX messages handed to the decoder",
    "refused": "Datagrams and connections refused by nvm-allow",
    "records_decoded": "Data records decoded",
    "records_queued": "Records handed on for storage",
    "records_written": "Records written to the store",
    "records_private": "Records the privacy policy removed",
    "records_lost": "Records dropped (backlog full or a failed write)",
    "normalise_errors": "Records that could not be normalised",
    "rejected": "Malformed IPFIX messages",
}


class _StatsCollector(Collector):
    def __init__(self, stats: Callable[[], CollectorStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for name, help_text in _COUNTERS.items():
            yield CounterMetricFamily(f"ocgate_nvm_{name}", help_text, value=getattr(stats, name))


class CollectorMetrics:
    """The collector's registry; :meth:`render` gives the Prometheus text exposition.

    :param stats: returns the pipeline counters (``Collector.stats``).
    """

    def __init__(self, stats: Callable[[], CollectorStats]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StatsCollector(stats))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
