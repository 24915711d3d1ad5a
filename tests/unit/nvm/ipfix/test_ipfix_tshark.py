"""Independent confirmation: tshark decodes the same messages to the same values (STYLE rule 12).

Skipped when tshark is not installed (Debian package ``tshark``).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from ipfix_pcap import TSHARK, tshark_cflow, write_pcap
from ipfix_testlib import FLOW, UDP, drain, load_vector, pen9, records_of

from ocgate.nvm.ipfix import (
    BasicList,
    DataRecord,
    FieldSpec,
    IpfixCollectorCore,
    Template,
    VarLen,
    element_by_name,
    encode_data_set,
    encode_message,
    encode_template_set,
    encode_value,
    parse_template_set_untrusted,
    pull_message_untrusted,
)

pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

V = 0xFFFF
FLOW6 = Template(
    2048,
    (
        FieldSpec(27, 16),
        FieldSpec(28, 16),
        FieldSpec(7, 2),
        FieldSpec(11, 2),
        FieldSpec(4, 1),
        FieldSpec(1, 4),
        FieldSpec(2, 4),
        FieldSpec(152, 8),
        FieldSpec(153, 8),
    ),
)
# An nvzFlow-like template with every value shape: fixed PEN-9, strings in both prefix forms,
# and the two module lists.
NVM = Template(
    267,
    (
        FieldSpec(4, 1),
        FieldSpec(8, 4),
        FieldSpec(150, 4),
        pen9(12332, 20),
        pen9(12333, V),
        pen9(12361, 2),
        pen9(12340, V),
        pen9(12346, 8),
        pen9(12352, V),
        pen9(12353, V),
    ),
)


def _time(text: str) -> float:
    """Parse tshark's 'Nov 14, 2023 22:13:20.123000000 UTC'."""
    stamp, fraction = " ".join(text.replace(" UTC", "").split()).split(".")
    whole = datetime.strptime(stamp, "%b %d, %Y %H:%M:%S").replace(tzinfo=UTC).timestamp()
    return whole + int(fraction) / 10 ** len(fraction)


def _flows(cflow: dict[str, object]) -> list[dict[str, object]]:
    flows: list[dict[str, object]] = []
    for key, value in cflow.items():
        if key.startswith("Set ") and isinstance(value, dict):
            flows += [v for k, v in value.items() if k.startswith("Flow ")]
    return flows


def _pen_entries(flow: dict[str, object]) -> list[bytes]:
    entries = flow.get("cflow.enterprise_private_entry", [])
    entries = entries if isinstance(entries, list) else [entries]
    return [bytes.fromhex(str(e).replace(":", "")) for e in entries]


def _ours(messages: list[bytes]) -> list[DataRecord]:
    core = IpfixCollectorCore()
    for message in messages:
        core.receive_message(message, UDP, 0.0)
    return records_of(drain(core))


def _theirs(tmp_path: Path, messages: list[bytes]) -> list[dict[str, object]]:
    pcap = tmp_path / "ipfix.pcap"
    write_pcap(pcap, messages)
    return [flow for cflow in tshark_cflow(pcap) for flow in _flows(cflow)]


def _standard_rows(rng: random.Random, n: int, v6: bool) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for _ in range(n):
        start = 1_700_000_000 + rng.randrange(10**6) + rng.randrange(1000) / 1000
        addr = (
            (IPv6Address(rng.getrandbits(128)), IPv6Address(rng.getrandbits(128)))
            if v6
            else (IPv4Address(rng.getrandbits(32)), IPv4Address(rng.getrandbits(32)))
        )
        size = 4 if v6 else 8
        rows.append(
            (
                *addr,
                rng.randrange(65536),
                rng.randrange(65536),
                rng.choice((6, 17, 1)),
                rng.randrange(2 ** (8 * size)),
                rng.randrange(2 ** (8 * size)),
                start,
                start + rng.randrange(100000) / 1000,
            )
        )
    return rows


def test_standard_flows_match_tshark(tmp_path: Path) -> None:
    rng = random.Random(0)
    messages = [
        encode_message(
            [encode_template_set([FLOW]), encode_template_set([FLOW6])],
            export_time=1_700_000_000,
            observation_domain_id=1,
        )
    ]
    for seq in range(3):
        messages.append(
            encode_message(
                [
                    encode_data_set(FLOW, _standard_rows(rng, 5, False)),
                    encode_data_set(FLOW6, _standard_rows(rng, 3, True)),
                ],
                export_time=1_700_000_000 + seq,
                sequence=seq * 8,
                observation_domain_id=1,
            )
        )
    ours, theirs = _ours(messages), _theirs(tmp_path, messages)
    assert len(ours) == len(theirs) == 24
    for record, flow in zip(ours, theirs, strict=True):
        v = record.values
        six = "sourceIPv6Address" in v
        assert (
            str(v["sourceIPv6Address" if six else "sourceIPv4Address"])
            == flow["cflow.srcaddrv6" if six else "cflow.srcaddr"]
        )
        assert (
            str(v["destinationIPv6Address" if six else "destinationIPv4Address"])
            == flow["cflow.dstaddrv6" if six else "cflow.dstaddr"]
        )
        assert v["sourceTransportPort"] == int(str(flow["cflow.srcport"]))
        assert v["destinationTransportPort"] == int(str(flow["cflow.dstport"]))
        assert v["protocolIdentifier"] == int(str(flow["cflow.protocol"]))
        assert v["octetDeltaCount"] == int(str(flow["cflow.octets"]))
        assert v["packetDeltaCount"] == int(str(flow["cflow.packets"]))
        times = flow["cflow.timedelta_tree"]
        assert isinstance(times, dict)
        assert v["flowStartMilliseconds"] == pytest.approx(_time(times["cflow.abstimestart"]))
        assert v["flowEndMilliseconds"] == pytest.approx(_time(times["cflow.abstimeend"]))


def _pen9_wire(record: DataRecord, template: Template, *, long: bool = False) -> list[bytes]:
    """Our values of the PEN-9 fields, re-encoded, in template order."""
    out: list[bytes] = []
    for spec in template.fields:
        if spec.enterprise != 9:
            continue
        name = {12352: "nvzFlowModuleNameList", 12353: "nvzFlowModuleHashList"}.get(spec.element_id)
        if name is None:
            value = next(v for k, v in record.values.items() if _id_of(k) == spec.element_id)
            out.append(encode_value(spec, value))
            continue
        element = pen9(12348, V) if spec.element_id == 12352 else pen9(12350, 32)
        items = tuple(record.values[name])  # type: ignore[call-overload]
        out.append(encode_value(spec, BasicList(element, items, long_prefixes=long)))
    return out


def _id_of(name: str) -> int:
    return element_by_name(name).element_id


def test_ona_sample_matches_tshark(tmp_path: Path) -> None:
    messages = [
        load_vector(n)
        for n in ("ona_nvzflow_templates", "ona_nvzflow_data_267", "ona_nvzflow_data_262")
    ]
    ours, theirs = _ours(messages), _theirs(tmp_path, messages)
    assert len(ours) == len(theirs) == 2
    flow267, flow262 = theirs
    v = ours[0].values
    assert str(v["sourceIPv4Address"]) == flow267["cflow.srcaddr"] == "192.168.0.10"
    assert v["destinationTransportPort"] == int(str(flow267["cflow.dstport"])) == 53
    times = flow267["cflow.timedelta_tree"]
    assert isinstance(times, dict)
    assert v["flowStartSeconds"] == _time(times["cflow.abstimestart"])
    ona_267 = next(t for t in _templates(messages[0]) if t.template_id == 267)
    assert _pen_entries(flow267) == _pen9_wire(ours[0], ona_267)
    assert _pen_entries(flow267)[1].decode() == v["nvzFlowLoggedInUser"]
    assert ours[1].values["virtualStationName"] == flow262["cflow.virtual_station_name"]
    ona_262 = next(t for t in _templates(messages[0]) if t.template_id == 262)
    assert _pen_entries(flow262) == _pen9_wire(ours[1], ona_262)


def _templates(message: bytes) -> list[Template]:
    body = pull_message_untrusted(message)[1][0].body
    return [t for t in parse_template_set_untrusted(body, options=False) if isinstance(t, Template)]


def test_synthetic_nvzflow_matches_tshark(tmp_path: Path) -> None:
    rng = random.Random(1)
    rows: list[tuple[object, ...]] = []
    for i in range(4):
        modules = tuple(f"mod{rng.randrange(10**6)}.dll" for _ in range(rng.randrange(0, 5)))
        hashes = tuple(rng.randbytes(32) for _ in modules)
        rows.append(
            (
                6,
                IPv4Address(rng.getrandbits(32)),
                1_600_000_000 + i,
                rng.randbytes(20),
                VarLen("DOMAIN\\user" + "x" * rng.randrange(300), long_form=bool(i % 2)),
                2,
                "proc.exe",
                rng.randrange(2**64),
                VarLen(
                    BasicList(pen9(12348, V), modules, long_prefixes=bool(i % 2)), long_form=True
                ),
                VarLen(BasicList(pen9(12350, 32), hashes), long_form=True),
            )
        )
    messages = [
        encode_message(
            [encode_template_set([NVM]), encode_data_set(NVM, rows)],
            export_time=1_600_000_010,
            observation_domain_id=127,
        )
    ]
    ours, theirs = _ours(messages), _theirs(tmp_path, messages)
    assert len(ours) == len(theirs) == 4
    for index, (record, flow) in enumerate(zip(ours, theirs, strict=True)):
        assert str(record.values["sourceIPv4Address"]) == flow["cflow.srcaddr"]
        entries = _pen_entries(flow)
        assert entries[0] == record.values["nvzFlowUDID"]
        assert entries[1].decode() == record.values["nvzFlowLoggedInUser"]
        assert int.from_bytes(entries[4], "big") == record.values["nvzFlowL4ByteCountIn"]
        assert entries == _pen9_wire(record, NVM, long=bool(index % 2))
