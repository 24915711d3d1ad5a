"""Normalisation of decoded IPFIX data records (nvm-ipfix.md §2.4, §2.5).

The golden values are the public ONA sample (``obsrvbl-oss/ona``
``src/scripts/tests/test_nvzflow_reader.py``), given here as the decoder's values dicts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from ocgate.nvm._records import (
    FIELD_MAP,
    EndpointRecord,
    FlowRecord,
    GenericRecord,
    InterfaceRecord,
    Module,
    json_safe,
    normalise,
    split_account,
)


@dataclass(frozen=True)
class Exporter:
    transport: str = "udp"
    address: str = "192.168.0.10"
    port: int = 50000


@dataclass(frozen=True)
class Rec:
    """Stand-in for the decoder's ``DataRecord``."""

    values: dict[str, object]
    template_id: int = 267
    observation_domain_id: int = 127
    export_time: int = 1491362800
    sequence: int = 0
    exporter: Exporter = field(default_factory=Exporter)
    raw_unknown: dict[tuple[int, int], bytes] = field(default_factory=dict)


ONA_TIME = dt.datetime(2017, 4, 5, 3, 26, 13, tzinfo=dt.UTC).timestamp()
UDID = bytes(range(20))
PHASH = bytes(range(32))
PPHASH = bytes(range(32, 64))
MODULES = [f"C:\\Windows\\System32\\m{i}.dll" for i in range(10)]
MHASHES = [bytes([i]) * 32 for i in range(10)]


def ona_flow_values() -> dict[str, object]:
    return {
        "protocolIdentifier": 17,
        "sourceIPv4Address": ipaddress.IPv4Address("192.168.0.10"),
        "sourceTransportPort": 43879,
        "destinationIPv4Address": ipaddress.IPv4Address("192.168.0.11"),
        "destinationTransportPort": 53,
        "flowStartSeconds": ONA_TIME,
        "flowEndSeconds": ONA_TIME,
        "nvzFlowUDID": UDID,
        "nvzFlowLoggedInUser": "MYNVM\\dummy11",
        "nvzFlowLoggedInUserAccountType": 2,
        "nvzFlowProcessAccount": "NT AUTHORITY\\NETWORK SERVICE",
        "nvzFlowProcessAccountType": 1,
        "nvzFlowProcessName": "svchost.exe",
        "nvzFlowProcessHash": PHASH,
        "nvzFlowParentProcessAccount": "NT AUTHORITY\\SYSTEM",
        "nvzFlowParentProcessAccountType": 1,
        "nvzFlowParentProcessName": "services.exe",
        "nvzFlowParentProcessHash": PPHASH,
        "nvzFlowL4ByteCountIn": 100,
        "nvzFlowL4ByteCountOut": 41,
        "nvzFlowDNSSuffix": "dummy.du",
        "nvzFlowDestinationHostname": "Unknown",
        "nvzFlowInterfaceInfoUID": 6,
        "nvzFlowModuleNameList": MODULES,
        "nvzFlowModuleHashList": MHASHES,
    }


def test_ona_ipv4_flow_golden_values() -> None:
    got = normalise(Rec(ona_flow_values()))
    assert got == FlowRecord(
        time_start=1491362773.0,
        time_end=1491362773.0,
        protocol=17,
        src_addr="192.168.0.10",
        src_port=43879,
        dst_addr="192.168.0.11",
        dst_port=53,
        bytes_in=100,
        bytes_out=41,
        udid=UDID.hex(),
        user="MYNVM\\dummy11",
        user_authority="MYNVM",
        user_principal="dummy11",
        user_account_type=2,
        process_name="svchost.exe",
        process_hash=PHASH.hex(),
        process_account="NT AUTHORITY\\NETWORK SERVICE",
        process_account_type=1,
        parent_process_name="services.exe",
        parent_process_hash=PPHASH.hex(),
        parent_process_account="NT AUTHORITY\\SYSTEM",
        parent_process_account_type=1,
        dns_suffix="dummy.du",
        dst_hostname="Unknown",
        interface_uid=6,
        modules=tuple(Module(n, h.hex()) for n, h in zip(MODULES, MHASHES, strict=True)),
        exporter="udp://192.168.0.10:50000",
        odid=127,
        template_id=267,
    )
    assert got.octets is None
    assert got.extra == {}


def test_ipv6_flow_and_exporter_format() -> None:
    values = ona_flow_values()
    del values["sourceIPv4Address"], values["destinationIPv4Address"]
    values["sourceIPv6Address"] = ipaddress.IPv6Address("2001:db8:0:0::10")
    values["destinationIPv6Address"] = ipaddress.IPv6Address("2001:db8::11")
    rec = Rec(values, template_id=268, exporter=Exporter("dtls", "2001:db8::10", 2055))
    got = normalise(rec)
    assert isinstance(got, FlowRecord)
    assert (got.src_addr, got.dst_addr) == ("2001:db8::10", "2001:db8::11")
    assert got.exporter == "dtls://[2001:db8::10]:2055"
    assert got.template_id == 268


def test_ona_endpoint_golden_values() -> None:
    values: dict[str, object] = {
        "virtualStationName": "STATION-102010",
        "nvzFlowUDID": UDID,
        "nvzFlowOSName": "Mac OS X",
        "nvzFlowOSVersion": "10.12.6",
        "nvzFlowOSEdition": "Sierra",
        "nvzFlowSystemManufacturer": "-",
        "nvzFlowSystemType": "x64",
    }
    got = normalise(Rec(values, template_id=262))
    assert got == EndpointRecord(
        udid=UDID.hex(),
        station_name="STATION-102010",
        os_name="Mac OS X",
        os_version="10.12.6",
        os_edition="Sierra",
        manufacturer="-",
        system_type="x64",
        first_seen=1491362800.0,
        last_seen=1491362800.0,
        exporter="udp://192.168.0.10:50000",
    )


def test_interface_record_keeps_unknowns() -> None:
    values: dict[str, object] = {
        "nvzFlowUDID": UDID,
        "nvzFlowInterfaceInfoUID": 6,
        "nvzFlowInterfaceIndex": 4,
        "nvzFlowInterfaceType": 1,
        "nvzFlowInterfaceName": "en0",
        "nvzFlowInterfaceDetailsList": ["Wi-Fi", b"\x01\x02"],
    }
    rec = Rec(values, template_id=266, raw_unknown={(9, 12360): b"\xde\xad"})
    got = normalise(rec)
    assert got == InterfaceRecord(
        udid=UDID.hex(),
        interface_uid=6,
        interface_index=4,
        interface_type=1,
        interface_name="en0",
        first_seen=1491362800.0,
        last_seen=1491362800.0,
        exporter="udp://192.168.0.10:50000",
        extra={
            "nvzFlowInterfaceDetailsList": ["Wi-Fi", "0102"],
            "unknown": {"9:12360": "dead"},
        },
    )


def test_kind_is_decided_by_content_not_template_id() -> None:
    # An endpoint-shaped record under the flow template id is still an endpoint, and vice versa.
    endpoint = normalise(Rec({"nvzFlowUDID": UDID, "nvzFlowOSName": "Linux"}, template_id=267))
    assert isinstance(endpoint, EndpointRecord)
    flow = normalise(Rec(ona_flow_values(), template_id=262))
    assert isinstance(flow, FlowRecord)
    # A UDID alone, or an interface UID without details, is neither.
    assert isinstance(normalise(Rec({"nvzFlowUDID": UDID})), GenericRecord)
    assert isinstance(
        normalise(Rec({"nvzFlowUDID": UDID, "nvzFlowInterfaceInfoUID": 1})), GenericRecord
    )


def test_generic_record_is_json_safe() -> None:
    values: dict[str, object] = {
        "meteringProcessId": 7,
        "exporterIPv4Address": ipaddress.IPv4Address("192.0.2.1"),
        "paddingOctets": b"\x00\x01",
        "observationTimeMilliseconds": dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        "naive": dt.datetime(2020, 1, 1),
        "nested": [{"k": (1, 2)}],
        "nvzFlowUDID": UDID,
        "absent": None,
        "weird": complex(1, 2),
    }
    got = normalise(Rec(values, template_id=256, raw_unknown={(0, 999): b"\x01"}))
    assert got == GenericRecord(
        time=1491362800.0,
        exporter="udp://192.168.0.10:50000",
        odid=127,
        template_id=256,
        udid=UDID.hex(),
        values={
            "meteringProcessId": 7,
            "exporterIPv4Address": "192.0.2.1",
            "paddingOctets": "0001",
            "observationTimeMilliseconds": 1577836800.0,
            "naive": 1577836800.0,
            "nested": [{"k": [1, 2]}],
            "nvzFlowUDID": UDID.hex(),
            "weird": "(1+2j)",
            "unknown": {"0:999": "01"},
        },
    )


def test_standard_exporter_flow() -> None:
    values: dict[str, object] = {
        "sourceIPv4Address": ipaddress.IPv4Address("10.0.0.1"),
        "destinationIPv4Address": ipaddress.IPv4Address("10.0.0.2"),
        "sourceTransportPort": 40000,
        "destinationTransportPort": 443,
        "protocolIdentifier": 6,
        "flowStartSeconds": 1000.0,  # Less precise than the milliseconds: ignored.
        "flowStartMilliseconds": 1000.25,
        "flowEndMilliseconds": 1002.5,
        "octetDeltaCount": 740,
        "packetDeltaCount": 6,
        "packetTotalCount": 99,
        "ingressInterface": 3,
    }
    got = normalise(Rec(values, template_id=1024))
    assert isinstance(got, FlowRecord)
    assert (got.time_start, got.time_end) == (1000.25, 1002.5)
    assert (got.octets, got.packets, got.bytes_in, got.bytes_out) == (740, 6, None, None)
    assert got.extra == {"ingressInterface": 3}
    assert got.user is None
    assert got.modules == ()


def test_times_fallbacks_and_nvzflow_milliseconds() -> None:
    base: dict[str, object] = {"sourceIPv4Address": "10.0.0.1", "destinationIPv4Address": "1.1.1.1"}
    got = normalise(Rec(base))
    assert isinstance(got, FlowRecord)
    assert (got.time_start, got.time_end) == (1491362800.0, 1491362800.0)
    got = normalise(Rec({**base, "flowEndSeconds": 50.0}))
    assert isinstance(got, FlowRecord)
    assert (got.time_start, got.time_end) == (50.0, 50.0)
    got = normalise(Rec({**base, "flowStartSeconds": 40, "nvzFlowEndMsec": 60500}))
    assert isinstance(got, FlowRecord)
    assert (got.time_start, got.time_end) == (40.0, 60.5)
    got = normalise(Rec({**base, "flowStartSeconds": dt.datetime(1970, 1, 1, 0, 1)}))
    assert isinstance(got, FlowRecord)
    assert got.time_start == 60.0


def test_unconvertible_values_are_kept_in_extra() -> None:
    values = ona_flow_values()
    values["nvzFlowInterfaceInfoUID"] = b"\x00\x06"  # Wrong length: the decoder kept bytes.
    values["nvzFlowProcessName"] = b"caf\xc3\xa9 \xff"  # Ill-formed UTF-8: kept as bytes.
    values["nvzFlowUDID"] = "not hex"
    values["nvzFlowProcessHash"] = "ABCD"
    values["sourceTransportPort"] = True
    values["nvzFlowModuleHashList"] = MHASHES[:3]
    values["nvzFlowModuleNameList"] = "not a list"
    values["nvzFlowOSName"] = "Windows"  # Endpoint field on a flow: goes to extra by name.
    got = normalise(Rec(values))
    assert isinstance(got, FlowRecord)
    assert got.interface_uid is None
    assert got.process_name == "café \ufffd"
    assert got.udid is None
    assert got.process_hash == "abcd"
    assert got.src_port is None
    assert got.modules == tuple(Module(None, h.hex()) for h in MHASHES[:3])
    assert got.extra == {
        "nvzFlowInterfaceInfoUID": "0006",
        "nvzFlowUDID": "not hex",
        "sourceTransportPort": True,
        "nvzFlowModuleNameList": "not a list",
        "os_name": "Windows",
    }


def test_split_account() -> None:
    assert split_account("MYNVM\\dummy11") == ("MYNVM", "dummy11")
    assert split_account("NT AUTHORITY\\NETWORK SERVICE") == ("NT AUTHORITY", "NETWORK SERVICE")
    assert split_account("a\\b\\c") == ("a", "b\\c")
    assert split_account("root") == (None, "root")
    assert split_account(None) == (None, None)


def test_field_map_targets_are_known() -> None:
    targets = {spec[0] for spec in FIELD_MAP.values()}
    known = (
        set(FlowRecord.__dataclass_fields__)
        | set(EndpointRecord.__dataclass_fields__)
        | set(InterfaceRecord.__dataclass_fields__)
        | {"module_names", "module_hashes"}
    )
    assert targets <= known


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=40),
    st.lists(st.one_of(st.text(max_size=4), st.binary(max_size=4)), max_size=3),
    st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1)),
)


@given(st.dictionaries(st.sampled_from([*FIELD_MAP, "other"]), _values, max_size=12))
def test_normalise_never_fails_and_extra_is_json(values: dict[str, object]) -> None:
    import json

    got = normalise(Rec(values))
    payload = got.values if isinstance(got, GenericRecord) else got.extra
    json.dumps(payload)
    assert json_safe(payload) == payload
