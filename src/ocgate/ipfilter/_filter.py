"""What a VPN client may put into the TUN device: source addresses, routes and ports (pure).

Theory of operation
-------------------
Every IP packet a client sends (over CSTP or DTLS) passes :meth:`PacketFilter.admit_untrusted`
before it is written to the TUN device. The packet is untrusted bytes: nothing here raises on any
input; a packet that cannot be judged is dropped and counted as ``malformed``.

1. **The IP header** must be well formed: IPv4 with version 4, a header length of at least 20 and
   a total length between the header length and the bytes received; IPv6 with version 6 and a
   payload length that fits in the bytes received. Trailing bytes past the total length are left
   to the kernel, which trims them.
2. **The source address** must be the session's IPv4 lease, inside its IPv6 lease (an address or
   an ``ipv6-subnet-prefix`` subnet), or inside one of its ``iroute`` networks (the LAN behind the
   client). Anything else is ``spoofed-source``; an IPv6 link-local or unspecified source
   (router solicitations, MLD reports that a client's kernel sends on any interface) is
   ``link-local``, never forwarded and counted apart so it does not drown real spoofing. ocserv
   relies on the kernel's reverse-path filter for this; ocgate owns the TUN device's input and
   checks it here, for IPv6 too (which has no ``rp_filter``).
3. **Restrictions** (``restrict-user-to-routes``, ``restrict-user-to-ports``), only when one is
   configured, in the order of ocserv's ``ocserv-fw`` rules (``src/ocserv-fw``):

   a. a query to one of the session's DNS servers (UDP or TCP, destination port 53) passes;
   b. ports: with the allow form only packets matching an entry pass, with the ``!`` form packets
      matching an entry are dropped (``restricted-port``). Entries match the destination port;
      ``tcp``/``udp``/``sctp`` entries apply to both families, ``icmp`` to IPv4 and ``icmpv6`` to
      IPv6 only;
   c. routes: a destination inside a ``no-route`` is dropped; with split routes only destinations
      inside a ``route`` pass, with the default route (or none configured) every other destination
      passes (``restricted-route``). As in ``ocserv-fw``, a route list of one family also closes
      the other family. ``restrict-user-to-ports`` implies ``restrict-user-to-routes``
      (``doc/sample.config``).

   Unlike ``ocserv-fw``, whose rules sit in the ``FORWARD`` chain, the filter sees every packet of
   the client, including those addressed to the gateway host itself (its tunnel address): under a
   restriction they must be inside a route too.

**Fragments.** A non-first fragment (IPv4 fragment offset > 0, or an IPv6 Fragment header with
offset > 0) carries no transport header. It passes the port check when an entry of its protocol
exists (allow form) or always (deny form), and the route check like any packet. This admits
nothing the first fragment did not: the receiver cannot reassemble a datagram whose first
fragment was dropped, the first fragment must hold the whole port field (else ``malformed``, the
RFC 1858 tiny-fragment rule), and a later fragment's offset (8-byte units) cannot reach the ports
(bytes 0-3 of TCP, UDP and SCTP headers); overlapping fragments are discarded by the receiving
kernel (RFC 5722 and Linux for IPv4). **IPv6 extension headers** are followed (Hop-by-Hop,
Routing, Fragment, Destination Options, AH; at most 8); a chain that runs past the packet is
``malformed``, and under a restriction a Routing header with segments left is
``restricted-route`` (the final destination is not the one in the header).

Cost: with no restriction the only work per packet is the header and source check, one
``struct`` unpack and a byte comparison in a loop over the batch (``docs/ARCHITECTURE.md`` lists
the figures of ``bench/bench_packet_filter.py``); the full evaluation runs only for packets that
fail it and for sessions with a restriction.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from ocgate.ipfilter._ports import PortPolicy, PortProto

__all__ = ["DropReason", "PacketFilter", "Restriction"]

# RFC 791 §3.1: version/IHL, (TOS), total length, (id), flags/fragment offset, (TTL), protocol,
# (checksum), source, destination.
_IPV4 = struct.Struct("!BxH2xHxB2x4s4s")
# RFC 8200 §3: (version, class, flow label), payload length, next header, (hop limit), source,
# destination.
_IPV6 = struct.Struct("!4xHBx16s16s")
# The fast path's view: version/IHL, total length, source (IPv4); payload length, source (IPv6).
_FAST4 = struct.Struct("!BxH8x4s")
_FAST6 = struct.Struct("!4xH2x16s")
_NEVER = bytes(17)
"""A source prefix no 16-byte address starts with (the family has no lease)."""

_IPV6_HOPOPT, _IPV6_ROUTE, _IPV6_FRAG, _IPV6_DSTOPTS, _AH = 0, 43, 44, 60, 51
_PLAIN_EXTENSIONS = frozenset({_IPV6_HOPOPT, _IPV6_ROUTE, _IPV6_DSTOPTS})
_MAX_EXTENSIONS = 8
_WITH_PORTS = frozenset({PortProto.TCP, PortProto.UDP, PortProto.SCTP})
_DNS_PROTOS = frozenset({PortProto.TCP, PortProto.UDP})
_DNS_PORT = 53
_LINK_LOCAL_TOP10 = 0x3FA  # fe80::/10 (RFC 4291 §2.5.6): the top 10 bits of the address.
_NO_PORT = -1
"""The "destination port" of a protocol without ports, or of a non-first fragment."""

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address
_Nets = tuple[tuple[int, int], ...]  # (network as int, mask as int)


class DropReason(IntEnum):
    """Why a packet from a client was not written to the TUN device."""

    SPOOFED_SOURCE = 0
    """The source is not the session's lease nor inside its ``iroute`` networks."""
    LINK_LOCAL = 1
    """An IPv6 link-local or unspecified source: link chatter of the client's kernel."""
    MALFORMED = 2
    """The IP header (or, under a restriction, the header chain or ports) cannot be read."""
    RESTRICTED_ROUTE = 3
    """``restrict-user-to-routes``: the destination is outside the routes or in a no-route."""
    RESTRICTED_PORT = 4
    """``restrict-user-to-ports``: the protocol/port is not allowed."""

    @property
    def label(self) -> str:
        """The metric label and occtl wording: ``spoofed-source``, ``restricted-port`` …"""
        return self.name.lower().replace("_", "-")


_SPOOFED, _LINK_LOCAL, _MALFORMED = (
    DropReason.SPOOFED_SOURCE, DropReason.LINK_LOCAL, DropReason.MALFORMED
)  # fmt: skip
_ROUTE, _PORT = DropReason.RESTRICTED_ROUTE, DropReason.RESTRICTED_PORT


@dataclass(frozen=True, slots=True, kw_only=True)
class Restriction:
    """``restrict-user-to-routes`` / ``restrict-user-to-ports`` for one session.

    :param routes: the split-include routes the client was given; empty means every destination
        (the default route, or no route configured).
    :param no_routes: the split-exclude routes (always refused).
    :param dns: the DNS servers the client was given (queries to them always pass).
    :param ports: the port policy, or ``None`` for routes only.
    """

    routes: tuple[Network, ...] = ()
    no_routes: tuple[Network, ...] = ()
    dns: tuple[Address, ...] = ()
    ports: PortPolicy | None = None


def _nets(networks: Iterable[Network], version: int) -> _Nets:
    return tuple((int(n.network_address), int(n.netmask)) for n in networks if n.version == version)


def _inside(addr: int, nets: _Nets) -> bool:
    # A plain loop, not any(<generator>): this runs per packet, and a generator costs more
    # than the few comparisons it would wrap.
    for net, mask in nets:  # noqa: SIM110
        if addr & mask == net:
            return True
    return False


def _port_at(p: bytes, proto: int, off: int, end: int) -> int | None:
    """The destination port of a first fragment (``_NO_PORT`` for a protocol without ports), or
    ``None`` when the header is cut short (the RFC 1858 tiny-fragment rule)."""
    if proto not in _WITH_PORTS:
        return _NO_PORT
    if off + 4 > end:
        return None
    return (p[off + 2] << 8) | p[off + 3]  # Bytes 2-3 of TCP, UDP and SCTP headers.


def _upper6(p: bytes, nxt: int, end: int) -> tuple[int, int, bool, bool] | None:
    """Follow the extension header chain (RFC 8200 §4) to the upper layer.

    :returns: (protocol, destination port, non-first fragment, Routing header with segments
        left), or ``None`` if the chain runs past the packet or is too long.
    """
    off, detour = 40, False
    for _ in range(_MAX_EXTENSIONS + 1):  # The extensions, then the upper layer.
        if nxt in _PLAIN_EXTENSIONS:
            if off + 8 > end:
                return None
            if nxt == _IPV6_ROUTE and p[off + 3]:  # Segments Left (RFC 8200 §4.4).
                detour = True
            nxt, off = p[off], off + (p[off + 1] + 1) * 8
        elif nxt == _IPV6_FRAG:
            if off + 8 > end:
                return None
            if (p[off + 2] << 8 | p[off + 3]) >> 3:  # Fragment Offset > 0 (RFC 8200 §4.5).
                return p[off], _NO_PORT, True, detour
            nxt, off = p[off], off + 8
        elif nxt == _AH:
            if off + 8 > end:
                return None
            nxt, off = p[off], off + (p[off + 1] + 2) * 4  # RFC 4302 §2.2: 4-octet units.
        else:
            if off > end:
                return None
            port = _port_at(p, nxt, off, end)
            return None if port is None else (nxt, port, False, detour)
    return None


class _Rules:
    """A restriction compiled to integers for one IP version."""

    __slots__ = ("deny", "dns", "no_routes", "open_routes", "ports", "routes")

    def __init__(self, r: Restriction, version: int) -> None:
        self.routes = _nets(r.routes, version)
        self.open_routes = not r.routes
        self.no_routes = _nets(r.no_routes, version)
        self.dns = frozenset(int(a) for a in r.dns if a.version == version)
        other_icmp = PortProto.ICMPV6 if version == 4 else PortProto.ICMP
        self.deny = r.ports is not None and r.ports.deny
        self.ports: dict[int, tuple[tuple[int, int], ...]] | None = None
        if r.ports is not None:
            ports: dict[int, tuple[tuple[int, int], ...]] = {}
            for rule in r.ports.rules:
                if rule.proto != other_icmp:  # icmp() is IPv4's, icmpv6() IPv6's.
                    ports[rule.proto] = (*ports.get(rule.proto, ()), (rule.low, rule.high))
            self.ports = ports

    def judge(
        self, dst: int, proto: int, dport: int, fragment: bool, detour: bool
    ) -> DropReason | None:
        """ocserv-fw's rule order: DNS servers, then ports, then routes."""
        if dport == _DNS_PORT and proto in _DNS_PROTOS and dst in self.dns and not detour:
            return None
        ports = self.ports
        if ports is not None:
            ranges = ports.get(proto)
            if fragment:  # No ports to match: see "Fragments" in the module docstring.
                hit = ranges is not None or self.deny
                allowed = hit
            else:
                hit = False
                if ranges is not None:
                    for low, high in ranges:  # A plain loop: see _inside.
                        if dport == _NO_PORT or low <= dport <= high:
                            hit = True
                            break
                allowed = hit != self.deny
            if not allowed:
                return _PORT
        if detour or _inside(dst, self.no_routes):
            return _ROUTE
        if self.open_routes or _inside(dst, self.routes):
            return None
        return _ROUTE


class PacketFilter:
    """The checks for one tunnel; keeps a drop counter per :class:`DropReason`.

    :param ipv4: the session's IPv4 lease (``None``: no IPv4 source is the client's own).
    :param ipv6: the session's IPv6 lease (an address as a /128, or a subnet).
    :param iroutes: networks behind the client whose addresses are valid sources.
    :param restriction: routes/ports restrictions, or ``None``.
    """

    __slots__ = ("_fast4", "_fast6", "_iroutes4", "_iroutes6", "_lease6", "_rules4", "_rules6",
                 "_src4", "dropped")  # fmt: skip

    def __init__(
        self,
        *,
        ipv4: IPv4Address | None,
        ipv6: IPv6Network | None,
        iroutes: Sequence[Network] = (),
        restriction: Restriction | None = None,
    ) -> None:
        self._src4 = ipv4.packed if ipv4 is not None else b""
        self._lease6 = _nets((ipv6,), 6) if ipv6 is not None else ()
        self._iroutes4 = _nets(iroutes, 4)
        self._iroutes6 = _nets(iroutes, 6)
        self._rules4 = self._rules6 = None
        if restriction is not None:
            self._rules4, self._rules6 = _Rules(restriction, 4), _Rules(restriction, 6)
        # The fast path compares bytes: the IPv4 lease, and the leading bytes of a byte-aligned
        # IPv6 lease (a /60 lease is checked by the full path). A restriction disables it.
        self._fast4 = self._src4 if restriction is None else b""
        self._fast6 = _NEVER
        if restriction is None and ipv6 is not None and ipv6.prefixlen % 8 == 0:
            self._fast6 = ipv6.network_address.packed[: ipv6.prefixlen // 8]
        self.dropped = [0] * len(DropReason)
        """Packets dropped, indexed by :class:`DropReason`."""

    @property
    def restricted(self) -> bool:
        """Whether a routes/ports restriction applies."""
        return self._rules4 is not None

    def counts(self) -> dict[str, int]:
        """Drops by reason label (every reason, zeros included)."""
        return {reason.label: self.dropped[reason] for reason in DropReason}

    def fast_sources(self) -> tuple[bytes, bytes]:
        """The sources :meth:`admit_untrusted` admits at a glance: the IPv4 lease (empty when
        there is none or the session is restricted) and the IPv6 prefix bytes (17 bytes, which
        no address starts with, when none). The data-path thread (``ocgate._fastpath``) admits
        exactly these and leaves every other packet to this filter."""
        return self._fast4, self._fast6

    def admit_untrusted(self, packets: list[bytes]) -> list[bytes]:
        """The packets of ``packets`` that may be written to the TUN device; counts the others.

        Returns ``packets`` itself when every packet passes. Never raises.
        """
        # The fast path: a 20-byte IPv4 header or an IPv6 header from the lease, with a length
        # that fits. One struct unpack per packet; anything else (IPv4 options, iroutes,
        # restrictions, spoofing, garbage) is judged in full below.
        src4, src6 = self._fast4, self._fast6
        unpack4, unpack6 = _FAST4.unpack_from, _FAST6.unpack_from
        for p in packets:
            try:
                first, total, src = unpack4(p)
                if first == 0x45:
                    if src != src4 or not 20 <= total <= len(p):
                        break
                elif first >> 4 == 6:
                    payload, src = unpack6(p)
                    if not src.startswith(src6) or payload + 40 > len(p):
                        break
                else:
                    break
            except struct.error:  # Shorter than the header.
                break
        else:
            return packets
        admitted: list[bytes] = []
        dropped = self.dropped
        verdict = self.verdict_untrusted
        for p in packets:
            reason = verdict(p)
            if reason is None:
                admitted.append(p)
            else:
                dropped[reason] += 1
        return admitted

    def verdict_untrusted(self, packet: bytes) -> DropReason | None:
        """Why ``packet`` must be dropped, or ``None`` if it may pass. Counts nothing; never
        raises."""
        n = len(packet)
        if n < 20:
            return _MALFORMED
        version = packet[0] >> 4
        if version == 4:
            return self._verdict4(packet, n)
        if version == 6 and n >= 40:
            return self._verdict6(packet, n)
        return _MALFORMED

    def _verdict4(self, p: bytes, n: int) -> DropReason | None:
        first, total, frag, proto, src, dst = _IPV4.unpack_from(p)
        ihl = (first & 0x0F) * 4
        if ihl < 20 or not ihl <= total <= n:
            return _MALFORMED
        if src != self._src4 and not _inside(int.from_bytes(src), self._iroutes4):
            return _SPOOFED
        rules = self._rules4
        if rules is None:
            return None
        fragment = bool(frag & 0x1FFF)  # Fragment offset > 0 (RFC 791): no transport header.
        dport = _NO_PORT if fragment else _port_at(p, proto, ihl, total)
        if dport is None:
            return _MALFORMED
        return rules.judge(int.from_bytes(dst), proto, dport, fragment, False)

    def _verdict6(self, p: bytes, n: int) -> DropReason | None:
        payload, nxt, src_bytes, dst = _IPV6.unpack_from(p)
        end = 40 + payload
        if end > n:
            return _MALFORMED
        src = int.from_bytes(src_bytes)
        if not _inside(src, self._lease6) and not _inside(src, self._iroutes6):
            if src == 0 or src >> 118 == _LINK_LOCAL_TOP10:
                return _LINK_LOCAL
            return _SPOOFED
        rules = self._rules6
        if rules is None:
            return None
        upper = _upper6(p, nxt, end)
        if upper is None:
            return _MALFORMED
        proto, dport, fragment, detour = upper
        return rules.judge(int.from_bytes(dst), proto, dport, fragment, detour)
