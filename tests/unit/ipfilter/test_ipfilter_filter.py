"""The client-to-TUN packet filter: sources, restrictions, fragments, counters (vectors)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Network, ip_address, ip_network

import pytest

from ocgate.ipfilter import DropReason, PacketFilter, Restriction, parse_port_policy

from ._vectors import PACKETS

LEASE4 = IPv4Address("10.77.0.5")
LEASE6 = IPv6Network("fd77::5/128")
ROUTES = (ip_network("10.20.0.0/16"), ip_network("10.30.0.0/16"), ip_network("fd20::/48"))
NO_ROUTES = (ip_network("10.20.5.0/24"), ip_network("fd20:0:5::/64"))
DNS = (ip_address("10.77.0.53"), ip_address("fd77::53"))

SPOOF, LINK, BAD = DropReason.SPOOFED_SOURCE, DropReason.LINK_LOCAL, DropReason.MALFORMED
ROUTE, PORT = DropReason.RESTRICTED_ROUTE, DropReason.RESTRICTED_PORT


def _filter(ports: str | None = None, *, routes: bool = True, **kw: object) -> PacketFilter:
    restriction = Restriction(
        routes=ROUTES,
        no_routes=NO_ROUTES,
        dns=DNS,
        ports=parse_port_policy(ports) if ports else None,
    )
    return PacketFilter(
        ipv4=LEASE4,
        ipv6=LEASE6,
        iroutes=(ip_network("192.168.5.0/24"),),
        restriction=restriction if (routes or ports) else None,
        **kw,  # type: ignore[arg-type]
    )


# Verdicts per packet for: no restriction; routes only; the ocserv sample's allow list;
# a deny list with a range. None = passes.
ALLOW = "tcp(443), udp(53), udp(1000-2000), icmp(), sctp(9)"
DENY = "!(tcp(22), udp(1000-2000), icmpv6())"
TABLE: dict[str, tuple[DropReason | None, ...]] = {
    #                     open   routes allow  deny
    "v4_udp_dns": (None, None, None, None),
    "v4_tcp_443": (None, None, None, None),
    "v4_tcp_22": (None, None, PORT, PORT),
    "v4_udp_1500": (None, None, None, PORT),
    "v4_icmp_echo": (None, None, None, None),
    "v4_icmp_outside": (None, ROUTE, ROUTE, ROUTE),
    "v4_icmp_no_route": (None, ROUTE, ROUTE, ROUTE),
    "v4_options_udp": (None, None, None, None),
    "v4_frag_first": (None, None, None, PORT),
    "v4_frag_later": (None, None, None, None),
    "v4_frag_tiny": (None, BAD, BAD, BAD),
    "v4_spoofed": (SPOOF, SPOOF, SPOOF, SPOOF),
    "v4_iroute_source": (None, None, PORT, None),
    "v4_esp": (None, None, PORT, None),
    "v4_truncated": (BAD, BAD, BAD, BAD),
    "v4_bad_ihl": (BAD, BAD, BAD, BAD),
    "v6_udp_dns": (None, None, None, None),
    "v6_tcp_443": (None, None, None, None),
    "v6_hbh_tcp_22": (None, None, PORT, PORT),
    "v6_icmpv6_echo": (None, None, PORT, PORT),
    "v6_frag_first": (None, None, None, PORT),
    "v6_frag_later": (None, None, None, None),
    "v6_routing_detour": (None, ROUTE, ROUTE, ROUTE),
    "v6_link_local_rs": (LINK, LINK, LINK, LINK),
    "v6_spoofed": (SPOOF, SPOOF, SPOOF, SPOOF),
    "v6_sctp_9": (None, None, None, None),
    "v6_truncated_ext": (None, BAD, BAD, BAD),
    "v6_payload_too_long": (BAD, BAD, BAD, BAD),
}
CONFIGS = {
    "open": lambda: _filter(routes=False),
    "routes": lambda: _filter(),
    "allow": lambda: _filter(ALLOW),
    "deny": lambda: _filter(DENY),
}


def test_every_vector_is_in_the_table() -> None:
    assert set(TABLE) == set(PACKETS)


@pytest.mark.parametrize("name", sorted(TABLE))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_vector_verdicts(name: str, config: str) -> None:
    want = TABLE[name][list(CONFIGS).index(config)]
    packet_filter = CONFIGS[config]()
    assert packet_filter.verdict_untrusted(PACKETS[name]) is want
    # The batch path (fast path first) agrees and counts the drop.
    admitted = packet_filter.admit_untrusted([PACKETS[name]])
    assert admitted == ([] if want is not None else [PACKETS[name]])
    expected = {reason.label: int(reason is want) for reason in DropReason}
    assert packet_filter.counts() == expected


def test_the_fast_path_returns_the_batch_itself() -> None:
    packet_filter = _filter(routes=False)
    batch = [PACKETS["v4_tcp_443"], PACKETS["v6_tcp_443"], PACKETS["v4_udp_dns"]]
    assert packet_filter.admit_untrusted(batch) is batch
    assert sum(packet_filter.dropped) == 0


def test_a_mixed_batch_keeps_order_and_counts_each_drop() -> None:
    packet_filter = _filter(ALLOW)
    names = ["v4_tcp_443", "v4_spoofed", "v4_tcp_22", "v6_tcp_443", "v4_truncated", "v4_tcp_22"]
    admitted = packet_filter.admit_untrusted([PACKETS[n] for n in names])
    assert admitted == [PACKETS["v4_tcp_443"], PACKETS["v6_tcp_443"]]
    counts = packet_filter.counts()
    assert (counts["spoofed-source"], counts["restricted-port"], counts["malformed"]) == (1, 2, 1)


def test_no_lease_of_a_family_means_no_source_of_it() -> None:
    only6 = PacketFilter(ipv4=None, ipv6=LEASE6)
    assert only6.verdict_untrusted(PACKETS["v4_tcp_443"]) is SPOOF
    assert only6.verdict_untrusted(PACKETS["v6_tcp_443"]) is None
    only4 = PacketFilter(ipv4=LEASE4, ipv6=None)
    assert only4.verdict_untrusted(PACKETS["v6_tcp_443"]) is SPOOF
    assert only4.admit_untrusted([PACKETS["v6_tcp_443"]]) == []


@pytest.mark.parametrize("lease", ["fd77::/64", "fd77::/60", "fd77::4/126"])
def test_an_ipv6_subnet_lease_admits_its_whole_subnet(lease: str) -> None:
    # fd77::5 is inside each; /60 and /126 are not byte-aligned (the slow path compares ints).
    packet_filter = PacketFilter(ipv4=None, ipv6=IPv6Network(lease))
    batch = [PACKETS["v6_tcp_443"]]
    assert packet_filter.admit_untrusted(batch) == batch
    outside = PacketFilter(ipv4=None, ipv6=IPv6Network("fd77:1::/64"))
    assert outside.admit_untrusted(batch) == []
    assert outside.counts()["spoofed-source"] == 1


def test_iroute_sources_of_both_families() -> None:
    packet_filter = PacketFilter(
        ipv4=LEASE4, ipv6=LEASE6, iroutes=(ip_network("192.168.5.0/24"), ip_network("fd77::/64"))
    )
    assert packet_filter.verdict_untrusted(PACKETS["v4_iroute_source"]) is None
    assert packet_filter.verdict_untrusted(PACKETS["v6_spoofed"]) is None  # fd77::6 in the iroute
    plain = PacketFilter(ipv4=LEASE4, ipv6=LEASE6)
    assert plain.verdict_untrusted(PACKETS["v4_iroute_source"]) is SPOOF


def test_default_route_restricts_only_the_no_routes() -> None:
    restriction = Restriction(routes=(), no_routes=NO_ROUTES, dns=DNS)
    packet_filter = PacketFilter(ipv4=LEASE4, ipv6=LEASE6, restriction=restriction)
    assert packet_filter.verdict_untrusted(PACKETS["v4_icmp_outside"]) is None
    assert packet_filter.verdict_untrusted(PACKETS["v4_icmp_no_route"]) is ROUTE
    assert packet_filter.restricted


def test_a_route_list_of_one_family_closes_the_other() -> None:
    # As ocserv-fw: OCSERV_ROUTES non-empty adds a final DROP to iptables and ip6tables alike.
    restriction = Restriction(routes=(ip_network("10.20.0.0/16"),), dns=DNS)
    packet_filter = PacketFilter(ipv4=LEASE4, ipv6=LEASE6, restriction=restriction)
    assert packet_filter.verdict_untrusted(PACKETS["v4_tcp_443"]) is None
    assert packet_filter.verdict_untrusted(PACKETS["v6_tcp_443"]) is ROUTE
    assert packet_filter.verdict_untrusted(PACKETS["v6_udp_dns"]) is None  # DNS still passes


def test_dns_passes_before_ports_and_routes() -> None:
    # The DNS server is outside the routes and udp(53) is not in the list: it passes anyway.
    restriction = Restriction(
        routes=(ip_network("10.20.0.0/16"),), dns=DNS, ports=parse_port_policy("tcp(443)")
    )
    packet_filter = PacketFilter(ipv4=LEASE4, ipv6=LEASE6, restriction=restriction)
    assert packet_filter.verdict_untrusted(PACKETS["v4_udp_dns"]) is None
    assert packet_filter.verdict_untrusted(PACKETS["v4_options_udp"]) is PORT  # Not a DNS server.


def test_icmp_and_icmpv6_entries_are_per_family() -> None:
    v4_only = _filter("icmp()")
    assert v4_only.verdict_untrusted(PACKETS["v4_icmp_echo"]) is None
    assert v4_only.verdict_untrusted(PACKETS["v6_icmpv6_echo"]) is PORT
    v6_only = _filter("icmpv6()")
    assert v6_only.verdict_untrusted(PACKETS["v4_icmp_echo"]) is PORT
    assert v6_only.verdict_untrusted(PACKETS["v6_icmpv6_echo"]) is None


def test_a_later_fragment_needs_an_entry_of_its_protocol_in_the_allow_form() -> None:
    assert _filter("tcp(443)").verdict_untrusted(PACKETS["v4_frag_later"]) is PORT
    assert _filter("udp(9)").verdict_untrusted(PACKETS["v4_frag_later"]) is None
    assert _filter("!(udp(1-65535))").verdict_untrusted(PACKETS["v4_frag_later"]) is None


@pytest.mark.parametrize(
    "packet",
    [b"", b"\x45", b"\x60" + bytes(38), bytes(20), b"\x55" + bytes(30), b"\x46" + bytes(19)],
    ids=["empty", "one-byte", "short-v6", "version-0", "version-5", "ihl-6-short"],
)
def test_garbage_is_malformed(packet: bytes) -> None:
    for packet_filter in (_filter(routes=False), _filter(ALLOW)):
        assert packet_filter.verdict_untrusted(packet) is BAD
        assert packet_filter.admit_untrusted([packet]) == []


def test_labels() -> None:
    assert [r.label for r in DropReason] == [
        "spoofed-source",
        "link-local",
        "malformed",
        "restricted-route",
        "restricted-port",
    ]
