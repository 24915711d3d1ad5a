"""restrict-user-to-routes / restrict-user-to-ports and iroute, globally, per group and per user
(ocserv's layering: the user file over the group file over ocserv.conf), down to the filter."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Network, ip_network
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config
from ocgate.errors import ConfigError
from ocgate.gateway import SessionSettings, TunnelPlan, session_settings, tunnel_filter
from ocgate.ipfilter import DropReason, parse_port_policy
from tests.unit.ipfilter._vectors import PACKETS

from .conftest import make_config_text

PLAN = TunnelPlan(
    ipv4=IPv4Address("10.77.0.5"),
    ipv4_netmask=IPv4Address("255.255.255.0"),
    ipv6=IPv6Network("fd77::5/128"),
    base_mtu=1400,
    mtu=1300,
    dpd=90,
    idle_timeout=None,
    session_remaining=None,
    hostname=None,
)
BASE = (
    "ipv4-network = 10.77.0.0/24\nipv6-network = fd77::/64\ndns = 10.77.0.53\n"
    "route = 10.20.0.0/16\nroute = fd20::/48\nno-route = 10.20.5.0/24\n"
)


def _config(config_dir: Path, extra: str = "") -> Config:
    users, groups = config_dir / "users", config_dir / "groups"
    users.mkdir(exist_ok=True)
    groups.mkdir(exist_ok=True)
    text = BASE + f"config-per-user = {users}\nconfig-per-group = {groups}\n" + extra
    return parse_config(make_config_text(config_dir, text), source=str(config_dir / "t.conf"))


def _settings(config: Config, user: str = "alice", group: str | None = "eng") -> SessionSettings:
    return session_settings(config, username=user, group=group, radius=None)


def test_global_keys(config_dir: Path) -> None:
    config = _config(config_dir, 'restrict-user-to-ports = "tcp(443), icmp()"\n')
    settings = _settings(config)
    assert settings.config.restrict_user_to_ports == parse_port_policy("tcp(443), icmp()")
    packet_filter = tunnel_filter(settings.config, PLAN, settings.iroutes)
    assert packet_filter.restricted  # Ports imply routes (ocserv doc/sample.config).
    assert packet_filter.verdict_untrusted(PACKETS["v4_tcp_443"]) is None
    assert packet_filter.verdict_untrusted(PACKETS["v4_tcp_22"]) is DropReason.RESTRICTED_PORT
    assert packet_filter.verdict_untrusted(PACKETS["v4_icmp_outside"]) is (
        DropReason.RESTRICTED_ROUTE
    )


def test_no_key_no_restriction(config_dir: Path) -> None:
    settings = _settings(_config(config_dir))
    packet_filter = tunnel_filter(settings.config, PLAN, settings.iroutes)
    assert not packet_filter.restricted
    assert packet_filter.verdict_untrusted(PACKETS["v4_icmp_outside"]) is None
    assert packet_filter.verdict_untrusted(PACKETS["v4_spoofed"]) is DropReason.SPOOFED_SOURCE


def test_group_then_user_files_override_the_global_keys(config_dir: Path) -> None:
    config = _config(config_dir, "restrict-user-to-routes = true\n")
    (config_dir / "groups" / "eng").write_text(
        'restrict-user-to-ports = "!(tcp(22))"\niroute = 192.168.5.0/24\n'
    )
    (config_dir / "users" / "alice").write_text(
        "restrict-user-to-routes = false\niroute = fd99::/64\n"
    )
    (config_dir / "users" / "bob").write_text('restrict-user-to-ports = "udp(53)"\n')
    alice = _settings(config, "alice", "eng")
    assert alice.config.restrict_user_to_routes is False
    assert alice.config.restrict_user_to_ports == parse_port_policy("!(tcp(22))")
    assert alice.iroutes == (ip_network("192.168.5.0/24"), ip_network("fd99::/64"))
    packet_filter = tunnel_filter(alice.config, PLAN, alice.iroutes)
    assert packet_filter.verdict_untrusted(PACKETS["v4_tcp_22"]) is DropReason.RESTRICTED_PORT
    assert packet_filter.verdict_untrusted(PACKETS["v4_iroute_source"]) is None
    bob = _settings(config, "bob", None)
    assert bob.config.restrict_user_to_routes is True
    assert bob.config.restrict_user_to_ports == parse_port_policy("udp(53)")
    assert bob.iroutes == ()
    bob_filter = tunnel_filter(bob.config, PLAN, bob.iroutes)
    assert bob_filter.verdict_untrusted(PACKETS["v4_tcp_443"]) is DropReason.RESTRICTED_PORT
    assert bob_filter.verdict_untrusted(PACKETS["v4_iroute_source"]) is DropReason.SPOOFED_SOURCE
    carol = _settings(config, "carol", None)  # No file of her own: the global keys.
    carol_filter = tunnel_filter(carol.config, PLAN, carol.iroutes)
    assert carol_filter.verdict_untrusted(PACKETS["v4_tcp_22"]) is None
    assert carol_filter.verdict_untrusted(PACKETS["v4_icmp_no_route"]) is (
        DropReason.RESTRICTED_ROUTE
    )


def test_a_default_route_leaves_only_the_no_routes(config_dir: Path) -> None:
    config = _config(config_dir, "restrict-user-to-routes = true\n")
    (config_dir / "users" / "alice").write_text("route = default\n")
    settings = _settings(config)
    packet_filter = tunnel_filter(settings.config, PLAN, settings.iroutes)
    assert packet_filter.verdict_untrusted(PACKETS["v4_icmp_outside"]) is None
    assert packet_filter.verdict_untrusted(PACKETS["v4_icmp_no_route"]) is (
        DropReason.RESTRICTED_ROUTE
    )


@pytest.mark.parametrize("value", ["default", "0.0.0.0/0", "::/0", "10.0.0.0/33", "nonsense"])
def test_a_bad_iroute_refuses_the_session(config_dir: Path, value: str) -> None:
    config = _config(config_dir)
    (config_dir / "users" / "alice").write_text(f"dpd = 30\niroute = {value}\n")
    with pytest.raises(ConfigError) as info:
        _settings(config)
    assert info.value.line == 2
    assert info.value.key == "iroute"


def test_the_filter_follows_the_plan_not_the_pool(config_dir: Path) -> None:
    settings = _settings(_config(config_dir))
    no_ipv6 = dataclasses.replace(PLAN, ipv6=None)
    packet_filter = tunnel_filter(settings.config, no_ipv6, settings.iroutes)
    # The session was given no IPv6 address (e.g. MTU below 1280): no IPv6 source is its own.
    assert packet_filter.verdict_untrusted(PACKETS["v6_tcp_443"]) is DropReason.SPOOFED_SOURCE
