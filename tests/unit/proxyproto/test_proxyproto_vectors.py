"""Headers a real HAProxy sent (tests/vectors/proxyproto, see SOURCES.md there), parsed whole
and byte by byte: the addresses and ports are those of the captured connection, and the bytes
after the header are exactly what the client sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocgate.proxyproto import (
    Command,
    HeaderReceived,
    ProxyHeaderReader,
    pull_proxy_header_untrusted,
)

VECTORS = Path(__file__).parents[2] / "vectors" / "proxyproto"
EXPECTED: dict[str, dict[str, object]] = json.loads((VECTORS / "expected.json").read_text())


def test_every_capture_is_listed() -> None:
    assert sorted(p.name for p in VECTORS.glob("*.bin")) == sorted(EXPECTED)
    assert {name.split("-")[1] for name in EXPECTED} == {"v1", "v2"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capture(name: str) -> None:
    data = (VECTORS / name).read_bytes()
    want = EXPECTED[name]
    header = pull_proxy_header_untrusted(data)
    assert header is not None
    assert header.version == (1 if "-v1-" in name else 2)
    assert header.command is Command.PROXY
    assert (header.source, header.source_port) == (want["source"], want["source_port"])
    assert (header.destination, header.destination_port) == (
        want["destination"],
        want["destination_port"],
    )
    assert data[header.length :] == str(want["after"]).encode()
    if name.endswith("-tlvs.bin"):  # CRC32C and unique-id TLVs after the 12 address bytes.
        assert header.length > 16 + 12
    reader = ProxyHeaderReader(now=0.0)
    for index in range(len(data)):
        reader.receive_data(data[index : index + 1], 0.0)
        if reader.done:
            break
    event = reader.next_event()
    assert isinstance(event, HeaderReceived)
    assert event.header == header
    assert index + 1 == header.length  # Decided on the header's last byte, not later.
