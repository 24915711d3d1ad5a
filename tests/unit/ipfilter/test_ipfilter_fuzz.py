"""Packets are untrusted bytes: the filter never raises, whatever a client sends."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Network, ip_address, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.errors import ConfigError
from ocgate.ipfilter import DropReason, PacketFilter, Restriction, parse_port_policy

from ._vectors import PACKETS

FILTERS = (
    PacketFilter(ipv4=IPv4Address("10.77.0.5"), ipv6=IPv6Network("fd77::/64")),
    PacketFilter(
        ipv4=IPv4Address("10.77.0.5"),
        ipv6=IPv6Network("fd77::5/128"),
        iroutes=(ip_network("192.168.5.0/24"),),
        restriction=Restriction(
            routes=(ip_network("10.20.0.0/16"), ip_network("fd20::/48")),
            no_routes=(ip_network("10.20.5.0/24"),),
            dns=(ip_address("10.77.0.53"),),
            ports=parse_port_policy("tcp(443), udp(1000-2000), icmp(), icmpv6(), esp()"),
        ),
    ),
    PacketFilter(
        ipv4=None,
        ipv6=IPv6Network("fd77::/60"),
        restriction=Restriction(ports=parse_port_policy("!(tcp(22))")),
    ),
)


def _check(packet: bytes) -> None:
    for packet_filter in FILTERS:
        verdict = packet_filter.verdict_untrusted(packet)
        assert verdict is None or isinstance(verdict, DropReason)
        admitted = packet_filter.admit_untrusted([packet, packet])
        assert admitted == ([packet, packet] if verdict is None else [])


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes(packet: bytes) -> None:
    _check(packet)


@settings(max_examples=500)
@given(
    st.sampled_from(sorted(PACKETS)),
    st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), max_size=6),
    st.integers(0, 200),
)
def test_mutated_vectors(name: str, flips: list[tuple[int, int]], cut: int) -> None:
    packet = bytearray(PACKETS[name])
    for index, value in flips:
        if index < len(packet):
            packet[index] = value
    _check(bytes(packet[: cut or None]))


@settings(max_examples=300)
@given(st.text(alphabet="tcpudsmiv6e!(),-0123456789 ", max_size=40))
def test_the_port_parser_raises_only_config_errors(text: str) -> None:
    try:
        policy = parse_port_policy(text)
    except ConfigError:
        return
    assert policy.rules
