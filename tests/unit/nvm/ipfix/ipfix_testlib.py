"""Shared helpers of the IPFIX unit tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

from ocgate.nvm.ipfix import (
    CISCO_PEN,
    DataRecord,
    ExporterKey,
    FieldSpec,
    IpfixCollectorCore,
    IpfixEvent,
    RecordsDecoded,
    Template,
)

VECTORS = Path(__file__).resolve().parents[3] / "vectors" / "ipfix"

UDP = ExporterKey("udp", "192.0.2.1", 40000)
UDP2 = ExporterKey("udp", "192.0.2.2", 40000)
TCP = ExporterKey("tcp", "192.0.2.1", 40001)

# softflowd-like IPv4 flow template (nvm-ipfix.md §7): all fixed-length fields.
FLOW = Template(
    1024,
    tuple(
        FieldSpec(i, n)
        for i, n in ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (152, 8), (153, 8))
    ),
)


def pen9(element_id: int, length: int) -> FieldSpec:
    """A Cisco (PEN 9) field specifier."""
    return FieldSpec(element_id, length, CISCO_PEN)


def load_vector(name: str) -> bytes:
    """Read a hex vector (whitespace ignored) from tests/vectors/ipfix."""
    return bytes.fromhex("".join((VECTORS / f"{name}.hex").read_text().split()))


def drain(core: IpfixCollectorCore) -> list[IpfixEvent]:
    """Return every pending event."""
    events: list[IpfixEvent] = []
    while (event := core.next_event()) is not None:
        events.append(event)
    return events


def records_of(events: list[IpfixEvent]) -> list[DataRecord]:
    """Flatten the records of the RecordsDecoded events."""
    return [r for e in events if isinstance(e, RecordsDecoded) for r in e.records]
