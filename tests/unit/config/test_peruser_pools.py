"""Per-user and per-group address pools in the files (``ipv4-network``, ``ipv4-netmask``,
``ipv6-network``, ``ipv6-subnet-prefix``): what :func:`apply_layers` makes of them.

ocserv 1.1.6 reads these keys in ``sup-config/file.c`` (``ipv4-network`` as CIDR or with
``ipv4-netmask``; ``ipv6-network`` as CIDR) and ``ip-lease.c`` leases from the session's network
when it has one. ocgate checks the network when the session's settings are built, so a bad line
refuses the login with the file and the line: no prefix, no room for a client, or a partial
overlap with the host's own pool (which could lease one address twice). The pools themselves
are sec-mod's (``tests/unit/daemon/test_secmod_user_pools.py``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from ocgate.config import Config, apply_layers, parse_config, parse_user_config
from ocgate.errors import ConfigError


def _config(tmp_path: Path, extra: str = "") -> Config:
    (tmp_path / "p").write_text("alice:eng:$5$x$y\n")
    (tmp_path / "c.pem").write_text("")
    text = (
        f'auth = "plain[passwd={tmp_path}/p]"\nserver-cert = {tmp_path}/c.pem\n'
        f"server-key = {tmp_path}/c.pem\nipv4-network = 10.77.0.0/24\n"
        "ipv6-network = fd77::/48\nipv6-subnet-prefix = 64\n" + extra
    )
    return parse_config(text, source=str(tmp_path / "ocserv.conf"))


def _apply(config: Config, *files: tuple[str, str]) -> Config:
    layers = [parse_user_config(text, source=source) for source, text in files]
    return apply_layers(config, layers)


def test_a_user_network_replaces_the_hosts(tmp_path: Path) -> None:
    config = _config(tmp_path)
    effective = _apply(config, ("users/alice", "ipv4-network = 10.60.0.0/24\n"))
    assert effective.ipv4_network == ipaddress.IPv4Network("10.60.0.0/24")
    assert effective.ipv6_network == config.ipv6_network  # Untouched families keep the host's.
    assert config.ipv4_network == ipaddress.IPv4Network("10.77.0.0/24")


def test_network_with_netmask_and_the_user_over_the_group(tmp_path: Path) -> None:
    config = _config(tmp_path)
    group = ("groups/eng", "ipv4-network = 10.61.0.0\nipv4-netmask = 255.255.0.0\n")
    assert _apply(config, group).ipv4_network == ipaddress.IPv4Network("10.61.0.0/16")
    # A single-value key of the user's file wins over the group's (ocserv reads group, then user).
    user = ("users/alice", "ipv4-network = 10.62.0.0\n")
    assert _apply(config, group, user).ipv4_network == ipaddress.IPv4Network("10.62.0.0/16")


def test_the_hosts_own_network_is_allowed(tmp_path: Path) -> None:
    config = _config(tmp_path)
    effective = _apply(config, ("users/alice", "ipv4-network = 10.77.0.0/24\n"))
    assert effective.ipv4_network == config.ipv4_network  # Shares the host's pool.


def test_an_own_ipv6_network_takes_the_subnet_prefix(tmp_path: Path) -> None:
    config = _config(tmp_path)
    effective = _apply(
        config, ("users/alice", "ipv6-network = fd60::/56\nipv6-subnet-prefix = 120\n")
    )
    assert effective.ipv6_network == ipaddress.IPv6Network("fd60::/56")
    assert effective.ipv6_subnet_prefix == 120
    inherited = _apply(config, ("users/alice", "ipv6-network = fd61::/56\n"))
    assert inherited.ipv6_subnet_prefix == 64


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("dpd = 30\nipv4-network = 10.60.0.0\n", 2, "ipv4-network", "no prefix or ipv4-netmask"),
        ("ipv4-network = 10.60.0.0/31\n", 1, "ipv4-network", "leaves no address for clients"),
        ("ipv4-netmask = 255.255.0.0\n", 1, "ipv4-netmask", "without an ipv4-network"),
        (
            "ipv4-network = 10.60.0.0/24\nipv4-netmask = 255.255.0.0\n",
            2,
            "ipv4-netmask",
            "contradicts /24",
        ),
        ("ipv4-network = 10.77.0.128/25\n", 1, "ipv4-network", "overlaps the pool 10.77.0.0/24"),
        ("ipv4-network = 10.0.0.0/8\n", 1, "ipv4-network", "overlaps the pool 10.77.0.0/24"),
        ("ipv6-network = fd60::\n", 1, "ipv6-network", "has no prefix"),
        ("ipv6-network = fd77:0:0:1::/64\n", 1, "ipv6-network", "overlaps the pool fd77::/48"),
        ("ipv6-subnet-prefix = 96\n", 1, "ipv6-subnet-prefix", "(one network has one pool)"),
        (
            "ipv6-network = fd60::/64\nipv6-subnet-prefix = 48\n",
            2,
            "ipv6-subnet-prefix",
            "leaves nothing for clients",
        ),
    ],
)
def test_a_bad_pool_refuses_the_session_naming_file_and_line(
    tmp_path: Path, text: str, line: int, key: str, message: str
) -> None:
    config = _config(tmp_path)
    with pytest.raises(ConfigError) as info:
        _apply(config, ("users/alice", text))
    assert str(info.value).startswith(f"users/alice:{line}: {key}: "), str(info.value)
    assert message in str(info.value)


def test_a_subnet_prefix_without_any_ipv6_pool_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "p").write_text("alice:eng:$5$x$y\n")
    (tmp_path / "c.pem").write_text("")
    text = (
        f'auth = "plain[passwd={tmp_path}/p]"\nserver-cert = {tmp_path}/c.pem\n'
        f"server-key = {tmp_path}/c.pem\nipv4-network = 10.77.0.0/24\n"
    )
    config = parse_config(text, source=str(tmp_path / "ocserv.conf"))
    effective = _apply(config, ("groups/eng", "ipv6-subnet-prefix = 64\n"))
    assert effective.ipv6_network is None
    assert effective.ipv4_network == config.ipv4_network
