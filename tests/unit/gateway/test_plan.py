"""Tunnel planning at CONNECT time (pure): leases, MTU clamping and the DTLS headers."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config
from ocgate.dtls import DtlsOffer, negotiate_dtls
from ocgate.gateway import TunnelPlan, plan_tunnel
from ocgate.http import Request
from ocgate.session import Ipv4Pool, Ipv6Pool, MemorySessionStore, Session

from .conftest import make_config_text

EXTRA = "ipv4-network = 10.77.0.0/24\nipv6-network = fd77::/64\nudp-port = 443\n"


def _request(**headers: str) -> Request:
    base = {"host": "vpn", "x-cstp-full-ipv6-capability": "true", **headers}
    items = tuple((name.replace("_", "-"), value) for name, value in base.items())
    return Request(
        method="CONNECT", target="/CSCOSSLC/tunnel", headers=items, body=b"", http_version="1.1"
    )


@dataclass
class Setup:
    config: Config
    pool4: Ipv4Pool
    pool6: Ipv6Pool
    store: MemorySessionStore
    session: Session


@pytest.fixture
def setup(config_dir: Path) -> Setup:
    config = parse_config(make_config_text(config_dir, EXTRA), source="t.conf")
    assert config.ipv4_network is not None
    assert config.ipv6_network is not None
    pool4 = Ipv4Pool(config.ipv4_network, predictable=True)
    pool6 = Ipv6Pool(config.ipv6_network, 128, predictable=True)
    store = MemorySessionStore()
    _, session = store.create(
        username="alice",
        groups=(),
        group=None,
        now=0.0,
        user_agent="",
        remote_addr="198.18.0.2",
        cookie_timeout=300,
        session_timeout=None,
    )
    return Setup(config, pool4, pool6, store, session)


def _plan(setup: Setup, request: Request, offer: DtlsOffer | None = None) -> TunnelPlan:
    return plan_tunnel(
        config=setup.config,
        session=setup.session,
        request=request,
        now=0.0,
        offer=offer,
        pool4=setup.pool4,
        pool6=setup.pool6,
        sessions=setup.store.sessions(),
    )


def test_leases_are_kept_for_a_reconnect(setup: Setup) -> None:
    first = _plan(setup, _request())
    again = _plan(setup, _request())
    assert first.ipv4 == again.ipv4
    assert first.ipv4 in ipaddress.ip_network("10.77.0.0/24")
    assert str(first.ipv4_netmask) == "255.255.255.0"
    assert first.ipv6 is not None
    assert first.ipv6.prefixlen == 128


def test_a_client_cannot_pick_its_first_address(setup: Setup) -> None:
    # X-CSTP-Address may only ask back for the lease the session holds; a fresh session gets
    # the predictable-ips address, not the one it asks for.
    plan = _plan(setup, _request(x_cstp_address="10.77.0.42"))
    assert plan.ipv4 is not None
    assert str(plan.ipv4) != "10.77.0.42"
    assert plan.ipv4 == setup.pool4.network.network_address + 2 + _hash_slot("alice", 253)


def test_a_reconnect_keeps_its_lease_whatever_it_asks(setup: Setup) -> None:
    first = _plan(setup, _request())
    again = _plan(setup, _request(x_cstp_address="10.77.0.42"))
    assert again.ipv4 == first.ipv4


def _hash_slot(key: str, capacity: int) -> int:
    """The slot predictable-ips starts at (session/_lease.py): SHA-256 of the name."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest(), "big") % capacity


def test_no_ipv6_without_the_capability(setup: Setup) -> None:
    request = Request(
        method="CONNECT",
        target="/CSCOSSLC/tunnel",
        headers=(("host", "vpn"),),
        body=b"",
        http_version="1.1",
    )
    assert _plan(setup, request).ipv6 is None


@pytest.mark.parametrize("base", ["0", "1", "500", "65535", "garbage", "-1", "99999999999"])
def test_hostile_mtu_headers_give_a_sane_mtu(setup: Setup, base: str) -> None:
    plan = _plan(setup, _request(x_cstp_base_mtu=base, x_cstp_mtu=base))
    assert 576 <= plan.mtu <= 1500


def test_psk_and_legacy_dtls_headers(setup: Setup) -> None:
    psk = negotiate_dtls(
        {"x-dtls-ciphersuite": "PSK-NEGOTIATE:AES256-SHA"},
        psk_enabled=True,
        legacy_enabled=True,
        tls_cipher_hint=None,
        random_bytes=os.urandom,
        psk=bytes(32),
    )
    assert psk is not None
    names = dict(_plan(setup, _request(), psk).dtls)
    assert names["X-DTLS-Port"] == "443"
    assert names["X-DTLS-CipherSuite"] == "PSK-NEGOTIATE"
    assert "X-DTLS-MTU" not in names
    legacy = negotiate_dtls(
        {"x-dtls-ciphersuite": "AES256-SHA", "x-dtls-master-secret": "AB" * 48},
        psk_enabled=True,
        legacy_enabled=True,
        tls_cipher_hint=None,
        random_bytes=os.urandom,
        psk=bytes(32),
    )
    assert legacy is not None
    plan = _plan(setup, _request(), legacy)
    names = dict(plan.dtls)
    assert names["X-DTLS-CipherSuite"] == "AES256-SHA"
    assert len(names["X-DTLS-Session-ID"]) == 64
    assert names["X-DTLS-MTU"] == str(plan.mtu)
