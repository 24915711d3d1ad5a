"""The public nvzFlow sample (obsrvbl-oss/ona test fixture; tests/vectors/ipfix/SOURCES.md)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from ipfix_testlib import UDP, drain, load_vector, records_of

from ocgate.nvm.ipfix import (
    CISCO_PEN,
    BasicList,
    DataRecord,
    FieldSpec,
    IpfixCollectorCore,
    MessageRejected,
    TemplateLearned,
    VarLen,
    encode_data_set,
    encode_message,
    parse_template_set_untrusted,
    pull_message_untrusted,
)

TEMPLATES = load_vector("ona_nvzflow_templates")
DATA_267 = load_vector("ona_nvzflow_data_267")
DATA_262 = load_vector("ona_nvzflow_data_262")
UDID = bytes.fromhex("4ca7d9a79889dc4f18b4cd1b7e9f7e25d0c866a4")
MODULES = [
    "cryptsvc.dll",
    "dhcpcore.dll",
    "termsrv.dll",
    "dnsrslvr.dll",
    "wkssvc.dll",
    "qagentRT.dll",
    "nlasvc.dll",
    "WsmSvc.dll",
    "wecsvc.dll",
    "tapisrv.dll",
]


def decoded(*messages: bytes) -> tuple[list[object], list[DataRecord]]:
    core = IpfixCollectorCore()
    for message in messages:
        core.receive_message(message, UDP, 0.0)
    events = drain(core)
    return list(events), records_of(events)


def test_templates_262_266_267_268() -> None:
    events, _ = decoded(TEMPLATES)
    assert [e.template_id for e in events if isinstance(e, TemplateLearned)] == [
        262,
        267,
        268,
        266,
    ]
    templates = {
        t.template_id: t
        for t in parse_template_set_untrusted(
            pull_message_untrusted(TEMPLATES)[1][0].body, options=False
        )
    }
    t267 = templates[267]
    assert len(t267.fields) == 25  # type: ignore[union-attr]
    assert [(f.enterprise, f.element_id, f.length) for f in t267.fields[:8]] == [  # type: ignore[union-attr]
        (0, 4, 1),
        (0, 8, 4),
        (0, 7, 2),
        (0, 12, 4),
        (0, 11, 2),
        (0, 150, 4),
        (0, 151, 4),
        (9, 12332, 20),
    ]
    t268 = templates[268]
    assert [(f.element_id, f.length) for f in t268.fields[1:4]] == [(27, 16), (7, 2), (28, 16)]  # type: ignore[union-attr]
    assert [f.element_id for f in templates[262].fields] == [  # type: ignore[union-attr]
        350,
        12332,
        12334,
        12335,
        12351,
        12336,
        12337,
    ]
    assert [f.element_id for f in templates[266].fields] == [  # type: ignore[union-attr]
        12332,
        12355,
        12356,
        12357,
        12358,
        12359,
        12360,
    ]


def test_golden_267() -> None:
    _, records = decoded(TEMPLATES, DATA_267)
    (record,) = records
    assert (record.template_id, record.observation_domain_id, record.sequence) == (267, 127, 22)
    v = record.values
    assert v["protocolIdentifier"] == 17
    assert v["sourceIPv4Address"] == IPv4Address("192.168.0.10")
    assert v["sourceTransportPort"] == 43879
    assert v["destinationIPv4Address"] == IPv4Address("192.168.0.11")
    assert v["destinationTransportPort"] == 53
    assert v["flowStartSeconds"] == v["flowEndSeconds"] == 0x58E463D5  # 2017-04-05 03:26:13 UTC
    assert v["flowStartSeconds"] == 1491362773.0
    assert v["nvzFlowUDID"] == UDID
    assert v["nvzFlowLoggedInUser"] == "MYNVM\\dummy11"
    assert v["nvzFlowLoggedInUserAccountType"] == 2
    assert v["nvzFlowProcessAccount"] == "NT AUTHORITY\\NETWORK SERVICE"
    assert v["nvzFlowProcessAccountType"] == 1
    assert v["nvzFlowProcessName"] == "svchost.exe"
    assert v["nvzFlowProcessHash"] == bytes.fromhex(
        "740a46a0f5e0e8c933efd28c9901e54e42792619a8a3a6d11e1f0025a7324bc2"
    )
    assert v["nvzFlowParentProcessAccount"] == "NT AUTHORITY\\SYSTEM"
    assert v["nvzFlowParentProcessAccountType"] == 2
    assert v["nvzFlowParentProcessName"] == "services.exe"
    assert v["nvzFlowParentProcessHash"] == bytes.fromhex(
        "d7bc4ed605b32274b45328fd9914fb0e7b90d869a38f0e6f94fb1bf4e9e2b407"
    )
    assert v["nvzFlowL4ByteCountIn"] == 100
    assert v["nvzFlowL4ByteCountOut"] == 41
    assert v["nvzFlowDNSSuffix"] == "dummy.du"
    assert v["nvzFlowDestinationHostname"] == "Unknown"
    assert v["nvzFlowInterfaceInfoUID"] == 6
    assert v["nvzFlowModuleNameList"] == MODULES
    hashes = v["nvzFlowModuleHashList"]
    assert isinstance(hashes, list)
    assert len(hashes) == 10
    assert all(isinstance(h, bytes) and len(h) == 32 for h in hashes)
    assert hashes[0].hex() == "340df730e88f8b6a4ef542f620eba2a720546afab4dffa00f066b7610a1026c5"
    assert hashes[9].hex() == "fcff02e466d2501630b452627fb218c01e5245a0921ee3d2117e7fd63ac7e98e"
    assert len(v) == 25
    assert record.raw_unknown == {}


def test_golden_262() -> None:
    _, records = decoded(TEMPLATES, DATA_262)
    (record,) = records
    assert record.values == {
        "virtualStationName": "STATION-102010",
        "nvzFlowUDID": UDID,
        "nvzFlowOSName": "Mac OS X",
        "nvzFlowOSVersion": "10.12.6",
        "nvzFlowOSEdition": "Sierra",
        "nvzFlowSystemManufacturer": "-",
        "nvzFlowSystemType": "x64",
    }


def test_data_before_templates_is_decoded_when_they_arrive() -> None:
    _, records = decoded(DATA_267, TEMPLATES)
    assert len(records) == 1
    assert records[0].values["nvzFlowProcessName"] == "svchost.exe"


def test_every_truncated_prefix_is_rejected() -> None:
    core = IpfixCollectorCore()
    for message in (TEMPLATES, DATA_267, DATA_262):
        for cut in range(len(message)):
            core.receive_message(message[:cut], UDP, 0.0)
            assert [type(e) for e in drain(core)] == [MessageRejected]
    assert len(core.template_cache) == 0


@pytest.mark.parametrize("cut", range(1, 40))
def test_truncated_data_set_inside_a_consistent_message_is_rejected(cut: int) -> None:
    # Shrink the set and the message header together: only the set content is short.
    body = DATA_267[20:-cut]
    set_header = (267).to_bytes(2, "big") + (len(body) + 4).to_bytes(2, "big")
    message = encode_message([set_header + body], sequence=22, observation_domain_id=127)
    events, records = decoded(TEMPLATES, message)
    assert records == []
    assert isinstance(events[-1], MessageRejected)


def test_reencoding_267_is_byte_exact() -> None:
    _, records = decoded(TEMPLATES, DATA_267)
    v = records[0].values
    t267 = next(
        t
        for t in parse_template_set_untrusted(
            pull_message_untrusted(TEMPLATES)[1][0].body, options=False
        )
        if t.template_id == 267
    )
    names = list(v)
    row: list[object] = [v[n] for n in names]
    element = {12352: (12348, 0xFFFF), 12353: (12350, 32)}
    for index, spec in enumerate(t267.fields):  # type: ignore[union-attr]
        if spec.element_id in element:
            eid, length = element[spec.element_id]
            items = tuple(row[index])  # type: ignore[call-overload]
            row[index] = VarLen(BasicList(FieldSpec(eid, length, CISCO_PEN), items))
    data = encode_data_set(t267, [row])  # type: ignore[arg-type]
    message = encode_message([data], export_time=0x58E463D8, sequence=22, observation_domain_id=127)
    assert message == DATA_267
