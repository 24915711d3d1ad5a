"""Prometheus metrics: the registry of the gateway and its scrape endpoint (``metrics-listen``).

The registry (:class:`GatewayMetrics`, on the small model of :mod:`ocgate.metrics._core`, not
``prometheus_client``) is imported on first use (PEP 562): the supervisor only merges samples.
"""

from __future__ import annotations

from ocgate.metrics._http import parse_listen_address, serve_metrics
from ocgate.metrics._merge import render_merged, samples_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocgate.metrics._registry import GatewayMetrics, LiveState, TunnelCounters

__all__ = [
    "GatewayMetrics",
    "LiveState",
    "TunnelCounters",
    "parse_listen_address",
    "render_merged",
    "samples_of",
    "serve_metrics",
]


def __getattr__(name: str) -> object:
    if name in {"GatewayMetrics", "LiveState", "TunnelCounters"}:
        from ocgate.metrics import _registry

        return getattr(_registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
