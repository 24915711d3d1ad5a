"""The client-to-TUN packet filter: ``PacketFilter.admit_untrusted`` / ``verdict_untrusted``
never raise, whatever a VPN client puts in its packets.

Input: a selector byte (which session: IPv4 and IPv6 leases, an ``iroute``, an IPv6 subnet lease
or a /60 one, no restriction, ``restrict-user-to-routes``, ``restrict-user-to-ports`` in the allow
and the ``!`` form), then operations, each one packet of one batch.

Oracle: nothing raises; the batch's fast path admits exactly the packets the full per-packet
verdict admits; every admitted packet's source (read here with ``ipaddress``, independently of
the filter's integer arithmetic) is the session's lease or inside its ``iroute`` networks; the
drop counters grow by the number of packets not admitted.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.ipfilter import PacketFilter, Restriction, parse_port_policy

LEASE4 = IPv4Address("10.10.0.2")
IROUTE4 = IPv4Network("192.168.5.0/24")
IROUTE6 = IPv6Network("fd99::/48")
ROUTES = (IPv4Network("10.0.0.0/8"), IPv6Network("fd00::/8"))
NO_ROUTES = (IPv4Network("10.9.0.0/16"),)
DNS = (IPv4Address("10.10.0.1"), IPv6Address("fd77::1"))
SETUPS = [
    (IPv6Network("fd77::2/128"), None),
    (IPv6Network("fd77:0:0:10::/64"), Restriction(routes=ROUTES, no_routes=NO_ROUTES, dns=DNS)),
    (
        IPv6Network("fd77:0:0:10::/60"),
        Restriction(dns=DNS, ports=parse_port_policy("tcp(443), udp(1000-2000), icmp(), sctp(9)")),
    ),
    (
        IPv6Network("fd77::2/128"),
        Restriction(
            routes=ROUTES, dns=DNS, ports=parse_port_policy("!(tcp(22), udp(111), icmpv6(), esp())")
        ),
    ),
]


def _source(packet: bytes) -> IPv4Address | IPv6Address:
    if packet[0] >> 4 == 4:
        return ip_address(packet[12:16])
    return ip_address(packet[8:24])


def test_one_input(data: bytes) -> None:
    if not data:
        return
    lease6, restriction = SETUPS[data[0] % len(SETUPS)]
    iroutes = (IROUTE4, IROUTE6) if data[0] & 4 else ()
    packet_filter = PacketFilter(ipv4=LEASE4, ipv6=lease6, iroutes=iroutes, restriction=restriction)
    packets = [payload for _, payload in _harness.ops(data[1:])]
    expected = [p for p in packets if packet_filter.verdict_untrusted(p) is None]
    before = sum(packet_filter.dropped)
    admitted = packet_filter.admit_untrusted(packets)
    assert admitted == expected, "the fast path and the per-packet verdict disagree"
    assert sum(packet_filter.dropped) - before == len(packets) - len(admitted)
    for packet in admitted:
        source = _source(packet)
        if isinstance(source, IPv4Address):
            assert source == LEASE4 or any(source in net for net in iroutes if net.version == 4)
        else:
            assert source in lease6 or any(source in net for net in iroutes if net.version == 6)


def _ipv6(src: str, dst: str, next_header: int, payload: bytes) -> bytes:
    head = bytes((0x60, 0, 0, 0)) + len(payload).to_bytes(2, "big") + bytes((next_header, 64))
    return head + IPv6Address(src).packed + IPv6Address(dst).packed + payload


def seeds() -> list[bytes]:
    """openconnect's IPv4/UDP packet (tests/vectors/cstp, source 10.10.0.2) and IPv6 packets
    like a client's: TCP to 443, DNS, ICMPv6 echo, a fragment, a Hop-by-Hop MLD report."""
    udp4 = _harness.hex_vector(_harness.VECTORS / "cstp" / "oc_data_ipv4_udp.hex")[8:]
    tcp = (40000).to_bytes(2, "big") + (443).to_bytes(2, "big") + bytes(16)
    dns = (40000).to_bytes(2, "big") + (53).to_bytes(2, "big") + bytes(4)
    fragment = bytes((6, 0, 0x01, 0x00, 0, 0, 0, 1)) + bytes(8)
    hop_by_hop = bytes((58, 0, 5, 2, 0, 0, 1, 0)) + bytes((143, 0)) + bytes(6)
    packets = [
        udp4,
        _ipv6("fd77::2", "fd00::1", 6, tcp),
        _ipv6("fd77:0:0:10::5", "fd77::1", 17, dns),
        _ipv6("fd77::2", "fd00::1", 58, bytes((128, 0, 0, 0, 0, 1, 0, 1))),
        _ipv6("fd77::2", "fd00::1", 44, fragment),
        _ipv6("fe80::1", "ff02::16", 0, hop_by_hop),
        _ipv6("fd99::7", "fd00::1", 6, tcp),
    ]
    batch = b"".join(_harness.op(0, p) for p in packets)
    spoofed = udp4[:12] + bytes((10, 10, 0, 3)) + udp4[16:]
    return [bytes((i,)) + batch for i in range(8)] + [b"\x00" + _harness.op(0, spoofed)]


if __name__ == "__main__":
    _harness.main(test_one_input)
