"""Link and tunnel MTU arithmetic for the CONNECT reply (anyconnect-protocol.md §6).

Theory of operation. The client tells us two numbers it cannot be trusted with: ``X-CSTP-Base-MTU``
(the link MTU it measured; openconnect sends 65535 on loopback) and ``X-CSTP-MTU`` (the tunnel MTU
it proposes). ocserv 1.5.0 subtracted overheads from such values in unsigned arithmetic and
underflowed (#717, ocserv-compatibility.md §9). Here:

1. headers are parsed strictly (ASCII digits, at most 5 of them) and out-of-range values become
   ``None``;
2. :func:`compute_mtu` re-checks every range itself (it may be called with raw integers), works with
   Python's signed integers and clamps the result, so no input yields a negative or absurd MTU;
3. the minimum accepted link MTU (800, or 1280 with an IPv6 address) is far above the largest
   overhead (``MAX_OVERHEAD``), the invariant ocserv relies on.

The server algorithm follows ocserv ``src/worker-vpn.c`` ``connect_handler`` and
``calc_mtu_values``: link = min(configured ``mtu`` or 1500, Base-MTU if within [MIN, 16384]); old
clients without a Base-MTU get min(link, X-CSTP-MTU + worst-case DTLS overhead) when that is at
least MIN. The tunnel (data) MTU is the link MTU minus the overhead of the channel that carries
data: the DTLS overhead when UDP is offered (the caller passes it: IP + UDP + record overhead of
the suite + 1 type byte), otherwise ocserv's CSTP overhead, IP + TCP (20, no options) + TLS record
overhead + the 8-byte CSTP header. The default TLS record overhead is TLS 1.2 AES-GCM's 29 bytes (5
header + 8 explicit nonce + 16 tag), the suite ocgate prefers; pass ``tls_record_overhead`` for
another suite. The TCP path MTU re-check ocserv does every 30 s is the adapter's job (it needs the
socket).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocgate.errors import LocalProtocolError

__all__ = [
    "DEFAULT_LINK_MTU",
    "DTLS12_AES_GCM_RECORD_OVERHEAD",
    "DTLS12_CHACHA20_RECORD_OVERHEAD",
    "DTLS_CBC_SHA1_RECORD_OVERHEAD",
    "IPV6_MIN_MTU",
    "MAX_MTU",
    "MAX_OVERHEAD",
    "MIN_LINK_MTU",
    "MIN_TUNNEL_MTU",
    "TLS12_AES_GCM_RECORD_OVERHEAD",
    "TLS13_AEAD_RECORD_OVERHEAD",
    "TLS_CBC_SHA1_RECORD_OVERHEAD",
    "MtuResult",
    "compute_mtu",
    "cstp_packet_overhead",
    "dtls_packet_overhead",
    "parse_mtu_headers_untrusted",
]

DEFAULT_LINK_MTU = 1500
MAX_MTU = 16384
MIN_LINK_MTU = 800
"""ocserv ``MIN_MTU`` without an IPv6 address."""
IPV6_MIN_MTU = 1280
"""RFC 8200 §5 minimum link MTU; also ocserv ``MIN_MTU`` when an IPv6 address is assigned."""
MIN_TUNNEL_MTU = 576
"""RFC 791 minimum datagram size: the floor of the clamped tunnel MTU (openconnect's too)."""

_IPV4_HEADER = 20
_IPV6_HEADER = 40
_TCP_HEADER = 20
_UDP_HEADER = 8
_CSTP_HEADER = 8
_DTLS_TYPE_BYTE = 1

TLS12_AES_GCM_RECORD_OVERHEAD = 5 + 8 + 16
TLS13_AEAD_RECORD_OVERHEAD = 5 + 1 + 16
TLS_CBC_SHA1_RECORD_OVERHEAD = 5 + 16 + 20 + 16
"""TLS 1.1/1.2 AES-CBC-SHA1: header, explicit IV, MAC, a block of padding (ocserv worst case)."""
DTLS12_AES_GCM_RECORD_OVERHEAD = 13 + 8 + 16
DTLS12_CHACHA20_RECORD_OVERHEAD = 13 + 16
DTLS_CBC_SHA1_RECORD_OVERHEAD = 13 + 16 + 20 + 16
"""DTLS 0.9/1.0/1.2 AES-CBC-SHA1 (AES256-SHA, AES128-SHA): ocserv's ``MAX_DTLS_CRYPTO_OVERHEAD``."""

MAX_OVERHEAD = 256
"""Largest overhead :func:`compute_mtu` accepts; well below ``MIN_LINK_MTU``."""

_DIGITS = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MtuResult:
    """The MTUs to announce.

    :param base_mtu: the link MTU, sent as ``X-CSTP-Base-MTU``.
    :param tunnel_mtu: the data MTU, sent as ``X-CSTP-MTU`` (and ``X-DTLS-MTU`` in legacy DTLS), and
        set on the tun device.
    :param ipv6_ok: ``tunnel_mtu >= 1280``; when false, do not hand out IPv6 (ocserv drops it).
    """

    base_mtu: int
    tunnel_mtu: int
    ipv6_ok: bool


def _parse_one(value: str | None, low: int) -> int | None:
    if value is None or not _DIGITS.fullmatch(value):
        return None
    number = int(value)
    return number if low <= number <= MAX_MTU else None


def parse_mtu_headers_untrusted(
    base_mtu: str | None, mtu: str | None
) -> tuple[int | None, int | None]:
    """Parse ``X-CSTP-Base-MTU`` and ``X-CSTP-MTU``; garbage or out-of-range values become ``None``.

    Base-MTU must lie in [800, 16384] and MTU in [576, 16384] (the IPv6 floor of 1280 is applied
    later by :func:`compute_mtu`, which knows whether an IPv6 address is assigned). Never raises.

    :returns: ``(base_mtu, mtu)``.
    """
    return _parse_one(base_mtu, MIN_LINK_MTU), _parse_one(mtu, MIN_TUNNEL_MTU)


def cstp_packet_overhead(
    *, tls_record_overhead: int = TLS12_AES_GCM_RECORD_OVERHEAD, transport_ipv6: bool = False
) -> int:
    """IP + TCP + TLS record + CSTP header around one packet (ocserv ``calc_mtu_values``)."""
    ip = _IPV6_HEADER if transport_ipv6 else _IPV4_HEADER
    return ip + _TCP_HEADER + tls_record_overhead + _CSTP_HEADER


def dtls_packet_overhead(*, record_overhead: int, transport_ipv6: bool = False) -> int:
    """IP + UDP + DTLS record + 1 type byte around one packet (anyconnect-protocol.md §6 step 4).

    :param record_overhead: e.g. :data:`DTLS12_AES_GCM_RECORD_OVERHEAD` (37) → 66 over IPv4.
    """
    ip = _IPV6_HEADER if transport_ipv6 else _IPV4_HEADER
    return ip + _UDP_HEADER + record_overhead + _DTLS_TYPE_BYTE


def _check_overhead(overhead: int) -> int:
    if not 0 <= overhead <= MAX_OVERHEAD:
        raise LocalProtocolError(f"MTU overhead {overhead} outside 0..{MAX_OVERHEAD}")
    return overhead


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _link_mtu(
    link_mtu: int | None,
    client_base_mtu: int | None,
    client_mtu: int | None,
    floor: int,
    old_client_overhead: int,
) -> int:
    """Steps 1-2 of the server algorithm; hostile client values are ignored, never subtracted."""
    link = DEFAULT_LINK_MTU if link_mtu is None else _clamp(link_mtu, MIN_TUNNEL_MTU, MAX_MTU)
    if client_base_mtu is not None and floor <= client_base_mtu <= MAX_MTU:
        return min(link, client_base_mtu)
    if client_mtu is not None and MIN_TUNNEL_MTU <= client_mtu <= MAX_MTU:
        candidate = client_mtu + old_client_overhead
        if candidate >= floor:
            return min(link, candidate)
    return link


def compute_mtu(
    *,
    link_mtu: int | None,
    client_base_mtu: int | None,
    client_mtu: int | None,
    ipv6_assigned: bool,
    dtls_overhead: int | None = None,
    tls_record_overhead: int = TLS12_AES_GCM_RECORD_OVERHEAD,
    transport_ipv6: bool = False,
) -> MtuResult:
    """Compute the link and tunnel MTU for a CONNECT (anyconnect-protocol.md §6, ocserv #717 safe).

    :param link_mtu: the configured ``mtu`` (per user/group or global); ``None`` → 1500.
    :param client_base_mtu: parsed ``X-CSTP-Base-MTU`` (re-checked against [800 or 1280, 16384]).
    :param client_mtu: parsed ``X-CSTP-MTU``, used only when no valid Base-MTU came.
    :param ipv6_assigned: an IPv6 address will be handed out (raises the minimum link MTU to 1280).
    :param dtls_overhead: total DTLS overhead (see :func:`dtls_packet_overhead`) when UDP is
                          offered; ``None``
        for a CSTP-only tunnel.
    :param tls_record_overhead: TLS record overhead of the CSTP session (CSTP-only tunnels).
    :param transport_ipv6: the client reached us over IPv6 (40-byte outer IP header).
    :raises LocalProtocolError: an overhead argument is negative or above :data:`MAX_OVERHEAD`.
    """
    if dtls_overhead is None:
        cstp = cstp_packet_overhead(
            tls_record_overhead=tls_record_overhead, transport_ipv6=transport_ipv6
        )
        overhead = _check_overhead(cstp)
    else:
        overhead = _check_overhead(dtls_overhead)
    floor = IPV6_MIN_MTU if ipv6_assigned else MIN_LINK_MTU
    worst_dtls = dtls_packet_overhead(
        record_overhead=DTLS_CBC_SHA1_RECORD_OVERHEAD, transport_ipv6=transport_ipv6
    )
    link = _link_mtu(link_mtu, client_base_mtu, client_mtu, floor, worst_dtls)
    tunnel = _clamp(link - overhead, MIN_TUNNEL_MTU, MAX_MTU - overhead)
    return MtuResult(base_mtu=link, tunnel_mtu=tunnel, ipv6_ok=tunnel >= IPV6_MIN_MTU)
