"""Independent check of the hand-built packet vectors: tshark decodes each one (STYLE rule 12).

The generator (``tests/vectors/ipfilter/make_packets.py``) writes, beside each packet, the fields
it meant to build; Wireshark's dissectors must read the same source, destination, protocol,
destination port and fragment offset, and must flag the packets meant to be malformed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ._vectors import EXPECT, PACKETS, VECTORS

GENERATOR = VECTORS.with_name("make_packets.py")

FIELDS = (
    *("ip.src", "ip.dst", "ip.proto", "ip.frag_offset", "ipv6.src", "ipv6.dst"),
    *("ipv6.fraghdr.offset", "udp.dstport", "tcp.dstport", "sctp.dstport", "_ws.expert"),
)
PCAP_HEADER = struct.Struct("<IHHiIII")  # magic, version 2.4, zone, sigfigs, snaplen, linktype
RECORD_HEADER = struct.Struct("<IIII")  # seconds, microseconds, captured length, length
LINKTYPE_RAW = 101  # https://www.tcpdump.org/linktypes.html: raw IPv4/IPv6, no link header


def _tshark(pcap: Path) -> list[dict[str, str]]:
    argv = ["tshark", "-r", str(pcap), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]
    argv += ["-T", "fields", "-E", "separator=|", *(x for f in FIELDS for x in ("-e", f))]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    return [dict(zip(FIELDS, line.split("|"), strict=True)) for line in out.splitlines()]


def test_the_vectors_are_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("make_packets", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == json.loads(VECTORS.read_text())


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark (Wireshark)")
def test_tshark_reads_the_fields_the_generator_meant(tmp_path: Path) -> None:
    pcap = tmp_path / "packets.pcap"
    with pcap.open("wb") as fh:
        fh.write(PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for packet in PACKETS.values():
            fh.write(RECORD_HEADER.pack(0, 0, len(packet), len(packet)) + packet)
    decoded = dict(zip(PACKETS, _tshark(pcap), strict=True))
    for name, expect in EXPECT.items():
        got = decoded[name]
        if expect.get("malformed"):
            assert "length" in got["_ws.expert"], (name, got)
            continue
        if expect.get("malformed_upper"):
            assert "Malformed" in got["_ws.expert"], (name, got)
            continue
        v6 = ":" in str(expect["src"])
        assert got["ipv6.src" if v6 else "ip.src"] == expect["src"], (name, got)
        assert got["ipv6.dst" if v6 else "ip.dst"] == expect["dst"], (name, got)
        ports = {got[f] for f in ("udp.dstport", "tcp.dstport", "sctp.dstport")} - {""}
        want_port = set() if expect["dport"] is None else {str(expect["dport"])}
        assert ports == want_port, (name, got)
        offset = got["ipv6.fraghdr.offset" if v6 else "ip.frag_offset"] or "0"
        assert int(offset) * 8 == expect["frag"], (name, got)
        if not v6:
            assert int(got["ip.proto"]) == expect["proto"], (name, got)
