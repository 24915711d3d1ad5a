"""One scrape for many processes: each process reports its samples, the supervisor adds them up.

Every process keeps its own :class:`~ocgate.metrics.GatewayMetrics` registry (a worker counts its
tunnels, handshakes and scripts; the authentication service its logins, bans and waiting
sessions). On a scrape, :func:`samples_of` turns a registry into plain typed samples that cross
the process boundary, and :func:`render_merged` adds the samples of every process up by name and
labels and writes the Prometheus text exposition. Counters and most gauges add up; a few
process-level gauges where a sum means nothing take the minimum or maximum instead. Labels the
caller gives (``extra_labels``: the gateway's ``node`` label) are added to every sample, so that
the scrapes of several gateways behind one balancer stay apart in one Prometheus.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal

from ocgate.ipc import messages as m

if TYPE_CHECKING:  # The supervisor merges without importing prometheus_client at all.
    from prometheus_client import CollectorRegistry

    from ocgate.metrics._core import Registry

__all__ = ["render_merged", "samples_of"]

_COMBINE = {
    "process_start_time_seconds": min,
    "process_max_fds": max,
    "process_virtual_memory_max_bytes": max,
    "python_info": max,
}


def samples_of(registry: Registry | CollectorRegistry) -> m.Metrics:
    """Every sample of ``registry``, with the help text of each family."""
    samples: list[m.Sample] = []
    helps: dict[str, str] = {}
    for family in registry.collect():
        kind: Literal["counter", "gauge"] = "counter" if family.type == "counter" else "gauge"
        helps[family.name] = family.documentation[:4096]
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            value = float(sample.value)
            if math.isnan(value):
                continue
            samples.append(m.Sample(sample.name, dict(sample.labels), value, kind))
    return m.Metrics(samples=samples, help=helps)


def render_merged(
    parts: Iterable[m.Metrics], extra_labels: Mapping[str, str] | None = None
) -> bytes:
    """The Prometheus text exposition of the samples of every process, added up.

    :param extra_labels: labels set on every sample (they replace a sample's own of that name).
    """
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    kinds: dict[str, str] = {}
    helps: dict[str, str] = {}
    extra = dict(extra_labels or {})
    for part in parts:
        helps.update(part.help)
        for sample in part.samples:
            merged = {**sample.labels, **extra} if extra else sample.labels
            key = (sample.name, tuple(sorted(merged.items())))
            combine = _COMBINE.get(sample.name)
            if key in values:
                old = values[key]
                values[key] = combine(old, sample.value) if combine else old + sample.value
            else:
                values[key] = sample.value
            kinds[sample.name] = sample.kind
    lines: list[str] = []
    announced: set[str] = set()
    for (name, labels), value in sorted(values.items()):
        family = _family(name, helps)
        if family not in announced:
            announced.add(family)
            help_text = helps.get(family, "").replace("\\", "\\\\").replace("\n", "\\n")
            lines.append(f"# HELP {family} {help_text}")
            lines.append(f"# TYPE {family} {kinds.get(name, 'gauge')}")
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        lines.append(
            f"{name}{{{label_text}}} {_number(value)}" if labels else f"{name} {_number(value)}"
        )
    return ("\n".join(lines) + "\n").encode()


def _family(name: str, helps: dict[str, str]) -> str:
    if name.endswith("_total") and name[: -len("_total")] in helps:
        return name[: -len("_total")]
    return name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(value) if not value.is_integer() else f"{value:.1f}"
