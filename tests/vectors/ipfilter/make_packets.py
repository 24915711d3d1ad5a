"""Generate ``packets.json``: IP packets a VPN client could send, built field by field.

Run from the repository root: ``.venv/bin/python tests/vectors/ipfilter/make_packets.py``. Each
packet is built from its RFC layout (IPv4 RFC 791, IPv6 RFC 8200, UDP RFC 768, TCP RFC 9293,
ICMP RFC 792, ICMPv6 RFC 4443, SCTP RFC 9260, ESP RFC 4303) with ``struct``, independently of
``ocgate.ipfilter``; ``tests/unit/ipfilter/test_ipfilter_vectors.py`` has tshark decode every
packet and compares its fields with the ``expect`` block written here.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from pathlib import Path

OUT = Path(__file__).with_name("packets.json")

CLIENT4, CLIENT6 = "10.77.0.5", "fd77::5"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def l4sum(src: str, dst: str, proto: int, segment: bytes) -> bytes:
    """``segment`` with its TCP/UDP/ICMPv6 checksum filled in (pseudo-header: RFC 9293 §3.1,
    RFC 768, RFC 8200 §8.1); ICMP (IPv4) has no pseudo-header (RFC 792)."""
    at = {6: 16, 17: 6, 58: 2, 1: 2}[proto]
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if proto == 1:
        pseudo = b""
    elif a.version == 4:
        pseudo = a.packed + b.packed + struct.pack("!BBH", 0, proto, len(segment))
    else:
        pseudo = a.packed + b.packed + struct.pack("!IxxxB", len(segment), proto)
    zeroed = segment[:at] + b"\x00\x00" + segment[at + 2 :]
    value = checksum(pseudo + zeroed) or (0xFFFF if proto == 17 else 0)
    return segment[:at] + struct.pack("!H", value) + segment[at + 2 :]


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    frag: int = 0,
    mf: bool = False,
    options: bytes = b"",
    total: int | None = None,
    ihl: int | None = None,
) -> bytes:
    hlen = 20 + len(options)
    ihl = hlen // 4 if ihl is None else ihl
    total = hlen + len(payload) if total is None else total
    flags = (0x2000 if mf else 0) | frag
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        total,
        0x1234,
        flags,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    header += options
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def ipv6(src: str, dst: str, nxt: int, payload: bytes, *, plen: int | None = None) -> bytes:
    plen = len(payload) if plen is None else plen
    return (
        struct.pack(
            "!IHBB16s16s",
            6 << 28,
            plen,
            nxt,
            64,
            ipaddress.IPv6Address(src).packed,
            ipaddress.IPv6Address(dst).packed,
        )
        + payload
    )


DNS_QUERY = (
    struct.pack("!HHHHHH", 0x0C47, 0x0100, 1, 0, 0, 0) + b"\x02oc\x04test\x00\x00\x01\x00\x01"
)
"""A query for ``oc.test`` A IN (RFC 1035 §4.1), so that a dissector sees a real DNS message."""


def udp(sport: int, dport: int, data: bytes | None = None) -> bytes:
    if data is None:
        data = DNS_QUERY if dport == 53 else b"ocgate"
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def tcp_syn(sport: int, dport: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)


def icmp_echo(kind: int = 8) -> bytes:
    body = struct.pack("!BBHHH", kind, 0, 0, 0x4242, 1) + b"ping"
    return body


def sctp_init(dport: int) -> bytes:
    return struct.pack("!HHII", 40000, dport, 0, 0) + struct.pack("!BBH", 1, 0, 4)


PACKETS: list[dict[str, object]] = []


def add(name: str, packet: bytes, expect: dict[str, object], note: str) -> None:
    PACKETS.append({"name": name, "hex": fix(packet).hex(), "expect": expect, "note": note})


def fix(packet: bytes) -> bytes:
    """Fill in the transport checksum of an unfragmented packet without extension headers."""
    if packet[0] >> 4 == 4:
        ihl = (packet[0] & 15) * 4
        frag = struct.unpack("!H", packet[6:8])[0]
        proto, src, dst = packet[9], packet[12:16], packet[16:20]
        total = struct.unpack("!H", packet[2:4])[0]
        if frag or proto not in (1, 6, 17) or total != len(packet) or ihl < 20:
            return packet
        a, b = str(ipaddress.IPv4Address(src)), str(ipaddress.IPv4Address(dst))
        return packet[:ihl] + l4sum(a, b, proto, packet[ihl:])
    proto, src, dst = packet[6], packet[8:24], packet[24:40]
    if proto not in (6, 17, 58) or struct.unpack("!H", packet[4:6])[0] != len(packet) - 40:
        return packet
    a, b = str(ipaddress.IPv6Address(src)), str(ipaddress.IPv6Address(dst))
    return packet[:40] + l4sum(a, b, proto, packet[40:])


def build() -> list[dict[str, object]]:
    """Every vector, in file order."""
    PACKETS.clear()
    add(
        "v4_udp_dns",
        ipv4(CLIENT4, "10.77.0.53", 17, udp(40000, 53)),
        {"src": CLIENT4, "dst": "10.77.0.53", "proto": 17, "dport": 53, "frag": 0},
        "a DNS query to the session's DNS server",
    )
    add(
        "v4_tcp_443",
        ipv4(CLIENT4, "10.20.1.1", 6, tcp_syn(40001, 443)),
        {"src": CLIENT4, "dst": "10.20.1.1", "proto": 6, "dport": 443, "frag": 0},
        "TCP SYN to port 443 inside route 10.20.0.0/16",
    )
    add(
        "v4_tcp_22",
        ipv4(CLIENT4, "10.20.1.1", 6, tcp_syn(40002, 22)),
        {"src": CLIENT4, "dst": "10.20.1.1", "proto": 6, "dport": 22, "frag": 0},
        "TCP SYN to port 22 inside route 10.20.0.0/16",
    )
    add(
        "v4_udp_1500",
        ipv4(CLIENT4, "10.20.1.1", 17, udp(40003, 1500)),
        {"src": CLIENT4, "dst": "10.20.1.1", "proto": 17, "dport": 1500, "frag": 0},
        "UDP to port 1500 (inside a 1000-2000 range)",
    )
    add(
        "v4_icmp_echo",
        ipv4(CLIENT4, "10.20.1.1", 1, icmp_echo()),
        {"src": CLIENT4, "dst": "10.20.1.1", "proto": 1, "dport": None, "frag": 0},
        "ICMP echo request (ping)",
    )
    add(
        "v4_icmp_outside",
        ipv4(CLIENT4, "10.40.1.1", 1, icmp_echo()),
        {"src": CLIENT4, "dst": "10.40.1.1", "proto": 1, "dport": None, "frag": 0},
        "ping to 10.40.1.1, outside every route",
    )
    add(
        "v4_icmp_no_route",
        ipv4(CLIENT4, "10.20.5.1", 1, icmp_echo()),
        {"src": CLIENT4, "dst": "10.20.5.1", "proto": 1, "dport": None, "frag": 0},
        "ping to 10.20.5.1, inside no-route 10.20.5.0/24",
    )
    add(
        "v4_options_udp",
        ipv4(CLIENT4, "10.20.1.1", 17, udp(40004, 53), options=b"\x01\x01\x01\x00"),
        {"src": CLIENT4, "dst": "10.20.1.1", "proto": 17, "dport": 53, "frag": 0},
        "IHL 6: three NOP options and an End of Options List (RFC 791)",
    )
    add(
        "v4_frag_first",
        ipv4(CLIENT4, "10.20.1.1", 17, udp(40005, 1500, b"x" * 16), mf=True),
        {"src": CLIENT4, "dst": "10.20.1.1", "proto": 17, "dport": 1500, "frag": 0},
        "first fragment (MF set, offset 0) with the UDP header",
    )
    add(
        "v4_frag_later",
        ipv4(CLIENT4, "10.20.1.1", 17, b"y" * 16, frag=3),
        {"src": CLIENT4, "dst": "10.20.1.1", "proto": 17, "dport": None, "frag": 24},
        "a later fragment (offset 3 = 24 bytes): no UDP header",
    )
    add(
        "v4_frag_tiny",
        ipv4(CLIENT4, "10.20.1.1", 6, b"\x9c\x41", mf=True),
        {"src": CLIENT4, "dst": "10.20.1.1", "proto": 6, "dport": None, "frag": 0},
        "a first fragment of 2 bytes: the TCP destination port is not in it (RFC 1858)",
    )
    add(
        "v4_spoofed",
        ipv4("10.77.0.200", "10.20.1.1", 17, udp(40006, 9999)),
        {"src": "10.77.0.200", "dst": "10.20.1.1", "proto": 17, "dport": 9999, "frag": 0},
        "source is another pool address, not the session's lease",
    )
    add(
        "v4_iroute_source",
        ipv4("192.168.5.7", "10.20.1.1", 17, udp(40007, 9999)),
        {"src": "192.168.5.7", "dst": "10.20.1.1", "proto": 17, "dport": 9999, "frag": 0},
        "source inside iroute 192.168.5.0/24",
    )
    add(
        "v4_esp",
        ipv4(CLIENT4, "10.20.1.1", 50, struct.pack("!II", 0x100, 1) + b"\x00" * 16),
        {"src": CLIENT4, "dst": "10.20.1.1", "proto": 50, "dport": None, "frag": 0},
        "ESP (SPI 0x100)",
    )
    add(
        "v4_truncated",
        ipv4(CLIENT4, "10.20.1.1", 17, udp(40008, 53), total=200),
        {"malformed": True},
        "total length 200 but 34 bytes received",
    )
    add(
        "v4_bad_ihl",
        ipv4(CLIENT4, "10.20.1.1", 17, udp(40009, 53), ihl=4),
        {"malformed": True},
        "header length field 4 (16 bytes) is below the minimum 5",
    )
    add(
        "v6_udp_dns",
        ipv6(CLIENT6, "fd77::53", 17, udp(40010, 53)),
        {"src": CLIENT6, "dst": "fd77::53", "proto": 17, "dport": 53, "frag": 0},
        "a DNS query to the session's IPv6 DNS server",
    )
    add(
        "v6_tcp_443",
        ipv6(CLIENT6, "fd20::1", 6, tcp_syn(40011, 443)),
        {"src": CLIENT6, "dst": "fd20::1", "proto": 6, "dport": 443, "frag": 0},
        "TCP SYN to port 443 inside route fd20::/48",
    )
    add(
        "v6_hbh_tcp_22",
        ipv6(CLIENT6, "fd20::1", 0, bytes((6, 0, 1, 4, 0, 0, 0, 0)) + tcp_syn(40012, 22)),
        {"src": CLIENT6, "dst": "fd20::1", "proto": 6, "dport": 22, "frag": 0},
        "a Hop-by-Hop header (PadN) before TCP to port 22",
    )
    add(
        "v6_icmpv6_echo",
        ipv6(CLIENT6, "fd20::1", 58, icmp_echo(128)),
        {"src": CLIENT6, "dst": "fd20::1", "proto": 58, "dport": None, "frag": 0},
        "ICMPv6 echo request",
    )
    add(
        "v6_frag_first",
        ipv6(
            CLIENT6, "fd20::1", 44, struct.pack("!BBHI", 17, 0, 1, 7) + udp(40013, 1500, b"z" * 16)
        ),
        {"src": CLIENT6, "dst": "fd20::1", "proto": 17, "dport": 1500, "frag": 0},
        "Fragment header, offset 0, M set, then UDP",
    )
    add(
        "v6_frag_later",
        ipv6(CLIENT6, "fd20::1", 44, struct.pack("!BBHI", 17, 0, 3 << 3, 7) + b"w" * 16),
        {"src": CLIENT6, "dst": "fd20::1", "proto": 17, "dport": None, "frag": 24},
        "Fragment header, offset 3 (24 bytes): no UDP header",
    )
    add(
        "v6_routing_detour",
        ipv6(
            CLIENT6,
            "fd20::1",
            43,
            bytes((17, 2, 0, 1, 0, 0, 0, 0))
            + ipaddress.IPv6Address("2001:db8::99").packed
            + udp(40014, 53),
        ),
        {"src": CLIENT6, "dst": "fd20::1", "proto": 17, "dport": 53, "frag": 0},
        "Routing header type 0 with one segment left: the final destination is 2001:db8::99",
    )
    add(
        "v6_link_local_rs",
        ipv6("fe80::1", "ff02::2", 58, struct.pack("!BBHI", 133, 0, 0, 0)),
        {"src": "fe80::1", "dst": "ff02::2", "proto": 58, "dport": None, "frag": 0},
        "router solicitation from a link-local address",
    )
    add(
        "v6_spoofed",
        ipv6("fd77::6", "fd20::1", 17, udp(40015, 53)),
        {"src": "fd77::6", "dst": "fd20::1", "proto": 17, "dport": 53, "frag": 0},
        "source is another pool address",
    )
    add(
        "v6_sctp_9",
        ipv6(CLIENT6, "fd20::1", 132, sctp_init(9)),
        {"src": CLIENT6, "dst": "fd20::1", "proto": 132, "dport": 9, "frag": 0},
        "SCTP INIT to port 9",
    )
    add(
        "v6_truncated_ext",
        ipv6(CLIENT6, "fd20::1", 0, bytes((6, 8, 1, 4, 0, 0, 0, 0)) + tcp_syn(40016, 22)),
        {"malformed_upper": True},
        "Hop-by-Hop header length 8 (72 bytes) runs past the 28-byte payload",
    )
    add(
        "v6_payload_too_long",
        ipv6(CLIENT6, "fd20::1", 17, udp(40017, 53), plen=500),
        {"malformed": True},
        "payload length 500 but 14 bytes follow the header",
    )
    return list(PACKETS)


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=1) + "\n")


if __name__ == "__main__":
    main()
