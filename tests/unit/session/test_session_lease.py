from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.errors import ConfigError, ResourceError
from ocgate.session import Ipv4Pool, Ipv6Pool


def seeded(seed: int = 0) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


# --- IPv4 -------------------------------------------------------------------------------------


def test_v4_server_address_and_exhaustion() -> None:
    net = IPv4Network("10.0.0.0/24")
    pool = Ipv4Pool(net, predictable=False, random_bytes=seeded())
    assert pool.server_address == IPv4Address("10.0.0.1")
    assert pool.capacity == 253
    got = {pool.allocate(f"user{i}") for i in range(253)}
    assert len(got) == 253
    assert pool.in_use == 253
    assert IPv4Address("10.0.0.0") not in got
    assert IPv4Address("10.0.0.1") not in got
    assert IPv4Address("10.0.0.255") not in got
    assert all(a in net for a in got)
    with pytest.raises(ResourceError):
        pool.allocate("one-too-many")


def test_v4_reuse_after_release() -> None:
    pool = Ipv4Pool(IPv4Network("192.168.5.0/29"), predictable=True)
    leased = [pool.allocate("alice") for _ in range(pool.capacity)]
    assert sorted(int(a) & 7 for a in leased) == [2, 3, 4, 5, 6]
    pool.release(leased[2])
    assert leased[2] not in pool
    assert pool.in_use == 4
    assert pool.allocate("bob") == leased[2]
    assert pool.in_use == 5


def test_v4_release_unknown_is_noop() -> None:
    pool = Ipv4Pool(IPv4Network("10.0.0.0/24"), predictable=True)
    pool.release(IPv4Address("10.0.0.9"))
    pool.release(IPv4Address("172.16.0.1"))
    pool.release(pool.server_address)
    assert pool.in_use == 0


def test_v4_prefer() -> None:
    pool = Ipv4Pool(IPv4Network("10.1.0.0/16"), predictable=True)
    want = IPv4Address("10.1.200.7")
    assert pool.allocate("alice", prefer=want) == want
    assert want in pool
    # Taken: somebody else asking for it gets another address.
    other = pool.allocate("bob", prefer=want)
    assert other != want
    # Outside the pool, the server address, network and broadcast are never honoured.
    for bad in ("10.2.0.5", "10.1.0.1", "10.1.0.0", "10.1.255.255"):
        got = pool.allocate("carol", prefer=IPv4Address(bad))
        assert got != IPv4Address(bad)
        assert pool.owns(got)
    assert pool.in_use == 6


def test_v4_predictable_same_key_same_address() -> None:
    net = IPv4Network("10.20.0.0/16")
    first = Ipv4Pool(net, predictable=True).allocate("alice")
    second = Ipv4Pool(net, predictable=True).allocate("alice")
    assert first == second
    others = {Ipv4Pool(net, predictable=True).allocate(f"user{i}") for i in range(20)}
    assert len(others) > 15


def test_v4_random_start_uses_random_bytes() -> None:
    net = IPv4Network("10.20.0.0/16")
    a = Ipv4Pool(net, predictable=False, random_bytes=seeded(1)).allocate("alice")
    b = Ipv4Pool(net, predictable=False, random_bytes=seeded(1)).allocate("alice")
    c = Ipv4Pool(net, predictable=False, random_bytes=seeded(2)).allocate("alice")
    assert a == b
    assert a != c


def test_v4_linear_probe_wraps_around() -> None:
    # Start slot = capacity - 1 (the last address); the next candidate wraps to slot 0.
    pool = Ipv4Pool(
        IPv4Network("10.0.0.0/29"),
        predictable=False,
        random_bytes=lambda n: b"\x00" * (n - 1) + b"\x04",
    )
    assert pool.allocate("a") == IPv4Address("10.0.0.6")
    assert pool.allocate("b") == IPv4Address("10.0.0.2")
    assert pool.allocate("c") == IPv4Address("10.0.0.3")


def test_v4_slash30_has_one_client() -> None:
    pool = Ipv4Pool(IPv4Network("10.0.0.4/30"), predictable=True)
    assert pool.server_address == IPv4Address("10.0.0.5")
    assert pool.allocate("x") == IPv4Address("10.0.0.6")
    with pytest.raises(ResourceError):
        pool.allocate("y")


@pytest.mark.parametrize("net", ["10.0.0.0/31", "10.0.0.1/32"])
def test_v4_too_small(net: str) -> None:
    with pytest.raises(ConfigError, match="no address"):
        Ipv4Pool(IPv4Network(net), predictable=True)


def test_v4_large_pool_is_cheap() -> None:
    pool = Ipv4Pool(IPv4Network("10.0.0.0/8"), predictable=False, random_bytes=seeded())
    assert pool.capacity == 2**24 - 3
    leased = {pool.allocate("same-user") for _ in range(2000)}
    assert len(leased) == 2000
    assert "10.0.0.0/8" in repr(pool)


def test_v4_contains_non_address() -> None:
    pool = Ipv4Pool(IPv4Network("10.0.0.0/24"), predictable=True)
    assert "10.0.0.2" not in pool
    assert IPv6Address("::1") not in pool
    assert not pool.owns(IPv4Address("10.0.0.1"))
    assert pool.owns(IPv4Address("10.0.0.254"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=80), st.booleans())
def test_v4_model(ops: list[tuple[bool, int]], predictable: bool) -> None:
    pool = Ipv4Pool(IPv4Network("10.0.0.0/27"), predictable=predictable, random_bytes=seeded())
    held: set[IPv4Address] = set()
    for alloc, n in ops:
        if alloc:
            if len(held) == pool.capacity:
                with pytest.raises(ResourceError):
                    pool.allocate(f"u{n}")
                continue
            addr = pool.allocate(f"u{n}", prefer=IPv4Address("10.0.0.0") + n)
            assert addr not in held
            assert pool.owns(addr)
            held.add(addr)
        elif held:
            victim = sorted(held)[n % len(held)]
            pool.release(victim)
            held.discard(victim)
        assert pool.in_use == len(held)
        assert all(a in pool for a in held)


# --- IPv6 -------------------------------------------------------------------------------------


def test_v6_single_addresses_in_a_64() -> None:
    net = IPv6Network("fd00:1:2:3::/64")
    pool = Ipv6Pool(net, 128, predictable=True)
    assert pool.server_address == IPv6Address("fd00:1:2:3::1")
    assert pool.capacity == 2**64 - 2
    lease = pool.allocate("alice")
    assert lease.prefixlen == 128
    assert lease.network_address in net
    assert lease.network_address not in (net.network_address, pool.server_address)
    assert lease in pool
    assert lease.network_address in pool
    assert Ipv6Pool(net, 128, predictable=True).allocate("alice") == lease
    pool.release(lease)
    assert pool.in_use == 0


def test_v6_subnets_of_a_48() -> None:
    net = IPv6Network("fd00:abcd:1::/48")
    pool = Ipv6Pool(net, 64, predictable=False, random_bytes=seeded())
    assert pool.capacity == 2**16 - 1
    leases = {pool.allocate("bob") for _ in range(500)}
    assert len(leases) == 500
    server_subnet = IPv6Network("fd00:abcd:1::/64")
    for lease in leases:
        assert lease.prefixlen == 64
        assert lease.subnet_of(net)
        assert lease != server_subnet
    assert "subnet_prefix=64" in repr(pool)


def test_v6_prefer_subnet_or_address() -> None:
    pool = Ipv6Pool(IPv6Network("fd00:abcd:1::/48"), 64, predictable=True)
    want = IPv6Network("fd00:abcd:1:42::/64")
    assert pool.allocate("a", prefer=want) == want
    assert pool.allocate("b", prefer=want) != want
    # An address inside a free subnet picks that subnet.
    assert pool.allocate("c", prefer=IPv6Address("fd00:abcd:1:43::99")) == IPv6Network(
        "fd00:abcd:1:43::/64"
    )
    # A different prefix length, the server's subnet or a foreign network are not honoured.
    for bad in (
        IPv6Network("fd00:abcd:1:44::/80"),
        IPv6Network("fd00:abcd:1::/64"),
        IPv6Network("fd00:ffff::/64"),
        IPv6Address("fd00:abcd::1"),
    ):
        got = pool.allocate("d", prefer=bad)
        assert got != bad
        assert pool.owns(got)
    assert IPv6Address("fd00:abcd:1:42::5") in pool
    assert "fd00:abcd:1:42::/64" not in pool
    assert not pool.owns(IPv6Address("fd00:abcd:1::1"))
    assert not pool.owns(IPv6Address("fd00:abcd:2::"))


def test_v6_tiny_pool_exhausts_and_reuses() -> None:
    pool = Ipv6Pool(IPv6Network("fd00::/126"), predictable=True)
    got = {pool.allocate("a"), pool.allocate("b")}
    assert got == {IPv6Network("fd00::2/128"), IPv6Network("fd00::3/128")}
    with pytest.raises(ResourceError):
        pool.allocate("c")
    pool.release(IPv6Address("fd00::3"))
    assert pool.allocate("c") == IPv6Network("fd00::3/128")


def test_v6_release_unknown_is_noop() -> None:
    pool = Ipv6Pool(IPv6Network("fd00::/64"), 128, predictable=True)
    pool.release(IPv6Network("fd01::5/128"))
    pool.release(IPv6Network("fd00::100/120"))
    assert pool.in_use == 0


@pytest.mark.parametrize(
    ("net", "sub"), [("fd00::/64", 64), ("fd00::/64", 48), ("fd00::/127", 128), ("fd00::/64", 129)]
)
def test_v6_bad_prefixes(net: str, sub: int) -> None:
    with pytest.raises(ConfigError):
        Ipv6Pool(IPv6Network(net), sub, predictable=True)
