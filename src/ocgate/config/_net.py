"""Parsers for addresses, networks and routes in ocserv.conf.

Theory of operation: IPv4 masks may be written dotted (``255.255.255.0``) or as a prefix length;
a dotted mask must be contiguous. Python's :mod:`ipaddress` would also accept a *host mask*
(``0.0.0.255``), which ocserv does not, so masks are parsed here and never handed to
:func:`ipaddress.ip_network` as text. Host bits are not an error: the network is normalised and the
caller emits a warning, as ocserv's ``ip_route_sanity_check`` (``src/ip-util.c``) does.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ocgate.config._model import IPAddress, IPNetwork
from ocgate.config._values import ParseContext
from ocgate.errors import ConfigError

__all__ = [
    "AddressWithPrefix",
    "RouteValue",
    "parse_dns_server",
    "parse_ipv4_netmask",
    "parse_ipv4_network",
    "parse_ipv6_network",
    "parse_ipv6_prefix",
    "parse_ipv6_subnet_prefix",
    "parse_no_route",
    "parse_route",
]

_ROUTE_EXPECTED = (
    "default, NET/PREFIX or NET/DOTTED-MASK, e.g. 10.0.0.0/8, 10.0.0.0/255.0.0.0 or fd00::/48"
)


@dataclass(frozen=True, slots=True)
class AddressWithPrefix:
    """``ipv4-network``/``ipv6-network`` as written: the address and the prefix if one was given."""

    address: IPAddress
    prefix: int | None


@dataclass(frozen=True, slots=True)
class RouteValue:
    """One ``route``/``no-route`` line.

    :param network: the normalised network, or ``None`` for a default route (``default``,
        ``0.0.0.0/0``, ``::/0``).
    :param host_bits: the value as written if it had host bits set (for the warning), else ``None``.
    """

    network: IPNetwork | None
    host_bits: str | None = None


def _ip(text: str) -> IPAddress | None:
    if "%" in text:  # Scoped IPv6 addresses mean nothing to a VPN client.
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _dotted_mask_prefix(text: str) -> int | None:
    try:
        mask = int(ipaddress.IPv4Address(text))
    except ValueError:
        return None
    prefix = bin(mask).count("1")
    if mask != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
        return None
    return prefix


def _prefix(text: str, maximum: int) -> int | None:
    """A prefix length ``0..maximum``; IPv4 also accepts a contiguous dotted mask."""
    if text.isascii() and text.isdigit():
        number = int(text)
        return number if number <= maximum else None
    if maximum == 32:
        return _dotted_mask_prefix(text)
    return None


def parse_dns_server(value: str, ctx: ParseContext) -> IPAddress:
    """A DNS (or NBNS) server: an IPv4 or IPv6 address; ``local`` is refused, as in ocserv."""
    expected = "an IPv4 or IPv6 address"
    if value == "local":
        raise ConfigError("the 'local' DNS keyword is no longer supported", expected=expected)
    address = _ip(value)
    if address is None:
        raise ConfigError(f"not an IP address: {value!r}", expected=expected)
    return address


def _address_with_prefix(value: str, version: int, expected: str) -> AddressWithPrefix:
    text, slash, prefix_text = value.partition("/")
    address = _ip(text)
    if address is None or address.version != version:
        raise ConfigError(f"not an IPv{version} network: {value!r}", expected=expected)
    if not slash:
        return AddressWithPrefix(address, None)
    prefix = _prefix(prefix_text, address.max_prefixlen)
    if prefix is None:
        raise ConfigError(f"bad prefix in {value!r}", expected=expected)
    return AddressWithPrefix(address, prefix)


def parse_ipv4_network(value: str, ctx: ParseContext) -> AddressWithPrefix:
    """``192.168.1.0`` (with ``ipv4-netmask``) or ``192.168.1.0/24``."""
    return _address_with_prefix(
        value, 4, "192.168.1.0/24, or 192.168.1.0 together with ipv4-netmask = 255.255.255.0"
    )


def parse_ipv4_netmask(value: str, ctx: ParseContext) -> int:
    """A contiguous dotted IPv4 netmask; returns the prefix length."""
    prefix = _dotted_mask_prefix(value)
    if prefix is None:
        expected = "a dotted mask such as 255.255.255.0"
        raise ConfigError(f"not a netmask: {value!r}", expected=expected)
    return prefix


def parse_ipv6_network(value: str, ctx: ParseContext) -> AddressWithPrefix:
    """``fd00::/48`` (or an address with ``ipv6-prefix``)."""
    return _address_with_prefix(value, 6, "an IPv6 network such as fda9:4efe:7e3b:3ea::/48")


def _prefix_in_range(value: str, low: int, expected: str) -> int:
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= 128:
        raise ConfigError(f"not an IPv6 prefix length: {value!r}", expected=expected)
    return int(value)


def parse_ipv6_prefix(value: str, ctx: ParseContext) -> int:
    """``ipv6-prefix``: ocserv's old separate spelling of the IPv6 network's prefix length."""
    return _prefix_in_range(value, 1, "an integer 1-128")


def parse_ipv6_subnet_prefix(value: str, ctx: ParseContext) -> int:
    """``ipv6-subnet-prefix``: 1-128; 0 means unset as in ocserv (the finisher skips it)."""
    return _prefix_in_range(value, 0, "an integer 1-128")


def _network(value: str) -> RouteValue:
    text, slash, prefix_text = value.partition("/")
    address = _ip(text)
    if address is None:
        raise ConfigError(f"not a route: {value!r}", expected=_ROUTE_EXPECTED)
    prefix = _prefix(prefix_text, address.max_prefixlen) if slash else address.max_prefixlen
    if prefix is None:
        raise ConfigError(f"bad prefix or mask in route {value!r}", expected=_ROUTE_EXPECTED)
    network = ipaddress.ip_network((address, prefix), strict=False)
    return RouteValue(network, None if network.network_address == address else value)


def parse_route(value: str, ctx: ParseContext) -> RouteValue:
    """A ``route`` line; ``default``, ``0.0.0.0/0`` and ``::/0`` all mean a full tunnel."""
    if value == "default":
        return RouteValue(None)
    route = _network(value)
    if route.network is not None and route.network.prefixlen == 0:
        return RouteValue(None)
    return route


def parse_no_route(value: str, ctx: ParseContext) -> RouteValue:
    """A ``no-route`` line: like a route, but ``default`` makes no sense there."""
    if value == "default":
        raise ConfigError("'default' cannot be excluded", expected=_ROUTE_EXPECTED)
    return _network(value)
