"""The small part of the Prometheus data model the gateway's processes need, without a library.

Theory of operation
-------------------
Every gateway process (sec-mod, each worker) keeps a registry of counters and of collectors that
build gauges and counters at scrape time; :func:`~ocgate.metrics.samples_of` turns the registry
into typed samples for the supervisor, which adds them up and writes the text exposition
(:func:`~ocgate.metrics.render_merged`). No process ever serves ``prometheus_client``'s own
exposition, so these processes do not import it: its package imports its HTTP, WSGI, push-gateway
and compression helpers with it (``http.server``, ``wsgiref``, ``urllib.request``, ``email``,
``gzip``, ``lzma``, ``bz2``), about 3 MB of memory in each of them, for nothing.

What is kept is the model and the names of ``prometheus_client``, so a scrape is the same:

* a family has a name, a help text, a type (``counter`` or ``gauge``) and samples; a counter
  family ``x`` has samples named ``x_total`` (a ``_total`` given in the name is dropped from the
  family's name, as ``prometheus_client`` does);
* :class:`Counter` is a labelled counter (``.labels(k=v).inc()``), or an unlabelled one
  (``.inc()``); it only goes up;
* :func:`process_collector` gives ``process_cpu_seconds_total``, ``process_virtual_memory_bytes``,
  ``process_resident_memory_bytes``, ``process_start_time_seconds``, ``process_open_fds`` and
  ``process_max_fds`` from ``/proc/self``, and :func:`platform_collector` ``python_info``, with
  ``prometheus_client``'s help texts. A file that cannot be read leaves its samples out.

The NVM collector's own registry (:mod:`ocgate.nvm._metrics`, which ``ocgate nvm serve`` exposes
itself) still uses ``prometheus_client``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "Collector",
    "Counter",
    "MetricFamily",
    "Registry",
    "Sample",
    "counter_family",
    "gauge_family",
    "platform_collector",
    "process_collector",
]

Kind = Literal["counter", "gauge"]


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(slots=True)
class MetricFamily:
    """One metric: its name (without ``_total``), help text, type and samples."""

    name: str
    documentation: str
    type: Kind
    labels: Sequence[str] = ()
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.type == "counter":
            self.name = self.name.removesuffix("_total")

    def add_metric(self, values: Sequence[str], value: float) -> None:
        """One sample with these label values (in the order of :attr:`labels`)."""
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.labels)} label values expected")
        name = f"{self.name}_total" if self.type == "counter" else self.name
        self.samples.append(Sample(name, dict(zip(self.labels, values, strict=True)), float(value)))


def counter_family(name: str, documentation: str, labels: Sequence[str] = ()) -> MetricFamily:
    return MetricFamily(name, documentation, "counter", labels)


def gauge_family(name: str, documentation: str, labels: Sequence[str] = ()) -> MetricFamily:
    return MetricFamily(name, documentation, "gauge", labels)


class Collector(Protocol):
    def collect(self) -> Iterable[MetricFamily]: ...


class Registry:
    """The collectors of one process, collected in the order they were registered."""

    def __init__(self) -> None:
        self._collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        self._collectors.append(collector)

    def collect(self) -> Iterator[MetricFamily]:
        for collector in self._collectors:
            yield from collector.collect()


class _Child:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class Counter:
    """A counter, with labels (``counter.labels(reason="x").inc()``) or without (``.inc()``)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), *, registry: Registry
    ) -> None:
        self.name = name.removesuffix("_total")
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _Child] = {}
        if not self.labelnames:
            self._children[()] = _Child()
        registry.register(self)

    def labels(self, *values: str, **named: str) -> _Child:
        if named:
            if values or set(named) != set(self.labelnames):
                raise ValueError(f"{self.name}: labels {self.labelnames} expected")
            values = tuple(str(named[k]) for k in self.labelnames)
        elif len(values) != len(self.labelnames) or not values:
            raise ValueError(f"{self.name}: labels {self.labelnames} expected")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = _Child()
        return child

    def inc(self, amount: float = 1.0) -> None:
        if self.labelnames:
            raise ValueError(f"{self.name}: labels {self.labelnames} expected")
        self._children[()].inc(amount)

    def collect(self) -> Iterator[MetricFamily]:
        family = counter_family(self.name, self.documentation, self.labelnames)
        for key, child in self._children.items():
            family.add_metric(key, child.value)
        yield family


class _Fixed:
    def __init__(self, families: list[MetricFamily]) -> None:
        self._families = families

    def collect(self) -> Iterable[MetricFamily]:
        return self._families


def platform_collector() -> Collector:
    """``python_info``: the interpreter's version and implementation."""
    major, minor, patchlevel = platform.python_version_tuple()
    info = {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "major": major,
        "minor": minor,
        "patchlevel": patchlevel,
    }
    family = gauge_family("python_info", "Python platform information", list(info))
    family.add_metric(list(info.values()), 1)
    return _Fixed([family])


class _Process:
    def __init__(self, proc: str) -> None:
        self._proc = proc
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._pagesize = os.sysconf("SC_PAGE_SIZE")
        self._btime = 0.0
        try:
            with open(os.path.join(proc, "stat"), "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        self._btime = float(line.split()[1])
        except OSError:
            pass

    def collect(self) -> Iterable[MetricFamily]:
        if not self._btime:
            return []
        me = os.path.join(self._proc, "self")
        result: list[MetricFamily] = []

        def gauge(name: str, documentation: str, value: float, kind: Kind = "gauge") -> None:
            family = MetricFamily(f"process_{name}", documentation, kind)
            family.add_metric((), value)
            result.append(family)

        try:
            with open(os.path.join(me, "stat"), "rb") as f:
                parts = f.read().split(b")")[-1].split()
            gauge("virtual_memory_bytes", "Virtual memory size in bytes.", float(parts[20]))
            gauge(
                "resident_memory_bytes",
                "Resident memory size in bytes.",
                float(parts[21]) * self._pagesize,
            )
            gauge(
                "start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                float(parts[19]) / self._ticks + self._btime,
            )
            gauge(
                "cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                (float(parts[11]) + float(parts[12])) / self._ticks,
                "counter",
            )
        except (OSError, IndexError, ValueError):
            pass
        try:
            open_fds = len(os.listdir(os.path.join(me, "fd")))
            with open(os.path.join(me, "limits"), "rb") as f:
                max_fds = next(
                    float(line.split()[3]) for line in f if line.startswith(b"Max open file")
                )
            gauge("open_fds", "Number of open file descriptors.", open_fds)
            gauge("max_fds", "Maximum number of open file descriptors.", max_fds)
        except (OSError, IndexError, ValueError, StopIteration):
            pass
        return result


def process_collector(proc: str = "/proc") -> Collector:
    """The ``process_*`` metrics of the calling process."""
    return _Process(proc)
