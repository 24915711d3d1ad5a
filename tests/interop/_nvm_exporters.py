"""Real IPFIX exporters (softflowd, pmacctd nfprobe) and the nfcapd/nfdump oracle, for NVM tests.

nvm-ipfix.md §7: a synthetic pcap with TCP 10.0.0.1:40000 <-> 10.0.0.2:443 (5 x 100 B + FIN; 3 x
200 B + FIN) and UDP 10.0.0.1:5353 -> 10.0.0.2:53 (3 x 50 B); every exporter reports 740 B / 6
packets, 760 B / 4 and 234 B / 3 (octets = IP total length). The bench uses :func:`write_pcap`
with more flows.
"""

from __future__ import annotations

import csv
import io
import shutil
import struct
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

__all__ = [
    "ORACLE",
    "Flow5",
    "Packet",
    "missing_tools",
    "nfcapd_flows",
    "oracle_packets",
    "pmacctd_config",
    "run_pmacctd",
    "run_softflowd",
    "start_nfcapd",
    "stop_nfcapd",
    "write_pcap",
]

TOOLS = ("softflowd", "pmacctd", "nfcapd", "nfdump")


@dataclass(frozen=True, slots=True)
class Packet:
    time: float
    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    payload: int
    fin: bool = False


@dataclass(frozen=True, slots=True)
class Flow5:
    """A flow's 5-tuple with its counts."""

    src: str
    dst: str
    sport: int
    dport: int
    proto: int
    octets: int
    packets: int


ORACLE = {
    Flow5("10.0.0.1", "10.0.0.2", 40000, 443, 6, 740, 6),
    Flow5("10.0.0.2", "10.0.0.1", 443, 40000, 6, 760, 4),
    Flow5("10.0.0.1", "10.0.0.2", 5353, 53, 17, 234, 3),
}


def missing_tools() -> list[str]:
    """The exporter / oracle binaries not installed (apt: softflowd pmacct nfdump)."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def oracle_packets(start: float = 1_700_000_000.0) -> list[Packet]:
    """The §7 oracle traffic, 10 ms apart."""
    packets: list[Packet] = []
    t = start

    def add(src: str, dst: str, proto: int, sport: int, dport: int, size: int, fin: bool) -> None:
        nonlocal t
        packets.append(Packet(t, src, dst, proto, sport, dport, size, fin))
        t += 0.01

    for _ in range(5):
        add("10.0.0.1", "10.0.0.2", 6, 40000, 443, 100, False)
    for _ in range(3):
        add("10.0.0.2", "10.0.0.1", 6, 443, 40000, 200, False)
    add("10.0.0.1", "10.0.0.2", 6, 40000, 443, 0, True)
    add("10.0.0.2", "10.0.0.1", 6, 443, 40000, 0, True)
    for _ in range(3):
        add("10.0.0.1", "10.0.0.2", 17, 5353, 53, 50, False)
    return packets


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(packet: Packet) -> bytes:
    payload = bytes(packet.payload)
    if packet.proto == 6:
        flags = 0x11 if packet.fin else 0x18  # FIN+ACK, or PSH+ACK.
        l4 = struct.pack("!HHIIBBHHH", packet.sport, packet.dport, 1, 1, 5 << 4, flags, 65535, 0, 0)
    else:
        l4 = struct.pack("!HHHH", packet.sport, packet.dport, 8 + len(payload), 0)
    total = 20 + len(l4) + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        0,
        0x4000,
        64,
        packet.proto,
        0,
        IPv4Address(packet.src).packed,
        IPv4Address(packet.dst).packed,
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    ether = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return ether + ip + l4 + payload


def write_pcap(path: Path, packets: Iterable[Packet]) -> None:
    """A classic pcap (microsecond timestamps, Ethernet link type)."""
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for packet in packets:
            frame = _frame(packet)
            seconds = int(packet.time)
            micros = round((packet.time - seconds) * 1e6)
            out.write(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)


def run_softflowd(pcap: Path, port: int, *, timeout: float = 60) -> None:
    """softflowd reads the pcap, exports IPFIX to 127.0.0.1:port at end of file, and exits."""
    subprocess.run(
        [
            "softflowd",
            "-r",
            str(pcap),
            "-v",
            "10",
            "-A",
            "milli",
            "-a",
            "-n",
            f"127.0.0.1:{port}",
            "-d",
            "-T",
            "full",
        ],
        check=True,
        capture_output=True,
        timeout=timeout,
    )


def pmacctd_config(pcap: Path, port: int) -> str:
    return (
        "daemonize: false\n"
        f"pcap_savefile: {pcap}\n"
        "plugins: nfprobe[ex]\n"
        f"nfprobe_receiver[ex]: 127.0.0.1:{port}\n"
        "nfprobe_version[ex]: 10\n"
        "aggregate[ex]: src_host, dst_host, src_port, dst_port, proto\n"
    )


def run_pmacctd(pcap: Path, port: int, workdir: Path, *, timeout: float = 60) -> int:
    """pmacctd + nfprobe reads the pcap, exports IPFIX at end of file, and exits.

    Returns the number of runs: a run that exits 1 may already have exported, so after a retry a
    collector can hold every flow twice.
    """
    conf = workdir / f"pmacctd-{port}.conf"
    conf.write_text(pmacctd_config(pcap, port))
    # pmacctd now and then exits 1 on a loaded machine (its nfprobe plugin loses the core's
    # pipe at end of file: "connection lost to 'ex-nfprobe'"); up to three runs, then the reason.
    for attempt in range(3):
        proc = subprocess.run(
            ["pmacctd", "-f", str(conf)], capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode == 0:
            return attempt + 1
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError(f"pmacctd exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")


def start_nfcapd(port: int, directory: Path) -> subprocess.Popen[bytes]:
    """nfcapd receiving IPFIX on 127.0.0.1:port into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        ["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(directory), "-t", "3600"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # Bind before the exporter sends.
    return process


def stop_nfcapd(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM: nfcapd flushes and closes its current file."""
    process.terminate()
    process.wait(timeout=30)


def nfcapd_flows(directory: Path) -> list[Flow5]:
    """The flows nfcapd stored, read back with ``nfdump -o csv``."""
    files = sorted(str(p) for p in directory.glob("nfcapd.*"))
    if not files:
        return []
    flows: list[Flow5] = []
    for name in files:
        out = subprocess.run(
            ["nfdump", "-q", "-r", name, "-o", "csv"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        flows += _parse_csv(out)
    return flows


def nfdump_stats(directory: Path) -> str:
    """``nfdump -I`` of every file (flows, packets, bytes, sequence failures)."""
    return "\n".join(
        subprocess.run(
            ["nfdump", "-I", "-r", str(p)], check=True, capture_output=True, text=True
        ).stdout
        for p in sorted(directory.glob("nfcapd.*"))
    )


_PROTO = {"TCP": 6, "UDP": 17, "ICMP": 1}


def _parse_csv(text: str) -> list[Flow5]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    header = rows[0]
    if "sa" not in header:  # nfdump -q may drop the header; use the 1.7 column order.
        header = [
            "ts",
            "te",
            "td",
            "sa",
            "da",
            "sp",
            "dp",
            "pr",
            "flg",
            "fwd",
            "stos",
            "ipkt",
            "ibyt",
        ]
        body = rows
    else:
        body = rows[1:]
    index = {name: i for i, name in enumerate(header)}
    flows = []
    for row in body:
        if len(row) < len(index) or not row[index["sa"]] or row[0].startswith("Summary"):
            continue
        proto = row[index["pr"]].strip()
        flows.append(
            Flow5(
                row[index["sa"]].strip(),
                row[index["da"]].strip(),
                int(row[index["sp"]]),
                int(row[index["dp"]]),
                _PROTO.get(proto, int(proto) if proto.isdigit() else -1),
                int(row[index["ibyt"]]),
                int(row[index["ipkt"]]),
            )
        )
    return flows
