"""Run inside a fresh network namespace by test_tun_dev.py; prints a JSON report of what it saw.

Never run this in the host namespace: it creates devices and addresses.
"""

from __future__ import annotations

import asyncio
import errno
import json
import select
import struct
import sys
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from pyroute2 import IPRoute

from ocgate.tun import configure_tun, open_tun, remove_tun

LOCAL4 = IPv4Address("10.77.0.1")
PEER4 = IPv4Address("10.77.0.9")
LOCAL6 = IPv6Address("fd00:77::1")
PEER6 = IPv6Network("fd00:77::9/128")


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(src: IPv4Address, dst: IPv4Address) -> bytes:
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"ocgate-probe"
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0, src.packed, dst.packed
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + icmp


def link_info(ipr: IPRoute, name: str) -> dict[str, object] | None:
    found = ipr.link_lookup(ifname=name)
    if not found:
        return None
    link = ipr.get_links(found[0])[0]
    addrs = []
    for msg in ipr.get_addr(index=found[0]):
        if msg.get_attr("IFA_ADDRESS", "").startswith("fe80"):
            continue
        addrs.append([msg.get_attr("IFA_LOCAL"), msg.get_attr("IFA_ADDRESS"), msg["prefixlen"]])
    routes = [
        f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
        for r in ipr.get_routes(family=10, oif=found[0])
        if r.get_attr("RTA_DST")
    ]
    return {
        "mtu": link.get_attr("IFLA_MTU"),
        "up": bool(link["flags"] & 1),
        "addrs": sorted(addrs, key=str),
        "routes6": sorted(routes),
    }


def main() -> None:
    report: dict[str, object] = {}
    first = open_tun("ocgt")
    second = open_tun("ocgt")
    names = [first.name, second.name]
    report["names"] = names
    report["read_empty"] = first.read()
    configure_tun(first.name, mtu=1400, local4=LOCAL4, peer4=PEER4, local6=LOCAL6, peer6=PEER6)

    # The daemon calls configure_tun through asyncio.to_thread: do the same for the second device.
    async def in_thread() -> None:
        await asyncio.to_thread(configure_tun, second.name, mtu=1300, local4=LOCAL4, peer4=None)

    asyncio.run(in_thread())

    with IPRoute() as ipr:
        report["first"] = link_info(ipr, first.name)
        report["second"] = link_info(ipr, second.name)

    # A ping from the client's address comes back through the tun as an echo reply.
    report["write_ok"] = first.write(echo_request(PEER4, LOCAL4))
    reply = None
    for _ in range(20):
        select.select([first.fileno()], [], [], 0.1)
        packet = first.read()
        if packet is not None and packet[0] >> 4 == 4 and packet[9] == 1 and packet[20] == 0:
            reply = packet
            break
    report["echo_reply"] = (
        None
        if reply is None
        else [str(IPv4Address(reply[12:16])), str(IPv4Address(reply[16:20])), reply[28:].decode()]
    )
    report["garbage_written"] = first.write(b"\x00" * 40)

    try:
        configure_tun("nosuchdev", mtu=1400)
    except OSError as exc:
        report["missing_errno"] = exc.errno == errno.ENODEV
    try:
        configure_tun(first.name, mtu=1400, local4=LOCAL4, peer4=PEER4)
    except OSError as exc:
        report["duplicate_errno"] = exc.errno == errno.EEXIST

    remove_tun(first)
    remove_tun(first)
    report["first_closed"] = first.closed
    with IPRoute() as ipr:
        report["after_remove"] = [bool(ipr.link_lookup(ifname=n)) for n in names]
    with second:
        pass
    with IPRoute() as ipr:
        report["after_exit"] = bool(ipr.link_lookup(ifname=second.name))
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
