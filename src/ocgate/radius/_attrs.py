"""Reply attributes -> :class:`RadiusResult` / :class:`RadiusChallenge`, and counter encoding.

Theory of operation: the codec hands over a reply's attributes as raw ``(key, value)`` pairs in
packet order, ``key`` being the attribute type or ``(vendor, type)`` for a vendor attribute. This
module interprets the ones ocserv uses (``src/auth/radius.c``) and ignores the rest. A value of
the wrong size or form is the server's fault and raises
:class:`~ocgate.errors.RemoteProtocolError`; the authenticator turns that into a failed login
rather than half-applying a reply.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence

from ocgate.errors import RemoteProtocolError
from ocgate.radius._constants import MAX_CHALLENGE_ROUNDS, Attr, ServiceType, Vendor, VendorAttr
from ocgate.radius._results import IPAddress, RadiusChallenge, RadiusResult

__all__ = [
    "AttrKey",
    "interpret_accept_untrusted",
    "interpret_challenge_untrusted",
    "parse_class_groups",
    "parse_framed_ipv6_route_untrusted",
    "parse_framed_route_untrusted",
    "reply_message",
    "split_gigawords",
]

AttrKey = int | tuple[int, int]
_UINT32 = struct.Struct("!I")  # integer attribute: 4 octets, network order (RFC 2865 section 5)
_MS_DNS1 = (Vendor.MICROSOFT, VendorAttr.MS_PRIMARY_DNS_SERVER)
_MS_DNS2 = (Vendor.MICROSOFT, VendorAttr.MS_SECONDARY_DNS_SERVER)
_RP_UP = (Vendor.ROARING_PENGUIN, VendorAttr.RP_UPSTREAM_SPEED_LIMIT)
_RP_DOWN = (Vendor.ROARING_PENGUIN, VendorAttr.RP_DOWNSTREAM_SPEED_LIMIT)
_CLASS_PREFIX = "OU="


def split_gigawords(count: int) -> tuple[int, int]:
    """Split a 64-bit counter into (Gigawords, Octets), RFC 2869 section 5.1.

    :raises ValueError: for a negative count; counts of 2**64 and more saturate.
    """
    if count < 0:
        raise ValueError("a counter cannot be negative")
    count = min(count, 2**64 - 1)
    return count >> 32, count & 0xFFFFFFFF


def values(attributes: Sequence[tuple[AttrKey, bytes]], key: AttrKey) -> list[bytes]:
    """Every value of ``key``, in packet order."""
    return [value for k, value in attributes if k == key]


def reply_message(attributes: Sequence[tuple[AttrKey, bytes]]) -> str | None:
    """The Reply-Message values joined by newlines (RFC 2865 section 5.18), or ``None``."""
    parts = values(attributes, Attr.REPLY_MESSAGE)
    if not parts:
        return None
    return "\n".join(part.decode("utf-8", "replace") for part in parts)


def parse_class_groups(classes: Iterable[bytes], separator: str = ";") -> tuple[str, ...]:
    """Groups named by Class values ``OU=g1;g2`` (or one ``OU=g`` per Class), in order, once
    each. Class values without the ``OU=`` prefix are opaque server data and name no group."""
    groups: list[str] = []
    for raw in classes:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text[: len(_CLASS_PREFIX)].upper() != _CLASS_PREFIX:
            continue
        for name in text[len(_CLASS_PREFIX) :].split(separator):
            name = name.strip()
            if name and name.isprintable() and name not in groups:
                groups.append(name)
    return tuple(groups)


def _text_untrusted(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"{what} is not UTF-8") from None


def _route_prefix_untrusted(value: bytes, what: str) -> str:
    # RFC 2865 section 5.22: "prefix[/len] gateway metric..."; only the prefix matters here.
    text = _text_untrusted(value, what).strip()
    if not text:
        raise RemoteProtocolError(f"empty {what}")
    return text.split()[0]


def parse_framed_route_untrusted(value: bytes) -> ipaddress.IPv4Network:
    """The destination of a Framed-Route ``"192.0.2.0/24 0.0.0.0 1"`` (host bits cleared; no
    length means a host route)."""
    prefix = _route_prefix_untrusted(value, "Framed-Route")
    try:
        return ipaddress.IPv4Network(prefix, strict=False)
    except ValueError:
        raise RemoteProtocolError(f"Framed-Route {prefix!r} is not an IPv4 network") from None


def parse_framed_ipv6_route_untrusted(value: bytes) -> ipaddress.IPv6Network:
    """The destination of a Framed-IPv6-Route ``"2001:db8::/32 :: 1"`` (RFC 3162 section 2.5)."""
    prefix = _route_prefix_untrusted(value, "Framed-IPv6-Route")
    try:
        return ipaddress.IPv6Network(prefix, strict=False)
    except ValueError:
        raise RemoteProtocolError(f"Framed-IPv6-Route {prefix!r} is not an IPv6 network") from None


def _ipv6_prefix_untrusted(value: bytes, what: str) -> ipaddress.IPv6Network:
    # RFC 3162 section 2.3: Reserved (1) | Prefix-Length (1) | Prefix (0-16 octets).
    if not 2 <= len(value) <= 18 or value[1] > 128:
        raise RemoteProtocolError(f"{what} has a bad length")
    address = ipaddress.IPv6Address(value[2:].ljust(16, b"\0"))
    return ipaddress.IPv6Network((address, value[1]), strict=False)


def _uint32_untrusted(value: bytes, what: str) -> int:
    if len(value) != _UINT32.size:
        raise RemoteProtocolError(f"{what} is not a 4-octet integer")
    number: int = _UINT32.unpack(value)[0]
    return number


def _ipv4_untrusted(value: bytes, what: str) -> ipaddress.IPv4Address:
    if len(value) != 4:
        raise RemoteProtocolError(f"{what} is not an IPv4 address")
    return ipaddress.IPv4Address(value)


def _ipv6_untrusted(value: bytes, what: str) -> ipaddress.IPv6Address:
    if len(value) != 16:
        raise RemoteProtocolError(f"{what} is not an IPv6 address")
    return ipaddress.IPv6Address(value)


def _last_int(attributes: Sequence[tuple[AttrKey, bytes]], key: AttrKey, what: str) -> int | None:
    found = values(attributes, key)
    return _uint32_untrusted(found[-1], what) if found else None


def _last_ipv4(
    attributes: Sequence[tuple[AttrKey, bytes]], key: AttrKey, what: str
) -> ipaddress.IPv4Address | None:
    found = values(attributes, key)
    return _ipv4_untrusted(found[-1], what) if found else None


def _dns_untrusted(attributes: Sequence[tuple[AttrKey, bytes]]) -> tuple[IPAddress, ...]:
    servers: list[IPAddress] = []
    for key, what in ((_MS_DNS1, "MS-Primary-DNS-Server"), (_MS_DNS2, "MS-Secondary-DNS-Server")):
        servers.extend(_ipv4_untrusted(v, what) for v in values(attributes, key))
    servers.extend(
        _ipv6_untrusted(v, "DNS-Server-IPv6-Address")
        for v in values(attributes, Attr.DNS_SERVER_IPV6_ADDRESS)
    )
    return tuple(dict.fromkeys(servers))


def _check_service_type(attributes: Sequence[tuple[AttrKey, bytes]]) -> None:
    # ocserv src/auth/radius.c refuses an Accept whose Service-Type is not Framed; ocgate also
    # lets an echoed Authenticate-Only pass.
    for value in values(attributes, Attr.SERVICE_TYPE):
        service = _uint32_untrusted(value, "Service-Type")
        if service not in (ServiceType.FRAMED, ServiceType.AUTHENTICATE_ONLY):
            raise RemoteProtocolError(f"Service-Type {service} is not Framed")


def _ipv6_routes_untrusted(
    attributes: Sequence[tuple[AttrKey, bytes]],
) -> tuple[ipaddress.IPv6Network, ...]:
    routes = [
        parse_framed_ipv6_route_untrusted(v) for v in values(attributes, Attr.FRAMED_IPV6_ROUTE)
    ]
    routes.extend(
        _ipv6_prefix_untrusted(v, "Framed-IPv6-Prefix")
        for v in values(attributes, Attr.FRAMED_IPV6_PREFIX)
    )
    return tuple(dict.fromkeys(routes))


def interpret_accept_untrusted(
    attributes: Sequence[tuple[AttrKey, bytes]],
    *,
    username: str,
    groupconfig: bool,
    group_separator: str = ";",
    override_interim_updates: bool = False,
) -> RadiusResult:
    """Read an Access-Accept's attributes.

    :raises RemoteProtocolError: an attribute ocserv uses is malformed, or Service-Type is not
        Framed.
    """
    _check_service_type(attributes)
    classes = tuple(values(attributes, Attr.CLASS))
    ipv6 = values(attributes, Attr.FRAMED_IPV6_ADDRESS)
    delegated = values(attributes, Attr.DELEGATED_IPV6_PREFIX)
    interim = _last_int(attributes, Attr.ACCT_INTERIM_INTERVAL, "Acct-Interim-Interval")
    return RadiusResult(
        username=username,
        groups=parse_class_groups(classes, group_separator) if groupconfig else (),
        framed_ipv4=_last_ipv4(attributes, Attr.FRAMED_IP_ADDRESS, "Framed-IP-Address"),
        framed_netmask=_last_ipv4(attributes, Attr.FRAMED_IP_NETMASK, "Framed-IP-Netmask"),
        framed_ipv6=_ipv6_untrusted(ipv6[-1], "Framed-IPv6-Address") if ipv6 else None,
        framed_ipv6_prefix=(
            _ipv6_prefix_untrusted(delegated[-1], "Delegated-IPv6-Prefix") if delegated else None
        ),
        routes=tuple(
            dict.fromkeys(
                parse_framed_route_untrusted(v) for v in values(attributes, Attr.FRAMED_ROUTE)
            )
        ),
        ipv6_routes=_ipv6_routes_untrusted(attributes),
        dns=_dns_untrusted(attributes),
        session_timeout=_last_int(attributes, Attr.SESSION_TIMEOUT, "Session-Timeout"),
        idle_timeout=_last_int(attributes, Attr.IDLE_TIMEOUT, "Idle-Timeout"),
        interim_interval=None if override_interim_updates else interim,
        upstream_kbps=_last_int(attributes, _RP_UP, "RP-Upstream-Speed-Limit"),
        downstream_kbps=_last_int(attributes, _RP_DOWN, "RP-Downstream-Speed-Limit"),
        reply_message=reply_message(attributes),
        classes=classes,
    )


def interpret_challenge_untrusted(
    attributes: Sequence[tuple[AttrKey, bytes]], *, round: int, server: int
) -> RadiusChallenge:
    """Read an Access-Challenge (ocserv: State and Reply-Message are both required).

    :param round: the number this challenge gets (1 for the first of a login).
    :param server: index of the server that sent it.
    :raises RemoteProtocolError: State or Reply-Message missing, or too many rounds.
    """
    if round > MAX_CHALLENGE_ROUNDS:
        raise RemoteProtocolError(f"more than {MAX_CHALLENGE_ROUNDS} challenge rounds")
    states = values(attributes, Attr.STATE)
    message = reply_message(attributes)
    if not states or not states[0]:
        raise RemoteProtocolError("Access-Challenge without State")
    if not message:
        raise RemoteProtocolError("Access-Challenge without Reply-Message")
    return RadiusChallenge(message=message, state=states[0], round=round, server=server)
