"""Reply attribute interpretation (``ocgate.radius._attrs``)."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.errors import RemoteProtocolError
from ocgate.radius import RadiusChallenge, parse_class_groups, split_gigawords
from ocgate.radius._attrs import (
    AttrKey,
    interpret_accept_untrusted,
    interpret_challenge_untrusted,
    parse_framed_ipv6_route_untrusted,
    parse_framed_route_untrusted,
)
from ocgate.radius._constants import Attr, ServiceType


def u32(value: int) -> bytes:
    return struct.pack("!I", value)


@pytest.mark.parametrize(
    ("classes", "separator", "groups"),
    [
        ([b"OU=g1;g2"], ";", ("g1", "g2")),
        ([b"OU=g1;g2"], ",", ("g1;g2",)),
        ([b"OU=a, b ,,c"], ",", ("a", "b", "c")),
        ([b"OU=red", b"OU=blue", b"ou=red"], ";", ("red", "blue")),
        ([b"opaque-server-cookie", b"\xff\xfe", b"OU=", b"OU=x\x01"], ";", ()),
        ([], ";", ()),
    ],
)
def test_class_groups(classes: list[bytes], separator: str, groups: tuple[str, ...]) -> None:
    assert parse_class_groups(classes, separator) == groups


@pytest.mark.parametrize(
    ("value", "network"),
    [
        (b"192.168.50.0/24 0.0.0.0 1", "192.168.50.0/24"),
        (b"10.20.0.0/16", "10.20.0.0/16"),
        (b"10.20.1.1/16 10.0.0.1 5", "10.20.0.0/16"),
        (b"  192.0.2.1  ", "192.0.2.1/32"),
    ],
)
def test_framed_route(value: bytes, network: str) -> None:
    assert parse_framed_route_untrusted(value) == ipaddress.IPv4Network(network)


@pytest.mark.parametrize(
    "value", [b"", b"   ", b"2001:db8::/32", b"10.0.0.0/33", b"route", b"\xff/8"]
)
def test_framed_route_invalid(value: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_framed_route_untrusted(value)


def test_framed_ipv6_route() -> None:
    assert parse_framed_ipv6_route_untrusted(b"2001:db8:1::/48 :: 1") == ipaddress.IPv6Network(
        "2001:db8:1::/48"
    )
    with pytest.raises(RemoteProtocolError):
        parse_framed_ipv6_route_untrusted(b"10.0.0.0/8")


@pytest.mark.parametrize(
    ("count", "split"),
    [
        (0, (0, 0)),
        (2**32 - 1, (0, 2**32 - 1)),
        (2**32, (1, 0)),
        (5 * 2**32 + 7, (5, 7)),
        (2**64 - 1, (2**32 - 1, 2**32 - 1)),
        (2**70, (2**32 - 1, 2**32 - 1)),
    ],
)
def test_gigawords(count: int, split: tuple[int, int]) -> None:
    assert split_gigawords(count) == split


def test_gigawords_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        split_gigawords(-1)


FULL_ACCEPT: list[tuple[AttrKey, bytes]] = [
    (Attr.SERVICE_TYPE, u32(ServiceType.FRAMED)),
    (Attr.FRAMED_IP_ADDRESS, bytes([10, 9, 0, 5])),
    (Attr.FRAMED_IP_NETMASK, bytes([255, 255, 255, 0])),
    (Attr.FRAMED_IPV6_ADDRESS, ipaddress.IPv6Address("2001:db8::5").packed),
    (Attr.DELEGATED_IPV6_PREFIX, bytes([0, 64]) + bytes.fromhex("20010db800010002")),
    (Attr.FRAMED_ROUTE, b"192.168.50.0/24 0.0.0.0 1"),
    (Attr.FRAMED_ROUTE, b"192.168.50.0/24"),
    (Attr.FRAMED_IPV6_ROUTE, b"2001:db8:1::/48 :: 1"),
    (Attr.FRAMED_IPV6_PREFIX, bytes([0, 56]) + bytes.fromhex("20010db80002")),
    ((311, 28), bytes([10, 9, 0, 1])),
    ((311, 29), bytes([10, 9, 0, 2])),
    (Attr.DNS_SERVER_IPV6_ADDRESS, ipaddress.IPv6Address("2001:db8::53").packed),
    (Attr.SESSION_TIMEOUT, u32(3600)),
    (Attr.IDLE_TIMEOUT, u32(600)),
    (Attr.ACCT_INTERIM_INTERVAL, u32(60)),
    ((10055, 1), u32(1000)),
    ((10055, 2), u32(2000)),
    (Attr.CLASS, b"OU=ops;admins"),
    (Attr.REPLY_MESSAGE, b"Welcome"),
    (Attr.REPLY_MESSAGE, b"back"),
    (99999, b"unknown attributes are ignored"),
]


def test_accept_everything() -> None:
    result = interpret_accept_untrusted(FULL_ACCEPT, username="carol", groupconfig=True)
    assert result.username == "carol"
    assert result.groups == ("ops", "admins")
    assert result.framed_ipv4 == ipaddress.IPv4Address("10.9.0.5")
    assert result.framed_netmask == ipaddress.IPv4Address("255.255.255.0")
    assert result.framed_ipv6 == ipaddress.IPv6Address("2001:db8::5")
    assert result.framed_ipv6_prefix == ipaddress.IPv6Network("2001:db8:1:2::/64")
    assert result.routes == (ipaddress.IPv4Network("192.168.50.0/24"),)
    assert result.ipv6_routes == (
        ipaddress.IPv6Network("2001:db8:1::/48"),
        ipaddress.IPv6Network("2001:db8:2::/56"),
    )
    assert result.dns == (
        ipaddress.IPv4Address("10.9.0.1"),
        ipaddress.IPv4Address("10.9.0.2"),
        ipaddress.IPv6Address("2001:db8::53"),
    )
    assert (result.session_timeout, result.idle_timeout, result.interim_interval) == (3600, 600, 60)
    assert (result.upstream_kbps, result.downstream_kbps) == (1000, 2000)
    assert result.reply_message == "Welcome\nback"
    assert result.classes == (b"OU=ops;admins",)


def test_accept_minimal_and_overrides() -> None:
    result = interpret_accept_untrusted(
        [(Attr.CLASS, b"OU=x"), (Attr.ACCT_INTERIM_INTERVAL, u32(60))],
        username="u",
        groupconfig=False,
        override_interim_updates=True,
    )
    assert result.groups == ()
    assert result.interim_interval is None
    assert result.framed_ipv4 is None
    assert result.reply_message is None


@pytest.mark.parametrize(
    "attribute",
    [
        (Attr.SERVICE_TYPE, u32(1)),
        (Attr.SERVICE_TYPE, b"\x02"),
        (Attr.FRAMED_IP_ADDRESS, b"\x01\x02\x03"),
        (Attr.FRAMED_IPV6_ADDRESS, b"\x00" * 4),
        (Attr.DELEGATED_IPV6_PREFIX, b"\x00\x81" + b"\x00" * 16),
        (Attr.FRAMED_IPV6_PREFIX, b"\x00"),
        (Attr.SESSION_TIMEOUT, b"\x00\x01"),
        (Attr.FRAMED_ROUTE, b"not a route"),
        ((311, 28), b"\x01"),
    ],
)
def test_accept_malformed(attribute: tuple[AttrKey, bytes]) -> None:
    with pytest.raises(RemoteProtocolError):
        interpret_accept_untrusted([attribute], username="u", groupconfig=True)


def test_accept_allows_echoed_authenticate_only() -> None:
    attrs: list[tuple[AttrKey, bytes]] = [(Attr.SERVICE_TYPE, u32(ServiceType.AUTHENTICATE_ONLY))]
    assert interpret_accept_untrusted(attrs, username="u", groupconfig=True).username == "u"


def test_challenge() -> None:
    attrs: list[tuple[AttrKey, bytes]] = [
        (Attr.REPLY_MESSAGE, b"Enter the code"),
        (Attr.STATE, b"\x01\x02"),
    ]
    challenge = interpret_challenge_untrusted(attrs, round=3, server=1)
    assert challenge == RadiusChallenge(
        message="Enter the code", state=b"\x01\x02", round=3, server=1
    )
    assert "\\x01" not in repr(challenge)


@pytest.mark.parametrize(
    ("attrs", "round_", "fragment"),
    [
        ([(Attr.REPLY_MESSAGE, b"m")], 1, "without State"),
        ([(Attr.REPLY_MESSAGE, b"m"), (Attr.STATE, b"")], 1, "without State"),
        ([(Attr.STATE, b"s")], 1, "without Reply-Message"),
        ([(Attr.STATE, b"s"), (Attr.REPLY_MESSAGE, b"m")], 17, "more than 16"),
    ],
)
def test_challenge_invalid(attrs: list[tuple[AttrKey, bytes]], round_: int, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match=fragment):
        interpret_challenge_untrusted(attrs, round=round_, server=0)


_KEYS = st.one_of(
    st.sampled_from([int(a) for a in Attr]),
    st.sampled_from([(311, 28), (311, 29), (10055, 1), (10055, 2)]),
    st.integers(0, 255),
)
_ATTRS = st.lists(st.tuples(_KEYS, st.binary(max_size=40)), max_size=12)


@given(st.binary(max_size=64))
def test_fuzz_framed_routes(value: bytes) -> None:
    for parse in (parse_framed_route_untrusted, parse_framed_ipv6_route_untrusted):
        with contextlib.suppress(RemoteProtocolError):
            parse(value)


@given(_ATTRS, st.booleans())
def test_fuzz_accept(attrs: list[tuple[AttrKey, bytes]], groupconfig: bool) -> None:
    with contextlib.suppress(RemoteProtocolError):
        interpret_accept_untrusted(attrs, username="u", groupconfig=groupconfig)


@given(_ATTRS, st.integers(0, 20))
def test_fuzz_challenge(attrs: list[tuple[AttrKey, bytes]], round_: int) -> None:
    with contextlib.suppress(RemoteProtocolError):
        interpret_challenge_untrusted(attrs, round=round_, server=0)
