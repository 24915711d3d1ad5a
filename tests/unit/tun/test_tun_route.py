"""iroute routes through a TUN device over rtnetlink (``ocgate.tun._route``).

The message vectors are built by hand from ``<linux/netlink.h>`` / ``<linux/rtnetlink.h>``
(what ``ip route add 192.168.5.0/24 dev IFINDEX`` sends: RTM_NEWROUTE, main table, proto boot,
link scope, unicast, RTA_DST then RTA_OIF); the namespace test asks the kernel itself.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network

import pytest

from ocgate.tun._route import _acks, _new_route

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or shutil.which("ip") is None,
    reason="needs root, /dev/net/tun and iproute2",
)


def test_ipv4_route_message_is_what_ip_route_add_sends() -> None:
    message = _new_route(7, IPv4Network("192.168.5.0/24"), 42)
    expected = (
        # nlmsghdr: length 44, RTM_NEWROUTE, REQUEST|ACK|EXCL|CREATE, seq 7, pid 0
        struct.pack("=IHHII", 44, 24, 0x1 | 0x4 | 0x200 | 0x400, 7, 0)
        # rtmsg: AF_INET, dst_len 24, src_len 0, tos 0, main, boot, link scope, unicast, flags 0
        + bytes([socket.AF_INET, 24, 0, 0, 254, 3, 253, 1])
        + struct.pack("=I", 0)
        + struct.pack("=HH", 8, 1)
        + bytes([192, 168, 5, 0])  # RTA_DST
        + struct.pack("=HHi", 8, 4, 42)  # RTA_OIF
    )
    assert message == expected


def test_replace_asks_for_replace_instead_of_exclusive() -> None:
    message = _new_route(7, IPv4Network("192.168.5.0/24"), 42, replace=True)
    assert struct.unpack_from("=H", message, 6)[0] == 0x1 | 0x4 | 0x100 | 0x400


def test_ipv6_route_message() -> None:
    message = _new_route(1, IPv6Network("fd55::/64"), 3)
    assert len(message) == 16 + 12 + 20 + 8
    assert message[16:18] == bytes([socket.AF_INET6, 64])
    assert message[28:32] == struct.pack("=HH", 20, 1)
    assert message[32:48] == IPv6Network("fd55::/64").network_address.packed


def test_acks_read_errors_by_sequence_number() -> None:
    def error(seq: int, code: int) -> bytes:
        request = struct.pack("=IHHII", 16, 24, 0, seq, 0)
        return struct.pack("=IHHII", 16 + 4 + 16, 2, 0, seq, 0) + struct.pack("=i", code) + request

    assert _acks(error(1, 0) + error(2, -17)) == {1: 0, 2: 17}
    assert _acks(b"") == {}
    assert _acks(struct.pack("=IHHII", 0, 2, 0, 1, 0)) == {}  # A zero length stops the walk.


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"ocgate-route-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


PROBE = textwrap.dedent(
    """
    import json, subprocess
    from ipaddress import IPv4Address, IPv4Network, IPv6Network
    from ocgate.tun import add_device_routes, configure_tun, open_tun

    def table():
        v4 = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
        v6 = subprocess.run(["ip", "-6", "route"], capture_output=True, text=True).stdout
        return v4 + v6

    tun = open_tun("ocrt")
    configure_tun(tun.name, mtu=1400, local4=IPv4Address("10.77.0.1"),
                  peer4=IPv4Address("10.77.0.9"))
    nets = [IPv4Network("192.168.5.0/24"), IPv6Network("fd55::/64")]
    failed = add_device_routes(tun.name, nets)
    again = add_device_routes(tun.name, nets[:1])
    up = table()
    # A reconnect: the new device takes the route over, and keeps it when the old one goes.
    new = open_tun("ocrt")
    configure_tun(new.name, mtu=1400, local4=IPv4Address("10.77.0.1"),
                  peer4=IPv4Address("10.77.0.10"))
    taken = add_device_routes(new.name, nets[:1], replace=nets[:1])
    tun.close()
    moved = table()
    new.close()
    print(json.dumps({"name": tun.name, "new": new.name, "failed": [str(n) for n, _ in failed],
                      "again": [[str(n), e.errno] for n, e in again], "taken": len(taken),
                      "up": up, "moved": moved, "down": table()}))
    """
)


@pytest.mark.interop
@needs_root
def test_routes_follow_the_device(netns: str) -> None:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", PROBE],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(out.stdout)
    name = report["name"]
    assert report["failed"] == []
    assert report["again"] == [["192.168.5.0/24", 17]]  # EEXIST, reported, not raised.
    assert f"192.168.5.0/24 dev {name} scope link" in report["up"]  # ip hides "proto boot".
    assert f"fd55::/64 dev {name} " in report["up"]
    assert report["taken"] == 0
    assert f"192.168.5.0/24 dev {report['new']} scope link" in report["moved"]
    assert "fd55::/64" not in report["moved"]  # Gone with the first device.
    assert "192.168.5.0/24" not in report["down"]  # Gone with the device.
    assert "fd55::/64" not in report["down"]
