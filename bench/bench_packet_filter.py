"""Benchmark: the cost of the client → TUN packet filter per packet (STYLE rule 15).

Run with ``.venv/bin/python bench/bench_packet_filter.py``. Every figure is the time for one batch
of 64 packets of 1,400 bytes (the most a TUN write loop sees per wake-up, ``_tunnel._BATCH``),
divided by 64, best of several rounds:

* ``baseline``: the write loop as it was before the filter: iterate the batch and call a no-op
  ``write`` per packet (the real TUN write, a system call of a few microseconds, is left out so
  that the filter's share is not hidden);
* ``unrestricted v4`` / ``v6``: the same loop over ``PacketFilter.admit_untrusted(batch)`` for a
  session without restrictions: the source check only (the fast path);
* ``restricted``: ``restrict-user-to-ports`` allow list and split routes: the full evaluation of
  every packet;
* ``spoofed``: every packet has a forged source (the slow path, dropping and counting);
* ``… + write(2)``: the same with a real system call per packet (``os.write`` to ``/dev/null``, a
  lower bound of a TUN write, which also runs the kernel's IP input) to put the filter's share of
  the whole client → TUN path in proportion.
"""

from __future__ import annotations

import os
import struct
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address, ip_network

from ocgate.ipfilter import PacketFilter, Restriction, parse_port_policy

BATCH = 64
SIZE = 1400
ROUNDS = 2000


def ipv4(src: str, dst: str) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, SIZE, 1, 0x4000, 64, 6, 0,
                         IPv4Address(src).packed, IPv4Address(dst).packed)  # fmt: skip
    tcp = struct.pack("!HHIIBBHHH", 40000, 443, 1, 1, 5 << 4, 0x10, 512, 0, 0)
    return header + tcp + bytes(SIZE - 40)


def ipv6(src: str, dst: str) -> bytes:
    header = struct.pack("!IHBB16s16s", 6 << 28, SIZE - 40, 6, 64,
                         IPv6Address(src).packed, IPv6Address(dst).packed)  # fmt: skip
    tcp = struct.pack("!HHIIBBHHH", 40000, 443, 1, 1, 5 << 4, 0x10, 512, 0, 0)
    return header + tcp + bytes(SIZE - 60)


def per_packet_ns(loop: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(ROUNDS):
            loop()
        best = min(best, time.perf_counter() - start)
    return best / ROUNDS / BATCH * 1e9


def main() -> int:
    lease4, lease6 = IPv4Address("10.77.0.5"), IPv6Network("fd77::5/128")
    v4 = [ipv4("10.77.0.5", "10.20.1.1")] * BATCH
    v6 = [ipv6("fd77::5", "fd20::1")] * BATCH
    spoofed = [ipv4("10.77.0.6", "10.20.1.1")] * BATCH
    open_filter = PacketFilter(ipv4=lease4, ipv6=lease6)
    restricted = PacketFilter(
        ipv4=lease4,
        ipv6=lease6,
        restriction=Restriction(
            routes=(ip_network("10.20.0.0/16"), ip_network("fd20::/48")),
            no_routes=(ip_network("10.20.5.0/24"),),
            dns=(ip_address("10.77.0.53"),),
            ports=parse_port_policy("tcp(443), tcp(80), udp(53), icmp(), icmpv6()"),
        ),
    )

    def write(packet: bytes) -> None:
        pass

    devnull = os.open(os.devnull, os.O_WRONLY)

    def syscall_baseline() -> None:
        for packet in v4:
            os.write(devnull, packet)

    def syscall_filtered() -> None:
        for packet in open_filter.admit_untrusted(v4):
            os.write(devnull, packet)

    def baseline() -> None:
        for packet in v4:
            write(packet)

    def through(packet_filter: PacketFilter, batch: list[bytes]) -> Callable[[], None]:
        def loop() -> None:
            for packet in packet_filter.admit_untrusted(batch):
                write(packet)

        return loop

    figures = {
        "baseline (no filter)": per_packet_ns(baseline),
        "unrestricted v4": per_packet_ns(through(open_filter, v4)),
        "unrestricted v6": per_packet_ns(through(open_filter, v6)),
        "restricted v4 (ports + routes)": per_packet_ns(through(restricted, v4)),
        "restricted v6 (ports + routes)": per_packet_ns(through(restricted, v6)),
        "spoofed v4 (dropped)": per_packet_ns(through(open_filter, spoofed)),
        "baseline + write(2)": per_packet_ns(syscall_baseline),
        "unrestricted v4 + write(2)": per_packet_ns(syscall_filtered),
    }
    print(f"python {sys.version.split()[0]}, batch {BATCH} x {SIZE} bytes, ns per packet:")
    for name, ns in figures.items():
        base = figures["baseline + write(2)" if "write" in name else "baseline (no filter)"]
        extra = "" if name.startswith("baseline") else f"  (+{ns - base:.0f} ns)"
        print(f"  {name:32} {ns:7.0f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
