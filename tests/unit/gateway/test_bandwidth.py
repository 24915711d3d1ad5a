"""The token bucket behind ``rx-data-per-sec`` / ``tx-data-per-sec`` (time passed in)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from ocgate.gateway import TokenBucket
from ocgate.gateway._bandwidth import MIN_BURST

RATE = 2_000_000  # 2 MB/s, the end-to-end test's limit.


def _bucket(rate: int = RATE, now: float = 100.0) -> TokenBucket:
    bucket = TokenBucket.per_second(rate, now)
    assert bucket is not None
    return bucket


def test_zero_rate_means_no_bucket() -> None:
    assert TokenBucket.per_second(0, 1.0) is None


def test_a_new_bucket_holds_one_second_of_the_rate() -> None:
    bucket = _bucket()
    assert bucket.burst == bucket.tokens == RATE
    assert bucket.admit(RATE, 100.0)
    assert not bucket.admit(1, 100.0)
    assert (bucket.passed_bytes, bucket.dropped_packets, bucket.dropped_bytes) == (RATE, 1, 1)


def test_a_low_rate_still_passes_a_large_packet() -> None:
    bucket = _bucket(rate=100)
    assert bucket.burst == MIN_BURST
    assert bucket.admit(1500, 100.0)


def test_it_refills_at_the_rate_and_no_further_than_the_burst() -> None:
    bucket = _bucket()
    assert bucket.admit(RATE, 100.0)
    assert not bucket.admit(1001, 100.0005)  # 0.5 ms: 1000 bytes.
    assert bucket.admit(1000, 100.0005)
    bucket.admit(0, 1000.0)  # A long idle time fills the bucket only to the burst.
    assert bucket.tokens == RATE


def test_a_clock_that_steps_back_adds_nothing() -> None:
    bucket = _bucket()
    assert bucket.admit(RATE, 100.0)
    assert not bucket.admit(1, 50.0)
    assert bucket.updated == 100.0
    assert bucket.admit(2000, 100.001)


def test_filter_keeps_order_and_lets_smaller_packets_through() -> None:
    bucket = _bucket(rate=MIN_BURST)
    big, small = b"B" * 60000, b"s" * 4000
    assert bucket.filter([big, big, small, small], 100.0) == [big, small]
    assert (bucket.passed_packets, bucket.passed_bytes) == (2, 64000)
    assert (bucket.dropped_packets, bucket.dropped_bytes) == (2, 64000)
    assert bucket.filter([], 100.0) == []


def test_a_sender_three_times_too_fast_gets_the_rate() -> None:
    # 10 s of 1400-byte packets offered at 6 MB/s, in batches as a TUN read returns them.
    bucket = _bucket()
    packet = bytes(1400)
    now, sent = 100.0, 0
    step = 0.001
    while now < 110.0:
        sent += len(bucket.filter([packet] * 4, now)) * len(packet)  # 5.6 kB per ms.
        now += step
    assert RATE * 10 - len(packet) <= sent <= RATE * 10 + bucket.burst
    assert bucket.dropped_packets > 0


def test_a_sender_below_the_rate_loses_nothing() -> None:
    bucket = _bucket()
    rng = random.Random(0)
    now = 100.0
    for _ in range(5000):
        now += 0.001
        assert bucket.admit(rng.randrange(40, 1800), now)  # At most 1.8 MB/s.
    assert bucket.dropped_packets == 0


@given(
    rate=st.integers(min_value=1, max_value=10**9),
    events=st.lists(
        st.tuples(st.floats(min_value=0, max_value=2, allow_nan=False), st.integers(0, 70000)),
        max_size=200,
    ),
)
def test_never_more_than_burst_plus_rate_times_time(
    rate: int, events: list[tuple[float, int]]
) -> None:
    bucket = _bucket(rate=rate, now=0.0)
    now = 0.0
    for delta, size in events:
        now += delta
        bucket.admit(size, now)
        assert bucket.passed_bytes <= bucket.burst + rate * now + 1e-6 * max(1.0, rate * now)
        assert 0 <= bucket.tokens <= bucket.burst
