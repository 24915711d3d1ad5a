"""Per-session bandwidth limits: ``rx-data-per-sec`` and ``tx-data-per-sec`` (pure).

Theory of operation:

* One :class:`TokenBucket` per direction and per tunnel, built from the session's effective
  configuration (global, then per-group and per-user files, as every per-user key). ``rx`` is what
  the client sends, ``tx`` what it is sent (ocserv's naming). A rate of 0 means no limit and no
  bucket at all, so an unlimited tunnel pays nothing.
* The bucket holds up to ``burst`` bytes and fills at ``rate`` bytes per second of the clock the
  caller passes in (the event loop's monotonic time). A packet passes when the bucket holds at
  least its size, which is then taken out; otherwise the packet is **dropped**, never queued:
  ocserv drops too (``src/worker-bandwidth.c``: ``bandwidth_update`` returns "no" and the worker
  discards the packet), and TCP inside the tunnel reacts to the loss by slowing down. Queueing
  would only add latency and memory.
* The burst is one second of the rate, as ocserv's budget never exceeds one second's allowance
  (``allowed_kb = MIN(t, kb_per_sec)``), but at least :data:`MIN_BURST`, so that at a very low rate
  a packet as large as the largest frame still gets through eventually. A new bucket starts full.
* Sizes are the IP packet's length, what ``rx_bytes``/``tx_bytes`` count. ocserv rounds the rate
  down to whole kilobytes (``rx_per_sec /= 1000``), so 1 to 999 means "no limit" there; here the
  rate is honoured as written.
* The limit is the same whichever channel carries the packet: the tunnel applies it where CSTP and
  DTLS meet (the TUN device side), so a client cannot escape it by switching channels.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIN_BURST", "TokenBucket"]

MIN_BURST = 65536
"""The smallest bucket, in bytes: larger than any packet a tunnel carries."""


@dataclass(slots=True, kw_only=True)
class TokenBucket:
    """Admit packets at ``rate`` bytes per second with a burst of ``burst`` bytes.

    :param rate: bytes per second, > 0.
    :param burst: the bucket's size in bytes.
    :param tokens: bytes that may pass now.
    :param updated: the time ``tokens`` was last brought up to date.
    """

    rate: int
    burst: float
    tokens: float
    updated: float
    passed_packets: int = 0
    passed_bytes: int = 0
    dropped_packets: int = 0
    dropped_bytes: int = 0

    @classmethod
    def per_second(cls, rate: int, now: float) -> TokenBucket | None:
        """A full bucket for ``rate`` bytes/s (``rx-data-per-sec``), or ``None`` when ``rate``
        is 0: no limit.

        :param now: the caller's monotonic clock, in seconds.
        """
        if rate <= 0:
            return None
        burst = float(max(rate, MIN_BURST))
        return cls(rate=rate, burst=burst, tokens=burst, updated=now)

    def _refill(self, now: float) -> None:
        elapsed = now - self.updated
        if elapsed > 0:  # A clock that stands still or steps back adds nothing.
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated = now

    def admit(self, size: int, now: float) -> bool:
        """Whether a packet of ``size`` bytes may pass at ``now``; if so, its bytes are taken."""
        self._refill(now)
        if size > self.tokens:
            self.dropped_packets += 1
            self.dropped_bytes += size
            return False
        self.tokens -= size
        self.passed_packets += 1
        self.passed_bytes += size
        return True

    def filter(self, packets: list[bytes], now: float) -> list[bytes]:
        """The packets of a batch that may pass at ``now``, in order; the rest are dropped."""
        self._refill(now)
        tokens = self.tokens
        passed: list[bytes] = []
        for packet in packets:
            size = len(packet)
            if size <= tokens:
                tokens -= size
                passed.append(packet)
                self.passed_bytes += size
            else:
                self.dropped_packets += 1
                self.dropped_bytes += size
        self.passed_packets += len(passed)
        self.tokens = tokens
        return passed
