"""The in-house Prometheus model (``metrics/_core.py``) against ``prometheus_client`` itself.

The gateway's processes stopped importing ``prometheus_client`` (memory); a scrape must not change.
Each test builds the same metrics with both and compares what :func:`samples_of` sends to the
supervisor: names, labels, types, help texts and (where they do not move) values.
"""

from __future__ import annotations

import os
import subprocess
import sys

import prometheus_client
import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from ocgate.ipc import messages as m
from ocgate.metrics import samples_of
from ocgate.metrics._core import (
    Counter,
    Registry,
    counter_family,
    gauge_family,
    platform_collector,
    process_collector,
)


def _shape(metrics: m.Metrics) -> set[tuple[str, tuple[tuple[str, str], ...], str]]:
    return {(s.name, tuple(sorted(s.labels.items())), s.kind) for s in metrics.samples}


def _values(metrics: m.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in metrics.samples}


def test_counters_and_families_match_prometheus_client() -> None:
    theirs = prometheus_client.CollectorRegistry()
    ours = Registry()
    for registry, counter_cls in ((theirs, prometheus_client.Counter), (ours, Counter)):
        logins = counter_cls("ocgate_logins", "Login attempts", ["result", "reason"],
                             registry=registry)  # type: ignore[operator]  # fmt: skip
        logins.labels(result="failure", reason="wrong_password").inc()
        logins.labels("success", "password").inc(2)
        bans = counter_cls("ocgate_bans_total", "Bans", registry=registry)  # type: ignore[operator]
        bans.inc()
    their_families = [
        CounterMetricFamily("ocgate_tunnel_bytes", "Bytes", labels=["direction"]),
        GaugeMetricFamily("ocgate_sessions", "Sessions", labels=["state", "transport"]),
    ]
    our_families = [
        counter_family("ocgate_tunnel_bytes", "Bytes", ["direction"]),
        gauge_family("ocgate_sessions", "Sessions", ["state", "transport"]),
    ]
    their_families[0].add_metric(["rx"], 1110)
    our_families[0].add_metric(["rx"], 1110)
    their_families[1].add_metric(["connected", "cstp"], 3)
    our_families[1].add_metric(["connected", "cstp"], 3)

    class Fixed:
        def __init__(self, families: list[object]) -> None:
            self.families = families

        def collect(self) -> list[object]:
            return self.families

    theirs.register(Fixed(their_families))  # type: ignore[arg-type]
    ours.register(Fixed(our_families))  # type: ignore[arg-type]
    a, b = samples_of(theirs), samples_of(ours)
    assert _shape(a) == _shape(b)
    assert _values(a) == _values(b)
    assert a.help == b.help
    assert _values(b)[("ocgate_logins_total", (("reason", "password"), ("result", "success")))] == 2
    assert _values(b)[("ocgate_bans_total", ())] == 1


def test_process_and_platform_metrics_match_prometheus_client() -> None:
    theirs = prometheus_client.CollectorRegistry()
    ProcessCollector(registry=theirs)
    PlatformCollector(registry=theirs)
    ours = Registry()
    ours.register(process_collector())
    ours.register(platform_collector())
    a, b = samples_of(theirs), samples_of(ours)
    assert _shape(a) == _shape(b)
    assert a.help == b.help
    steady = ("process_start_time_seconds", "process_max_fds", "python_info")
    va, vb = _values(a), _values(b)
    for key, value in va.items():
        if key[0] in steady:
            assert vb[key] == pytest.approx(value), key
    assert vb[("process_resident_memory_bytes", ())] > 1 << 20


def test_counter_refuses_wrong_labels_and_decrements() -> None:
    counter = Counter("x", "X", ["a"], registry=Registry())
    with pytest.raises(ValueError, match="labels"):
        counter.inc()
    with pytest.raises(ValueError, match="labels"):
        counter.labels(b="1")
    with pytest.raises(ValueError, match="labels"):
        counter.labels()
    with pytest.raises(ValueError, match="up"):
        counter.labels(a="1").inc(-1)


def test_no_procfs_leaves_process_metrics_out(tmp_path: os.PathLike[str]) -> None:
    registry = Registry()
    registry.register(process_collector(proc=str(tmp_path)))
    assert list(registry.collect()) == []


def test_gateway_processes_do_not_import_prometheus_client() -> None:
    code = (
        "import sys, ocgate.daemon._worker, ocgate.daemon._auth, ocgate.daemon._child; "
        "from ocgate.metrics import GatewayMetrics, LiveState; "
        "GatewayMetrics(lambda: LiveState((), 0)).render(); "
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
