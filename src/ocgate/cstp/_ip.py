"""Cheap IP header peeking for the idle timer.

ocserv's idle timeout (``idle-timeout``, ocserv-compatibility.md §4.7; anyconnect-protocol.md §8)
counts only traffic that is not ICMP, IGMP or ICMPv6, so pings and multicast listener chatter do
not keep an unused session open. This module reads the IPv4 protocol byte or the IPv6 next-header
chain (skipping at most a few extension headers, which is where MLD reports hide behind Hop-by-Hop
options) and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

__all__ = ["IpProto", "any_counts_for_idle_untrusted", "counts_for_idle_untrusted"]


class IpProto(IntEnum):
    """IANA protocol numbers used here (https://www.iana.org/assignments/protocol-numbers)."""

    HOPOPT = 0
    ICMP = 1
    IGMP = 2
    IPV6_ROUTE = 43
    ICMPV6 = 58
    IPV6_OPTS = 60


_NOT_ACTIVITY = frozenset({IpProto.ICMP, IpProto.IGMP, IpProto.ICMPV6})
_IPV6_EXTENSIONS = frozenset({IpProto.HOPOPT, IpProto.IPV6_ROUTE, IpProto.IPV6_OPTS})
_IPV6_HEADER = 40
_MAX_EXTENSIONS = 4


def _ipv6_upper_protocol(packet: bytes) -> int | None:
    """Follow the IPv6 next-header chain through a few extension headers (RFC 8200 §4)."""
    nxt = packet[6]
    offset = _IPV6_HEADER
    for _ in range(_MAX_EXTENSIONS):
        if nxt not in _IPV6_EXTENSIONS:
            return nxt
        if len(packet) < offset + 2:
            return None
        nxt = packet[offset]
        offset += (packet[offset + 1] + 1) * 8
    return None if nxt in _IPV6_EXTENSIONS else nxt


def counts_for_idle_untrusted(packet: bytes) -> bool:
    """Return whether an IP packet counts as activity for the idle timer. Never raises.

    Packets too short to show their protocol, and packets of an unknown IP version, do not count.
    """
    if not packet:
        return False
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            return False
        return packet[9] not in _NOT_ACTIVITY
    if version == 6:
        if len(packet) < _IPV6_HEADER:
            return False
        proto = _ipv6_upper_protocol(packet)
        return proto is not None and proto not in _NOT_ACTIVITY
    return False


def any_counts_for_idle_untrusted(packets: Iterable[bytes]) -> bool:
    """Return whether any packet counts for the idle timer (stops at the first that does)."""
    return any(counts_for_idle_untrusted(p) for p in packets)
