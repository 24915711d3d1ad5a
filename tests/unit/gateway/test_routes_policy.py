"""Issue 12 §3 in the pure core: IPv6 routes/DNS by user agent, X-CSTP-Client-Bypass-Protocol,
and the supervisor's check of a worker's iroutes.

User-agent vectors: ocserv 1.1.6 ``worker-http.c`` (``strncasecmp(ua, "Open AnyConnect VPN Agent
v", 27)`` then ``atoi(&ua[27]) <= 3`` as unsigned), checked against the real ocserv 1.1.6 by
``tests/interop/test_routes_dns.py::test_ipv6_routes_and_dns_by_user_agent``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from ocgate.config import parse_config
from ocgate.daemon._tun_maker import checked_iroute
from ocgate.gateway import TunnelPlan, connect_headers
from ocgate.gateway._connect import old_openconnect

from .conftest import make_config_text

EXTRA = """\
ipv4-network = 10.77.0.0/24
ipv6-network = fd77::/64
dns = 10.77.0.53
dns = fd77::53
route = 10.20.0.0/16
route = fd20::/48
no-route = 10.20.5.0/24
no-route = fd20:0:5::/64
"""


@pytest.mark.parametrize(
    ("agent", "old"),
    [
        ("Open AnyConnect VPN Agent v3", True),
        ("Open AnyConnect VPN Agent v3.02", True),
        ("Open AnyConnect VPN Agent v2.5", True),
        ("open anyconnect vpn agent V3", True),  # strncasecmp
        ("Open AnyConnect VPN Agent v", True),  # atoi("") == 0
        ("Open AnyConnect VPN Agent v 3", True),  # atoi skips white space
        ("Open AnyConnect VPN Agent vx", True),
        ("Open AnyConnect VPN Agent v4", False),
        ("Open AnyConnect VPN Agent v9.01-3", False),
        ("Open AnyConnect VPN Agent v-1", False),  # -1 as unsigned is huge
        ("Open AnyConnect VPN Agent v30", False),
        ("Cisco AnyConnect VPN Agent for Windows 4.10", False),
        ("AnyConnect Windows 5.1.2.42", False),
        ("Some Unknown Agent 1.0", False),
        ("", False),
    ],
)
def test_old_openconnect_user_agents(agent: str, old: bool) -> None:
    assert old_openconnect(agent) is old


def _plan(*, ipv6_routes: bool) -> TunnelPlan:
    return TunnelPlan(
        ipv4=ipaddress.IPv4Address("10.77.0.9"),
        ipv4_netmask=ipaddress.IPv4Address("255.255.255.0"),
        ipv6=ipaddress.IPv6Network("fd77::9/128"),
        base_mtu=1406,
        mtu=1329,
        dpd=90,
        idle_timeout=None,
        session_remaining=None,
        hostname=None,
        ipv6_routes=ipv6_routes,
    )


def test_an_old_openconnect_keeps_its_ipv6_address_but_gets_no_ipv6_routes_or_dns(
    config_dir: Path,
) -> None:
    config = parse_config(make_config_text(config_dir, EXTRA), source="t.conf")
    full = connect_headers(config, _plan(ipv6_routes=True))
    old = connect_headers(config, _plan(ipv6_routes=False))
    v6_names = {"X-CSTP-DNS-IP6", "X-CSTP-Split-Include-IP6", "X-CSTP-Split-Exclude-IP6"}
    assert {n for n, _ in full} >= v6_names
    assert not {n for n, _ in old} & v6_names
    assert ("X-CSTP-Address-IP6", "fd77::9/128") in old
    assert [h for h in old if h[0] not in v6_names] == [h for h in full if h[0] not in v6_names]


@pytest.mark.parametrize(("line", "value"), [("", "false"), ("client-bypass-protocol = true\n",
                                                              "true")])  # fmt: skip
def test_client_bypass_protocol_header(config_dir: Path, line: str, value: str) -> None:
    config = parse_config(make_config_text(config_dir, EXTRA + line), source="t.conf")
    headers = connect_headers(config, _plan(ipv6_routes=True))
    assert [v for n, v in headers if n == "X-CSTP-Client-Bypass-Protocol"] == [value]


POOLS = (ipaddress.ip_network("10.77.0.0/24"), ipaddress.ip_network("fd77::/64"))


@pytest.mark.parametrize("text", ["192.168.5.0/24", "fd55::/64", "10.78.0.0/16", "8.8.8.8/32"])
def test_supervisor_accepts_networks_behind_a_client(text: str) -> None:
    assert checked_iroute(text, POOLS) == ipaddress.ip_network(text)


@pytest.mark.parametrize(
    "text",
    [
        "0.0.0.0/0",
        "::/0",
        "127.0.0.0/8",
        "::1/128",
        "169.254.0.0/16",
        "fe80::/64",
        "224.0.0.0/4",
        "ff00::/8",
        "10.77.0.0/25",  # inside the pool
        "10.0.0.0/8",  # around the pool
        "fd77::/48",
        "192.168.5.1/24",  # host bits set: not what a worker was given
        "not-a-network",
    ],
)
def test_supervisor_refuses_other_routes(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        checked_iroute(text, POOLS)
