"""Prometheus metrics: the registry of the gateway and its scrape endpoint (``metrics-listen``)."""

from __future__ import annotations

from ocgate.metrics._http import parse_listen_address, serve_metrics
from ocgate.metrics._merge import render_merged, samples_of
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
