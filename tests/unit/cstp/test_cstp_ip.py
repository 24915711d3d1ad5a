"""Idle-timer packet classification (non-ICMP/IGMP/ICMPv6 traffic only)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.cstp import counts_for_idle_untrusted
from ocgate.cstp._ip import any_counts_for_idle_untrusted


def ipv4(proto: int, size: int = 28) -> bytes:
    header = bytearray(20)
    header[0] = 0x45
    header[9] = proto
    return bytes(header) + bytes(size - 20)


def ipv6(next_header: int, extensions: list[tuple[int, int]] | None = None) -> bytes:
    """An IPv6 packet; ``extensions`` = [(next header, length in 8-octet units - 1)]."""
    header = bytearray(40)
    header[0] = 0x60
    header[6] = next_header
    body = b""
    for nxt, units in extensions or []:
        ext = bytearray((units + 1) * 8)
        ext[0], ext[1] = nxt, units
        body += bytes(ext)
    return bytes(header) + body + bytes(8)


@pytest.mark.parametrize(
    ("packet", "counts"),
    [
        (ipv4(6), True),  # TCP
        (ipv4(17), True),  # UDP
        (ipv4(1), False),  # ICMP
        (ipv4(2), False),  # IGMP
        (ipv6(6), True),
        (ipv6(58), False),  # ICMPv6
        (ipv6(0, [(58, 0)]), False),  # MLD report behind Hop-by-Hop options
        (ipv6(0, [(60, 0), (17, 1)]), True),  # HBH + destination options + UDP
        (ipv6(43, [(6, 2)]), True),  # routing header + TCP
        (ipv6(0, [(0, 0), (0, 0), (0, 0), (0, 0), (6, 0)]), False),  # too deep: unknown
        (ipv6(0, [(58, 200)])[:40], False),  # chain truncated
        (ipv6(0, [(58, 0)])[:41], False),
        (b"", False),
        (b"\x45" + bytes(10), False),  # short IPv4
        (b"\x60" + bytes(30), False),  # short IPv6
        (b"\x50" + bytes(40), False),  # unknown version
    ],
)
def test_classification(packet: bytes, counts: bool) -> None:
    assert counts_for_idle_untrusted(packet) is counts


def test_any_stops_at_first_activity() -> None:
    seen: list[bytes] = []

    def packets() -> list[bytes]:
        return [ipv4(1), ipv4(6), ipv4(17)]

    def tracking() -> object:
        for p in packets():
            seen.append(p)
            yield p

    assert any_counts_for_idle_untrusted(tracking())  # type: ignore[arg-type]
    assert len(seen) == 2
    assert not any_counts_for_idle_untrusted([ipv4(1), ipv6(58)])
    assert not any_counts_for_idle_untrusted([])


@given(st.binary(max_size=120))
def test_fuzz_never_raises(packet: bytes) -> None:
    assert isinstance(counts_for_idle_untrusted(packet), bool)


@given(st.binary(max_size=120))
def test_fuzz_ipv6_chains_never_raise(tail: bytes) -> None:
    packet = bytes([0x60, 0, 0, 0, 0, 0, 0, 0]) + bytes(32) + tail
    assert isinstance(counts_for_idle_untrusted(packet), bool)
