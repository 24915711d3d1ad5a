"""The packet vectors of ``tests/vectors/ipfilter`` (see its SOURCES.md)."""

from __future__ import annotations

import json
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "ipfilter" / "packets.json"
PACKETS: dict[str, bytes] = {
    item["name"]: bytes.fromhex(item["hex"]) for item in json.loads(VECTORS.read_text())
}
EXPECT: dict[str, dict[str, object]] = {
    item["name"]: item["expect"] for item in json.loads(VECTORS.read_text())
}
