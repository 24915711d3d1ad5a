"""Addresses at CONNECT: the client never picks its first address; explicit addresses must fit
the pools and be free (issue 11, "tunnel source addresses")."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from ocgate.config import Config
from ocgate.errors import ResourceError
from ocgate.gateway import SessionSettings, lease_addresses
from ocgate.radius import RadiusResult
from ocgate.session import Ipv4Pool, Ipv6Pool, MemorySessionStore, Session

POOL4 = IPv4Network("10.77.0.0/24")
POOL6 = IPv6Network("fd77::/64")


def _config() -> Config:
    return Config(source="t.conf", auth=())


def _session(store: MemorySessionStore, name: str, **settings: object) -> Session:
    _, session = store.create(
        username=name, groups=(), group=None, now=0.0, user_agent="", remote_addr="198.18.0.2",
        cookie_timeout=300, session_timeout=None,
    )  # fmt: skip
    if settings:
        session.extra["settings"] = SessionSettings(config=_config(), **settings)  # type: ignore[arg-type]
    return session


@pytest.fixture
def store() -> MemorySessionStore:
    return MemorySessionStore()


@pytest.fixture
def pools() -> tuple[Ipv4Pool, Ipv6Pool]:
    return Ipv4Pool(POOL4, predictable=True), Ipv6Pool(POOL6, 128, predictable=True)


def _lease(session: Session, pools: tuple[Ipv4Pool, Ipv6Pool], store: MemorySessionStore) -> None:
    lease_addresses(session, pools[0], pools[1], store.sessions(), want6=True)


def test_a_session_keeps_its_leases(
    store: MemorySessionStore, pools: tuple[Ipv4Pool, Ipv6Pool]
) -> None:
    session = _session(store, "alice")
    _lease(session, pools, store)
    first = (session.ipv4, session.ipv6)
    _lease(session, pools, store)
    assert (session.ipv4, session.ipv6) == first
    assert pools[0].in_use == pools[1].in_use == 1


def test_explicit_addresses_inside_the_pools(
    store: MemorySessionStore, pools: tuple[Ipv4Pool, Ipv6Pool]
) -> None:
    session = _session(
        store, "alice", explicit_ipv4=IPv4Address("10.77.0.9"), explicit_ipv6=IPv6Address("fd77::9")
    )
    _lease(session, pools, store)
    assert session.ipv4 == IPv4Address("10.77.0.9")
    assert session.ipv6 == IPv6Network("fd77::9/128")
    assert IPv4Address("10.77.0.9") in pools[0]
    assert IPv6Address("fd77::9") in pools[1]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"explicit_ipv4": IPv4Address("192.168.1.10")}, "outside the address pool"),
        ({"explicit_ipv4": IPv4Address("10.77.0.1")}, "outside the address pool"),  # server end
        ({"explicit_ipv4": IPv4Address("10.77.0.255")}, "outside the address pool"),  # broadcast
        ({"explicit_ipv6": IPv6Address("fd99::1")}, "outside the address pool"),
        ({"explicit_ipv6": IPv6Address("fd77::1")}, "outside the address pool"),  # server end
    ],
)
def test_explicit_addresses_outside_the_pools_are_refused(
    store: MemorySessionStore,
    pools: tuple[Ipv4Pool, Ipv6Pool],
    settings: dict[str, object],
    message: str,
) -> None:
    session = _session(store, "alice", **settings)
    with pytest.raises(ResourceError, match=message):
        _lease(session, pools, store)


def test_an_explicit_ipv6_needs_an_ipv6_pool(store: MemorySessionStore) -> None:
    session = _session(store, "alice", explicit_ipv6=IPv6Address("fd77::9"))
    with pytest.raises(ResourceError, match="no ipv6-network"):
        lease_addresses(session, None, None, (), want6=True)
    lease_addresses(session, None, None, (), want6=False)  # No IPv6 asked: nothing to refuse.
    assert session.ipv6 is None


def test_an_explicit_ipv6_must_start_a_subnet_lease(store: MemorySessionStore) -> None:
    pool6 = Ipv6Pool(IPv6Network("fd77::/48"), 64, predictable=True)
    good = _session(store, "alice", explicit_ipv6=IPv6Address("fd77:0:0:5::"))
    lease_addresses(good, None, pool6, (), want6=True)
    assert good.ipv6 == IPv6Network("fd77:0:0:5::/64")
    bad = _session(store, "bob", explicit_ipv6=IPv6Address("fd77:0:0:6::1"))
    with pytest.raises(ResourceError, match="first address of a /64 lease"):
        lease_addresses(bad, None, pool6, (), want6=True)
    assert pool6.in_use == 1  # The refused attempt gave its lease back.


@pytest.mark.parametrize("family", [4, 6])
def test_an_explicit_address_held_by_another_session_is_refused(
    store: MemorySessionStore, pools: tuple[Ipv4Pool, Ipv6Pool], family: int
) -> None:
    want = {"explicit_ipv4": IPv4Address("10.77.0.9")} if family == 4 else {
        "explicit_ipv6": IPv6Address("fd77::9")
    }  # fmt: skip
    first = _session(store, "alice", **want)
    _lease(first, pools, store)
    second = _session(store, "bob", **want)
    with pytest.raises(ResourceError, match="leased to another session"):
        _lease(second, pools, store)


def test_a_pool_lease_cannot_be_taken_by_an_explicit_one(
    store: MemorySessionStore, pools: tuple[Ipv4Pool, Ipv6Pool]
) -> None:
    alice = _session(store, "alice")
    _lease(alice, pools, store)
    assert alice.ipv4 is not None
    squatter = _session(store, "mallory", explicit_ipv4=alice.ipv4)
    with pytest.raises(ResourceError, match="leased to another session"):
        _lease(squatter, pools, store)


def test_a_radius_framed_address_may_lie_outside_the_pool_but_must_be_free(
    store: MemorySessionStore, pools: tuple[Ipv4Pool, Ipv6Pool]
) -> None:
    framed = IPv4Address("10.9.0.5")
    carol = _session(store, "carol", explicit_ipv4=framed)
    carol.extra["radius"] = RadiusResult(username="carol", groups=(), framed_ipv4=framed)
    _lease(carol, pools, store)
    assert carol.ipv4 == framed
    dave = _session(store, "dave", explicit_ipv4=framed)
    dave.extra["radius"] = RadiusResult(username="dave", groups=(), framed_ipv4=framed)
    with pytest.raises(ResourceError, match="leased to another session"):
        _lease(dave, pools, store)


def test_a_radius_framed_address_on_the_pool_server_address_is_refused(
    store: MemorySessionStore, pools: tuple[Ipv4Pool, Ipv6Pool]
) -> None:
    server = IPv4Address("10.77.0.1")
    carol = _session(store, "carol", explicit_ipv4=server)
    carol.extra["radius"] = RadiusResult(username="carol", groups=(), framed_ipv4=server)
    with pytest.raises(ResourceError, match="not a client address"):
        _lease(carol, pools, store)
