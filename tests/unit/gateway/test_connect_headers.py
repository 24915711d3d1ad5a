"""The X-CSTP-* reply to CONNECT: order, spelling and values (anyconnect-protocol.md §5.3)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from ocgate.config import parse_config
from ocgate.gateway import TunnelPlan, client_wants_ipv6, connect_headers, is_mobile

from .conftest import make_config_text

EXTRA = """\
ipv4-network = 10.77.0.0/24
ipv6-network = fd77::/64
dns = 10.77.0.53
dns = fd77::53
split-dns = corp.test
split-dns = int.test
default-domain = corp.test
route = 10.20.0.0/255.255.0.0
route = 10.30.0.0/16
route = fd20::/48
no-route = 10.20.5.0/255.255.255.0
no-route = fd20:0:5::/64
banner = "Hello World"
"""


def _plan(*, ipv6: bool = True) -> TunnelPlan:
    return TunnelPlan(
        ipv4=ipaddress.IPv4Address("10.77.0.9"),
        ipv4_netmask=ipaddress.IPv4Address("255.255.255.0"),
        ipv6=ipaddress.IPv6Network("fd77::9/128") if ipv6 else None,
        base_mtu=1406,
        mtu=1329,
        dpd=90,
        idle_timeout=None,
        session_remaining=None,
        hostname="laptop",
    )


def test_headers_in_ocserv_order_and_spelling(config_dir: Path) -> None:
    config = parse_config(make_config_text(config_dir, EXTRA), source="t.conf")
    headers = connect_headers(config, _plan())
    names = [name for name, _ in headers]
    assert names[:4] == ["X-CSTP-Version", "X-CSTP-Server-Name", "X-CSTP-Hostname", "X-CSTP-DPD"]
    values = dict(headers)
    assert values["X-CSTP-Address"] == "10.77.0.9"
    assert values["X-CSTP-Netmask"] == "255.255.255.0"
    assert values["X-CSTP-Address-IP6"] == "fd77::9/128"
    assert values["X-CSTP-DNS-IP6"] == "fd77::53"
    assert values["X-CSTP-MTU"] == "1329"
    assert values["X-CSTP-Base-MTU"] == "1406"
    assert values["X-CSTP-Banner"] == "Hello%20World"
    assert (
        values["X-CSTP-Rekey-Method"] != "none"
    )  # Secure Client 5.1 rejects "none" (ocserv #745).
    includes = [v for n, v in headers if n == "X-CSTP-Split-Include"]
    assert includes == ["10.20.0.0/255.255.0.0", "10.30.0.0/255.255.0.0"]
    assert ("X-CSTP-Split-Exclude", "10.20.5.0/255.255.255.0") in headers
    assert ("X-CSTP-Split-Include-IP6", "fd20::/48") in headers
    assert ("X-CSTP-Split-Exclude-IP6", "fd20:0:5::/64") in headers
    assert [v for n, v in headers if n == "X-CSTP-Split-DNS"] == ["corp.test", "int.test"]
    assert values["X-CSTP-Tunnel-All-DNS"] == "false"
    assert all(name.startswith("X-CSTP-") for name in names)


def test_no_ipv6_lease_means_no_ipv6_headers(config_dir: Path) -> None:
    config = parse_config(make_config_text(config_dir, EXTRA), source="t.conf")
    names = {name for name, _ in connect_headers(config, _plan(ipv6=False))}
    assert not {n for n in names if "IP6" in n}


def test_default_route_means_full_tunnel_and_dns(config_dir: Path) -> None:
    config = parse_config(
        make_config_text(config_dir, "ipv4-network = 10.77.0.0/24\nroute = default\n"),
        source="t.conf",
    )
    headers = connect_headers(config, _plan(ipv6=False))
    assert not [n for n, _ in headers if n == "X-CSTP-Split-Include"]
    assert dict(headers)["X-CSTP-Tunnel-All-DNS"] == "true"


def test_client_capabilities() -> None:
    assert client_wants_ipv6({"x-cstp-full-ipv6-capability": "true"})
    assert client_wants_ipv6(
        {"x-cstp-address-type": "IPv6,IPv4", "x-cstp-full-ipv6-capability": "true"}
    )
    assert not client_wants_ipv6(
        {"x-cstp-address-type": "IPv4", "x-cstp-full-ipv6-capability": "true"}
    )
    assert not client_wants_ipv6({})
    assert is_mobile({"x-anyconnect-identifier-platform": "apple-ios"})
    assert not is_mobile({"x-anyconnect-identifier-platform": "linux-64"})
