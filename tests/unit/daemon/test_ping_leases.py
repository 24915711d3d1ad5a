"""``ping-leases`` in sec-mod: a new pool address that answers a ping is replaced (ocserv
``src/ip-lease.c``: up to MAX_IP_TRIES candidates, an answering one is skipped), and the latency
sampler behind occtl's ``Median latency``/``STDEV latency`` (ocserv ``src/worker-latency.c``)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network

import pytest

from ocgate.daemon._auth import _PING_TRIES, _first_silent
from ocgate.daemon._latency import LATENCY_SAMPLE_SIZE, LatencySampler, latency_figures
from ocgate.errors import ResourceError
from ocgate.session import Ipv4Pool


def _pool() -> Ipv4Pool:
    return Ipv4Pool(IPv4Network("10.77.0.0/24"), predictable=True)


def _run(pool: Ipv4Pool, answering: set[str]) -> tuple[IPv4Address, list[str]]:
    pinged: list[str] = []

    async def ping(address: str) -> bool:
        pinged.append(address)
        return address in answering

    first = pool.allocate("alice")
    got = asyncio.run(_first_silent(first, lambda: pool.allocate("alice"), pool.release, str, ping))
    return got, pinged


def test_a_silent_address_is_kept() -> None:
    pool = _pool()
    got, pinged = _run(pool, set())
    assert pinged == [str(got)]
    assert pool.in_use == 1


def test_answering_addresses_are_skipped_and_given_back() -> None:
    pool = _pool()
    squatted = str(_pool().allocate("alice"))  # What alice would get (predictable-ips).
    got, pinged = _run(pool, {squatted})
    assert pinged[0] == squatted
    assert str(got) != squatted
    assert pinged == [squatted, str(got)]
    assert pool.in_use == 1  # The answering address went back to the pool.


def test_every_address_answering_refuses_and_leaks_nothing() -> None:
    pool = _pool()
    with pytest.raises(ResourceError, match="answer a ping"):
        _run(pool, {f"10.77.0.{i}" for i in range(256)})
    assert pool.in_use == 0


def test_tries_are_bounded() -> None:
    pool = _pool()
    pinged: list[str] = []

    async def ping(address: str) -> bool:
        pinged.append(address)
        return True

    with pytest.raises(ResourceError):
        asyncio.run(
            _first_silent(pool.allocate("a"), lambda: pool.allocate("a"), pool.release, str, ping)
        )
    assert len(pinged) == _PING_TRIES


def test_latency_sets_of_1024_samples() -> None:
    stats: dict[str, float] = {}
    sampler = LatencySampler(stats)
    assert latency_figures(stats["latency_median_total"], stats["latency_rms_total"], 0) == (0, 0)
    for i in range(LATENCY_SAMPLE_SIZE - 1):
        sampler.sample(1_000_000 if i % 2 else 3_000_000)  # 1 ms and 3 ms, in ns.
    assert stats["latency_sets"] == 0  # No figure before a full set (occtl prints <1ms).
    sampler.sample(1_000_000)
    assert stats["latency_sets"] == 1
    # Half 1000 us, half 3000 us: the median (upper middle) is 3000, the deviation 1000.
    assert latency_figures(
        stats["latency_median_total"], stats["latency_rms_total"], stats["latency_sets"]
    ) == (3000, 1000)
