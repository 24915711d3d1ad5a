"""Per-user and per-group address pools in the authentication service (``daemon/_auth_pools.py``).

ocserv 1.1.6 ``src/ip-lease.c`` leases from the session's own network when its per-user or
per-group file names one (``ipv4-network``), with the network's first address as the gateway's
end of the tunnel, and keeps one table of leases for all networks. The end-to-end behaviour
(openconnect's address, netmask, ping to the gateway's end, cookie reconnect) is
``tests/interop/test_user_pools.py``; these tests hold sec-mod's rules:

* a session whose settings name another network than its vhost's leases from a pool of that
  network, made at its first lease; sessions with the same network share it; a network equal to
  a configured pool's is that pool;
* a network overlapping another live pool without being it is refused (no address leased twice);
  at most ``MAX_SESSION_POOLS`` are held;
* a reconnect keeps the lease, the session's end releases it and drops the empty pool;
* after a restart the leases are reserved again in pools made for them; a reload that makes the
  network a configured pool adopts the per-user pool with its leases;
* ``explicit-ipv4`` must be a client address of the session's own network;
* the supervisor takes a worker's per-session network only if it holds the lease.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config
from ocgate.daemon import _auth_pools
from ocgate.daemon._auth import AuthService
from ocgate.daemon._tun_maker import own_network
from ocgate.errors import ResourceError
from ocgate.gateway import SessionSettings
from ocgate.ipc import messages as m
from ocgate.session import Session
from tests.pki import make_pki

_NET_A = ipaddress.IPv4Network("10.60.0.0/24")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "passwd").write_text("alice:eng:$5$x$y\n")
    text = (
        f'auth = "plain[passwd={tmp_path}/passwd]"\n'
        f"server-cert = {pki.server.cert_path}\nserver-key = {pki.server.key_path}\n"
        "ipv4-network = 10.77.0.0/24\nipv6-network = fd77::/48\nipv6-subnet-prefix = 64\n"
        "predictable-ips = false\n"
    )
    return parse_config(text, source=str(tmp_path / "ocserv.conf"))


def _service(config: Config, tmp_path: Path) -> AuthService:
    return AuthService(config, store_path=str(tmp_path / "sessions.sqlite"))


def _login(
    service: AuthService, config: Config, user: str = "alice", **settings: object
) -> tuple[str, Session]:
    cookie, session = service.store.create(
        username=user, groups=("eng",), group="eng", now=time.time(), user_agent="oc",
        remote_addr="198.18.0.2", cookie_timeout=300, session_timeout=None,
    )  # fmt: skip
    explicit = settings.pop("explicit_ipv4", None)
    own = dataclasses.replace(config, **settings) if settings else config  # type: ignore[arg-type]
    session.extra["settings"] = SessionSettings(config=own, explicit_ipv4=explicit)  # type: ignore[arg-type]
    service.store.save(session)  # type: ignore[attr-defined]
    return str(cookie), session


def _claim(service: AuthService, cookie: str, tunnel_id: int, *, want6: bool = False) -> None:
    service.claim(0, m.ClaimSession(cookie=cookie, tunnel_id=tunnel_id, want6=want6))


def test_a_session_leases_from_its_own_network(config: Config, tmp_path: Path) -> None:
    service = _service(config, tmp_path)
    cookie, session = _login(service, config, ipv4_network=_NET_A)
    _claim(service, cookie, 1)
    assert session.ipv4 in _NET_A
    assert session.ipv4 not in (_NET_A.network_address, _NET_A.network_address + 1)
    pool4, pool6 = service.session_pools(session)
    assert pool4 is not None
    assert pool4.network == _NET_A
    assert session.ipv4 in pool4
    assert pool6 is service.pool6  # The other family keeps the host's pool.
    assert service.pool4 is not None
    assert service.pool4.in_use == 0
    # Another user with the same network shares the pool; one without it leases globally.
    cookie_b, bob = _login(service, config, "bob", ipv4_network=_NET_A)
    _claim(service, cookie_b, 2)
    assert bob.ipv4 in _NET_A
    assert bob.ipv4 != session.ipv4
    assert pool4.in_use == 2
    cookie_c, carol = _login(service, config, "carol")
    _claim(service, cookie_c, 3)
    assert carol.ipv4 in ipaddress.IPv4Network("10.77.0.0/24")


def test_the_hosts_network_is_the_hosts_pool(config: Config, tmp_path: Path) -> None:
    service = _service(config, tmp_path)
    cookie, session = _login(service, config, ipv4_network=config.ipv4_network)
    _claim(service, cookie, 1)
    assert service.session_pools(session) == (service.pool4, service.pool6)
    assert service.pool4 is not None
    assert session.ipv4 in service.pool4


def test_an_ipv6_network_of_its_own(config: Config, tmp_path: Path) -> None:
    service = _service(config, tmp_path)
    network = ipaddress.IPv6Network("fd60::/56")
    cookie, session = _login(service, config, ipv6_network=network, ipv6_subnet_prefix=64)
    _claim(service, cookie, 1, want6=True)
    assert session.ipv6 is not None
    assert session.ipv6.subnet_of(network)
    assert session.ipv6.prefixlen == 64
    assert session.ipv4 in ipaddress.IPv4Network("10.77.0.0/24")


def test_an_overlapping_network_is_refused(
    config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = _service(config, tmp_path)
    cookie, _session = _login(service, config, ipv4_network=_NET_A)
    _claim(service, cookie, 1)
    wider = ipaddress.IPv4Network("10.60.0.0/16")
    cookie_b, bob = _login(service, config, "bob", ipv4_network=wider)
    with pytest.raises(ResourceError, match=r"overlaps the pool 10\.60\.0\.0/24"):
        _claim(service, cookie_b, 2)
    assert bob.ipv4 is None
    assert "event=pool-refused network=10.60.0.0/16 user='bob'" in caplog.text
    assert wider not in service._pools.per_user


def test_pools_are_bounded(config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_auth_pools, "MAX_SESSION_POOLS", 2)
    service = _service(config, tmp_path)
    for n in range(2):
        cookie, _ = _login(
            service, config, f"u{n}", ipv4_network=ipaddress.IPv4Network(f"10.6{n}.0.0/24")
        )
        _claim(service, cookie, n + 1)
    cookie, _ = _login(service, config, "u2", ipv4_network=ipaddress.IPv4Network("10.62.0.0/24"))
    with pytest.raises(ResourceError, match="2 per-user pools in use"):
        _claim(service, cookie, 3)


def test_reconnect_keeps_and_the_end_releases_the_lease(config: Config, tmp_path: Path) -> None:
    service = _service(config, tmp_path)
    cookie, session = _login(service, config, ipv4_network=_NET_A)
    _claim(service, cookie, 1)
    leased = session.ipv4
    service.tunnel_down(
        0, m.TunnelDown(sid=session.sid, tunnel_id=1, reason="gone", end_session=False)
    )
    _claim(service, cookie, 2)
    assert session.ipv4 == leased
    service.end_session(session, "logout")
    assert session.ipv4 is None
    assert _NET_A not in service._pools.per_user  # The last lease took the pool with it.


def test_leases_are_reserved_again_after_a_restart(config: Config, tmp_path: Path) -> None:
    service = _service(config, tmp_path)
    cookie, session = _login(service, config, ipv4_network=_NET_A)
    _claim(service, cookie, 1)
    leased = session.ipv4
    closer = getattr(service.store, "close", None)
    assert callable(closer)
    closer()
    again = _service(config, tmp_path)
    pool = again._pools.per_user.get(_NET_A)
    assert pool is not None
    assert leased in pool
    restored = again.store.by_sid(session.sid)
    assert restored.ipv4 == leased
    _claim(again, cookie, 2)  # The cookie reconnect after the restart keeps the address.
    assert restored.ipv4 == leased
    cookie_b, bob = _login(again, config, "bob", ipv4_network=_NET_A)
    _claim(again, cookie_b, 3)
    assert bob.ipv4 in _NET_A
    assert bob.ipv4 != leased


def test_a_reload_that_configures_the_network_adopts_its_pool(
    config: Config, tmp_path: Path
) -> None:
    service = _service(config, tmp_path)
    cookie, session = _login(service, config, ipv4_network=_NET_A)
    _claim(service, cookie, 1)
    pool = service._pools.per_user[_NET_A]
    service.load(dataclasses.replace(config, ipv4_network=_NET_A))
    assert service.pool4 is pool  # One network, one pool: the lease stays reserved.
    assert _NET_A not in service._pools.per_user
    assert session.ipv4 in pool

    async def stats() -> dict[str, float]:
        return dict(service.sessions_reply().stats)  # Built inside the service's event loop.

    assert asyncio.run(stats())["leases4"] == 1


def test_explicit_ipv4_is_checked_against_the_sessions_network(
    config: Config, tmp_path: Path
) -> None:
    service = _service(config, tmp_path)
    inside = ipaddress.IPv4Address("10.60.0.42")
    cookie, session = _login(service, config, ipv4_network=_NET_A, explicit_ipv4=inside)
    _claim(service, cookie, 1)
    assert session.ipv4 == inside
    outside = ipaddress.IPv4Address("10.77.0.42")  # The host's pool, not the session's.
    cookie_b, _bob = _login(service, config, "bob", ipv4_network=_NET_A, explicit_ipv4=outside)
    with pytest.raises(ResourceError, match="outside the address pool"):
        _claim(service, cookie_b, 2)


def test_the_supervisor_takes_a_network_only_with_its_lease() -> None:
    peer4 = ipaddress.IPv4Address("10.60.0.9")
    assert own_network("10.60.0.0/24", peer4, 4) == _NET_A
    assert own_network(None, peer4, 4) is None
    peer6 = ipaddress.IPv6Network("fd60:0:0:1::/64")
    assert own_network("fd60::/56", peer6, 6) == ipaddress.IPv6Network("fd60::/56")
    for text, peer, version in [
        ("10.61.0.0/24", peer4, 4),  # Not the lease's network.
        ("10.60.0.0/24", ipaddress.IPv4Address("10.60.0.1"), 4),  # The gateway's own end.
        ("127.0.0.0/8", ipaddress.IPv4Address("127.0.0.9"), 4),
        ("0.0.0.0/0", peer4, 4),
        ("224.0.0.0/24", ipaddress.IPv4Address("224.0.0.9"), 4),
        ("10.60.0.0/24", None, 4),
        ("fd60::/56", peer6, 4),
        ("fd60::/64", ipaddress.IPv6Network("fd60::/64"), 6),  # Holds the gateway's end.
    ]:
        with pytest.raises(ValueError, match=r"is not an address pool|is not a client lease of"):
            own_network(text, peer, version)
