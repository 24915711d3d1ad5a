"""The address pools of the authentication service, alone (``daemon/_auth_pools.py``).

The pools' rules through the whole service (per-user pools made, shared, bounded, dropped, adopted
by a reload, reserved after a restart) are ``test_secmod_user_pools.py``; these tests hold two
rules no CONNECT there reaches:

* a per-user IPv6 network that is an existing pool's, leased with another subnet prefix, is
  refused rather than given a second pool of the same network;
* a pool a reload retired still holds its leases: a per-user network overlapping it is refused
  until its last lease comes back to it, and then the retired pool is forgotten (reloads that
  change the networks must not pile pools up).
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from ocgate.config import Config
from ocgate.daemon._auth_pools import AddressPools
from ocgate.errors import ResourceError
from ocgate.gateway import SessionSettings
from ocgate.session import Session


@pytest.fixture
def config() -> Config:
    return Config(
        source="t.conf",
        auth=(),
        ipv4_network=ipaddress.IPv4Network("10.77.0.0/24"),
        ipv6_network=ipaddress.IPv6Network("fd77::/48"),
        ipv6_subnet_prefix=64,
    )


def _session(sid: str, config: Config, **own: object) -> Session:
    session = Session(sid=sid, token_digest=b"", username=sid, created=0.0, authenticated_at=0.0)
    settings = dataclasses.replace(config, **own)  # type: ignore[arg-type]
    session.extra["settings"] = SessionSettings(config=settings)
    return session


def test_a_network_leased_with_another_subnet_prefix_is_refused(config: Config) -> None:
    pools = AddressPools(lambda _session: config)
    pools.load(config)
    network = ipaddress.IPv6Network("fd60::/56")
    _pool4, pool6 = pools.for_session(_session("a", config, ipv6_network=network))
    assert pool6 is not None
    assert pool6.subnet_prefix == 64
    other = _session("b", config, ipv6_network=network, ipv6_subnet_prefix=60)
    with pytest.raises(ResourceError, match="no pool for fd60::/56: its pool leases /64"):
        pools.for_session(other)
    assert list(pools.per_user) == [network]


def test_a_retired_pool_keeps_its_leases_until_they_come_back(config: Config) -> None:
    pools = AddressPools(lambda _session: config)
    pools.load(config)
    old = pools.pool4
    assert old is not None
    holder = _session("a", config)
    holder.ipv4 = old.allocate(holder.username)
    pools.load(dataclasses.replace(config, ipv4_network=ipaddress.IPv4Network("10.78.0.0/24")))
    assert pools.pool4 is not old
    assert old in pools.live()
    inside = _session("b", config, ipv4_network=ipaddress.IPv4Network("10.77.0.0/25"))
    with pytest.raises(ResourceError, match=r"it overlaps the pool 10\.77\.0\.0/24"):
        pools.for_session(inside)
    pools.release(holder)
    assert holder.ipv4 is None
    assert old.in_use == 0
    assert old not in pools.live()
    pool4, _pool6 = pools.for_session(inside)  # The retired pool is empty: no lease collides.
    assert pool4 is not None
    assert pool4.network == ipaddress.IPv4Network("10.77.0.0/25")
