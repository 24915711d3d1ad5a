"""Wrap IPFIX messages into a pcap and decode them with tshark (an independent checker)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

TSHARK = shutil.which("tshark")
PORT = 2055


def write_pcap(path: Path, messages: list[bytes], *, port: int = PORT) -> None:
    """Write one Ethernet + IPv4 + UDP frame per message (UDP checksum 0)."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for index, payload in enumerate(messages):
        udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
        total = 20 + len(udp)
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            total,
            index,
            0,
            64,
            17,
            0,
            bytes([192, 0, 2, 1]),
            bytes([192, 0, 2, 2]),
        )
        checksum = _ip_checksum(ip)
        ip = ip[:10] + struct.pack("!H", checksum) + ip[12:]
        frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp
        out += struct.pack("<IIII", 1_700_000_000 + index, 0, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tshark_cflow(path: Path, *, port: int = PORT) -> list[dict[str, object]]:
    """Return the ``cflow`` layer of every packet, as tshark decodes it."""
    assert TSHARK is not None
    result = subprocess.run(
        [
            TSHARK,
            "-r",
            str(path),
            "-d",
            f"udp.port=={port},cflow",
            "-T",
            "json",
            "--no-duplicate-keys",
        ],
        capture_output=True,
        check=True,
        text=True,
        timeout=120,
    )
    packets = json.loads(result.stdout)
    return [p["_source"]["layers"]["cflow"] for p in packets]


def flowsets(cflow: dict[str, object]) -> list[dict[str, object]]:
    """Return the data flowsets of a packet's cflow layer (lists are normalised)."""
    sets = cflow.get("cflow.flowset")
    if sets is None:
        return []
    return sets if isinstance(sets, list) else [sets]  # type: ignore[return-value]
