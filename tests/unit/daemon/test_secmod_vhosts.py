"""Virtual hosts in the authentication service: login services, pools and cookies per vhost.

The end-to-end behaviour (openconnect, SNI, each vhost's users, pool, routes, occtl) is
``tests/interop/test_vhosts.py``; these tests hold the rules of ``daemon/_auth.py`` directly:

* each vhost has its own login services (its password file), chosen by the connection's vhost;
* a vhost with another network has a pool of its own, one with the top level's shares it;
* a cookie is claimed only through the vhost it logged in to, and leases come from that vhost's
  pool; ``show sessions`` names the vhost; ``max-same-clients`` counts a vhost's users only;
* leases of a vhost's pool are reserved again after a restart (the store knows one pool).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config
from ocgate.control import SessionInfo
from ocgate.daemon._auth import AuthService
from ocgate.errors import InvalidCookie
from ocgate.gateway import SessionSettings
from ocgate.ipc import messages as m
from ocgate.session import Session
from tests.pki import make_pki


@pytest.fixture
def config(tmp_path: Path) -> Config:
    pki = make_pki(tmp_path / "pki")
    for name in ("passwd", "passwd-a", "passwd-b"):
        (tmp_path / name).write_text("alice:eng:$5$x$y\n")
    text = (
        f'auth = "plain[passwd={tmp_path}/passwd]"\n'
        f"server-cert = {pki.server.cert_path}\nserver-key = {pki.server.key_path}\n"
        "ipv4-network = 10.77.0.0/24\n"
        "max-same-clients = 2\n"
        f'[vhost:a.example]\nauth = "plain[passwd={tmp_path}/passwd-a]"\n'
        "ipv4-network = 10.81.0.0/24\n"
        f'[vhost:b.example]\nauth = "plain[passwd={tmp_path}/passwd-b]"\n'
    )
    return parse_config(text, source=str(tmp_path / "ocserv.conf"))


def _service(config: Config, tmp_path: Path) -> AuthService:
    return AuthService(config, store_path=str(tmp_path / "sessions.sqlite"))


def _login(service: AuthService, host: Config) -> tuple[str, Session]:
    cookie, session = service.store.create(
        username="alice", groups=("eng",), group="eng", now=time.time(), user_agent="oc",
        remote_addr="198.18.0.2", cookie_timeout=300, session_timeout=None,
    )  # fmt: skip
    session.extra["settings"] = SessionSettings(config=host)
    service.store.save(session)  # type: ignore[attr-defined]
    return str(cookie), session


def _sessions(service: AuthService) -> list[SessionInfo]:
    """``show sessions`` (the reply is built inside the service's event loop)."""

    async def reply() -> list[SessionInfo]:
        return list(service.sessions_reply().sessions)

    return asyncio.run(reply())


def test_each_vhost_has_its_own_login_services(config: Config, tmp_path: Path) -> None:
    service = _service(config, tmp_path)
    a, b = config.vhosts
    assert service.services_for("").config is config
    assert service.services_for("a.example").config is a
    assert service.services_for("b.example").config is b
    assert service.services_for("gone.example") is service.login_services
    assert service.services_for("a.example").backends is not service.login_services.backends


def test_pools_per_network(config: Config, tmp_path: Path) -> None:
    service = _service(config, tmp_path)
    a, b = config.vhosts
    pool_a, _ = service.pools_for(a)
    assert pool_a is not None
    assert pool_a.network == ipaddress.IPv4Network("10.81.0.0/24")
    assert service.pools_for(b) == (service.pool4, service.pool6)  # Inherited network: shared.
    assert service.pools_for(config) == (service.pool4, service.pool6)


def test_a_cookie_is_claimed_only_through_its_vhost(config: Config, tmp_path: Path) -> None:
    service = _service(config, tmp_path)
    a, _b = config.vhosts
    cookie, session = _login(service, a)
    for elsewhere in ("", "b.example"):
        with pytest.raises(InvalidCookie, match="another virtual host"):
            service.claim(0, m.ClaimSession(cookie=cookie, tunnel_id=1, vhost=elsewhere))
    service.claim(0, m.ClaimSession(cookie=cookie, tunnel_id=2, vhost="a.example"))
    assert session.ipv4 in ipaddress.IPv4Network("10.81.0.0/24")
    assert [s.vhost for s in _sessions(service)] == ["a.example"]
    default_cookie, default_session = _login(service, config)
    service.claim(0, m.ClaimSession(cookie=default_cookie, tunnel_id=3))
    assert default_session.ipv4 in ipaddress.IPv4Network("10.77.0.0/24")
    assert sorted(s.vhost for s in _sessions(service)) == ["a.example", "default"]


def test_max_same_clients_counts_a_vhosts_users(config: Config, tmp_path: Path) -> None:
    service = _service(config, tmp_path)
    a, b = config.vhosts
    for n, host in enumerate((config, config, a, b), start=1):
        cookie, _ = _login(service, host)
        service.claim(0, m.ClaimSession(cookie=cookie, tunnel_id=n, vhost=host.vhost_name or ""))
    # Two tunnels of the default host's alice; vhost a's and b's alice are other users.
    assert service._count_connected("alice") == 2
    assert service._count_connected("alice", "a.example") == 1
    assert service.services_for("b.example").count_connected("alice") == 1


def test_a_vhost_lease_is_reserved_again_after_a_restart(config: Config, tmp_path: Path) -> None:
    service = _service(config, tmp_path)
    a, _b = config.vhosts
    cookie, session = _login(service, a)
    service.claim(0, m.ClaimSession(cookie=cookie, tunnel_id=1, vhost="a.example"))
    leased = session.ipv4
    assert leased is not None
    closer = getattr(service.store, "close", None)
    assert callable(closer)
    closer()
    again = _service(config, tmp_path)
    pool_a, _ = again.pools_for(a)
    assert pool_a is not None
    assert leased in pool_a  # Held: a new session of vhost a gets another address.
    _cookie2, other = _login(again, a)
    again.claim(0, m.ClaimSession(cookie=_cookie2, tunnel_id=2, vhost="a.example"))
    assert other.ipv4 not in (None, leased)
