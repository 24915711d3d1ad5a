"""connect/disconnect-script environment in ocserv's form (src/main-user.c)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from ocgate.config import parse_config
from ocgate.gateway import ScriptContext, script_environment

from .conftest import make_config_text

EXTRA = """\
ipv4-network = 10.77.0.0/24
ipv6-network = fd77::/64
dns = 10.77.0.53
dns = fd77::53
route = 10.20.0.0/255.255.0.0
route = fd20::/48
no-route = 10.20.5.0/255.255.255.0
"""


def _ctx(reason: str) -> ScriptContext:
    return ScriptContext(
        reason=reason,
        tunnel_id=7,
        username="alice",
        groupname="eng",
        hostname="laptop",
        device="vpns0",
        user_agent="Open AnyConnect VPN Agent v9.01-3",
        device_type="",
        device_platform="",
        remote_ip="198.18.0.2",
        local_ip="198.18.0.1",
        ipv4=ipaddress.IPv4Address("10.77.0.9"),
        server_ipv4=ipaddress.IPv4Address("10.77.0.1"),
        ipv6=ipaddress.IPv6Network("fd77::9/128"),
        server_ipv6=ipaddress.IPv6Address("fd77::1"),
        bytes_in=1000,
        bytes_out=2000,
        duration=42,
    )


def test_connect_environment(config_dir: Path) -> None:
    config = parse_config(make_config_text(config_dir, EXTRA), source="t.conf")
    env = script_environment(config, _ctx("connect"))
    assert env["REASON"] == "connect"
    assert (env["USERNAME"], env["GROUPNAME"], env["DEVICE"], env["ID"]) == (
        "alice",
        "eng",
        "vpns0",
        "7",
    )
    assert (env["IP_REAL"], env["IP_REAL_LOCAL"]) == ("198.18.0.2", "198.18.0.1")
    assert (env["IP_LOCAL"], env["IP_REMOTE"]) == ("10.77.0.1", "10.77.0.9")
    assert (env["IPV6_LOCAL"], env["IPV6_REMOTE"], env["IPV6_PREFIX"]) == (
        "fd77::1",
        "fd77::9",
        "128",
    )
    assert env["OCSERV_ROUTES"] == "10.20.0.0/255.255.0.0 fd20::/48 "
    assert env["OCSERV_ROUTES4"] == "10.20.0.0/255.255.0.0 "
    assert env["OCSERV_ROUTES6"] == "fd20::/48 "
    assert env["OCSERV_NO_ROUTES4"] == "10.20.5.0/255.255.255.0 "
    assert "OCSERV_NO_ROUTES6" not in env
    assert (env["OCSERV_DNS4"], env["OCSERV_DNS6"]) == ("10.77.0.53 ", "fd77::53 ")
    assert "STATS_BYTES_IN" not in env


def test_disconnect_adds_stats(config_dir: Path) -> None:
    config = parse_config(make_config_text(config_dir, EXTRA), source="t.conf")
    env = script_environment(config, _ctx("disconnect"))
    assert (env["STATS_BYTES_IN"], env["STATS_BYTES_OUT"], env["STATS_DURATION"]) == (
        "1000",
        "2000",
        "42",
    )


def test_restrictions_are_exported_as_ocserv_does(config_dir: Path) -> None:
    # ocserv export_fw_info(): OCSERV_RESTRICT_TO_ROUTES=1, then "PROTO PORT " pairs under
    # OCSERV_ALLOW_PORTS (or OCSERV_DENY_PORTS for the "!(...)" form), "icmp all" for ICMP.
    text = EXTRA + "restrict-user-to-routes = true\n"
    allow = text + 'restrict-user-to-ports = "tcp(443), udp(1000-2000), icmp()"\n'
    config = parse_config(make_config_text(config_dir, allow), source="t.conf")
    env = script_environment(config, _ctx("connect"))
    assert env["OCSERV_RESTRICT_TO_ROUTES"] == "1"
    assert env["OCSERV_ALLOW_PORTS"] == "tcp 443 udp 1000:2000 icmp all "
    assert "OCSERV_DENY_PORTS" not in env
    deny = text + 'restrict-user-to-ports = "!(tcp(22))"\n'
    config = parse_config(make_config_text(config_dir, deny), source="t.conf")
    env = script_environment(config, _ctx("connect"))
    assert env["OCSERV_DENY_PORTS"] == "tcp 22 "
    assert "OCSERV_ALLOW_PORTS" not in env
    plain = parse_config(make_config_text(config_dir, EXTRA), source="t.conf")
    env = script_environment(plain, _ctx("connect"))
    assert "OCSERV_RESTRICT_TO_ROUTES" not in env
    assert "OCSERV_ALLOW_PORTS" not in env
