"""Packet-processing latency of a worker, for occtl's ``Median latency`` and ``STDEV latency``.

ocserv (``src/worker-latency.c``) times each DTLS record from its kernel receive timestamp to the
end of its processing, collects samples in sets of ``LATENCY_SAMPLE_SIZE`` (1024), and for each full
set adds the set's median and standard deviation (its RMS about the mean) to running totals that
the main process divides by the number of sets. ocgate does the same per worker with the time from
the TCP read of client data in tunnel mode (``ClientConnection.data_received``) to the end of its
processing (TLS decryption, CSTP parsing, filter, TUN write): the event loop's own scheduling delay
before the read is not seen, the kernel-timestamp part of ocserv's figure is. Until a first set is
full there is no figure, and occtl prints ``<1ms`` (the value 0), as ocserv does.
"""

from __future__ import annotations

import math

__all__ = ["LATENCY_SAMPLE_SIZE", "LatencySampler", "latency_figures"]

LATENCY_SAMPLE_SIZE = 1024
"""Samples per set (ocserv ``worker-latency.h``)."""


class LatencySampler:
    """Collects latency samples (nanoseconds) into ``stats`` totals (microseconds).

    ``stats`` receives ``latency_median_total``, ``latency_rms_total`` and ``latency_sets``; the
    supervisor sums them over workers and divides the totals by the number of sets.
    """

    __slots__ = ("_samples", "_stats")

    def __init__(self, stats: dict[str, float]) -> None:
        self._stats = stats
        self._samples: list[int] = []
        for key in ("latency_median_total", "latency_rms_total", "latency_sets"):
            stats.setdefault(key, 0)

    def sample(self, elapsed_ns: int) -> None:
        self._samples.append(elapsed_ns // 1000)
        if len(self._samples) < LATENCY_SAMPLE_SIZE:
            return
        samples, self._samples = self._samples, []
        mean = sum(samples) / len(samples)
        rms = math.sqrt(sum((s - mean) ** 2 for s in samples) / len(samples))
        self._stats["latency_median_total"] += sorted(samples)[len(samples) // 2]
        self._stats["latency_rms_total"] += int(rms)
        self._stats["latency_sets"] += 1


def latency_figures(median_total: float, rms_total: float, sets: float) -> tuple[int, int]:
    """``(median, stdev)`` in microseconds from summed totals; ``(0, 0)`` before a first set."""
    if sets <= 0:
        return 0, 0
    return int(median_total / sets), int(rms_total / sets)
