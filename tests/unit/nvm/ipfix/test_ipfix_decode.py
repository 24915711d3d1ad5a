"""Field decoding: abstract data types, variable-length forms, basicList, unknown IEs (§6-7)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from ipfix_testlib import UDP, pen9

from ocgate.errors import BadIpfix, LocalProtocolError
from ocgate.nvm.ipfix import (
    MAX_LIST_DEPTH,
    BasicList,
    DataRecord,
    DataType,
    FieldSpec,
    Template,
    VarLen,
    compile_template,
    decode_basic_list_untrusted,
    element_by_name,
    element_info,
    encode_record,
    encode_value,
    encode_varlen,
)

V = 0xFFFF


def decode(template: Template, body: bytes) -> list[DataRecord]:
    return compile_template(template).decode_set_untrusted(body, UDP, 1, 1000, 5)


def one(template: Template, body: bytes) -> DataRecord:
    records = decode(template, body)
    assert len(records) == 1
    return records[0]


@pytest.mark.parametrize(
    ("element_id", "length", "raw", "expected"),
    [
        (1, 8, (2**64 - 1).to_bytes(8, "big"), 2**64 - 1),  # unsigned64
        (1, 4, b"\x00\x00\x01\x00", 256),  # unsigned64, reduced size
        (1, 3, b"\x01\x00\x00", 65536),  # unsigned64, odd reduced size
        (4, 1, b"\x11", 17),  # unsigned8
        (7, 2, b"\xab\x67", 43879),  # unsigned16
        (434, 4, b"\xff\xff\xff\xfe", -2),  # signed32
        (434, 3, b"\xff\xff\xfe", -2),  # signed32, reduced size
        (311, 8, struct.pack("!d", 0.25), 0.25),  # float64
        (311, 4, struct.pack("!f", 0.5), 0.5),  # float64, reduced to float32
        (276, 1, b"\x01", True),  # boolean
        (276, 1, b"\x02", False),
        (276, 1, b"\x07", 7),  # boolean out of range: kept as int
        (56, 6, b"\x00\x11\x22\xaa\xbb\xcc", "00:11:22:aa:bb:cc"),  # macAddress
        (82, 4, b"eth0", "eth0"),  # string
        (8, 4, b"\xc0\xa8\x00\x0a", IPv4Address("192.168.0.10")),
        (27, 16, IPv6Address("2001:db8::1").packed, IPv6Address("2001:db8::1")),
        (150, 4, b"\x58\xe4\x63\xd5", 1491362773.0),  # dateTimeSeconds
        (152, 8, (1_700_000_000_123).to_bytes(8, "big"), 1_700_000_000.123),  # milliseconds
        (154, 8, ((2208988800 + 10) << 32 | 0x80000000).to_bytes(8, "big"), 10.5),  # µs, NTP
        (156, 8, ((2208988800 + 10) << 32 | 0x40000000).to_bytes(8, "big"), 10.25),  # ns, NTP
        (210, 3, b"\x00\x00\x00", b"\x00\x00\x00"),  # octetArray
        (8, 3, b"\x01\x02\x03", b"\x01\x02\x03"),  # ipv4Address of a wrong length: raw
        (292, 2, b"\x01\x02", b"\x01\x02"),  # subTemplateList: raw
    ],
)
def test_fixed_value_conversion(element_id: int, length: int, raw: bytes, expected: object) -> None:
    record = one(Template(256, (FieldSpec(element_id, length),)), raw)
    name = element_info(0, element_id).name  # type: ignore[union-attr]
    value = record.values[name]
    assert value == expected
    assert type(value) is type(expected)
    # Same value through the variable-length path.
    record = one(Template(256, (FieldSpec(element_id, V),)), encode_varlen(raw))
    assert record.values[name] == expected


def test_microseconds_ignore_low_fraction_bits() -> None:
    ntp = ((2208988800 + 1) << 32 | 0x7FF).to_bytes(8, "big")
    assert one(Template(256, (FieldSpec(154, 8),)), ntp).values["flowStartMicroseconds"] == 1.0


def test_record_metadata() -> None:
    record = one(Template(300, (FieldSpec(4, 1),)), b"\x06")
    assert (record.exporter, record.observation_domain_id, record.template_id) == (UDP, 1, 300)
    assert (record.export_time, record.sequence) == (1000, 5)
    assert not record.options
    assert record.raw_unknown == {}
    assert record.invalid_strings == frozenset()


@pytest.mark.parametrize("long_form", [False, True])
def test_variable_length_both_forms(long_form: bool) -> None:
    template = Template(256, (pen9(12340, V), FieldSpec(4, 1)))
    body = encode_record(template, ["svchost.exe", 17], long_form=long_form)
    assert body[0] == (255 if long_form else 11)
    record = one(template, body)
    assert record.values == {"nvzFlowProcessName": "svchost.exe", "protocolIdentifier": 17}


def test_long_form_for_long_and_empty_values() -> None:
    template = Template(256, (FieldSpec(82, V), FieldSpec(83, V)))
    long_value = "x" * 300
    body = encode_record(template, [long_value, VarLen("", long_form=True)])
    assert body[:3] == b"\xff\x01\x2c"
    assert body[-3:] == b"\xff\x00\x00"
    assert one(template, body).values == {"interfaceName": long_value, "interfaceDescription": ""}


def test_padding_after_records_is_skipped() -> None:
    template = Template(256, (FieldSpec(8, 4), FieldSpec(4, 1)))
    body = b"\x0a\x00\x00\x01\x06" * 2 + b"\x00\x00\x00\x00"
    assert len(decode(template, body)) == 2
    mixed = Template(256, (FieldSpec(82, V), FieldSpec(8, 4), FieldSpec(4, 1)))
    body = encode_record(mixed, ["a", IPv4Address("10.0.0.1"), 6]) + b"\x00" * 5
    assert len(decode(mixed, body)) == 1


def test_non_zero_padding_is_not_malformed() -> None:
    template = Template(256, (FieldSpec(8, 4),))
    assert len(decode(template, b"\x0a\x00\x00\x01\xff\xff")) == 1


@pytest.mark.parametrize(
    ("fields", "body", "match"),
    [
        ((FieldSpec(82, V), FieldSpec(8, 4)), b"\x05abcd", "value runs past"),
        ((FieldSpec(82, V), FieldSpec(8, 4)), b"\xff\x00\x09ab", "value runs past"),
        ((FieldSpec(8, 4), FieldSpec(82, V)), b"\x0a\x00\x00\x01\xff\x00", "long variable"),
        ((FieldSpec(82, V), FieldSpec(8, 4), FieldSpec(83, V)), b"\x05abcde\x0a", "fixed fields"),
        ((FieldSpec(82, V), FieldSpec(8, 4), FieldSpec(83, V)), b"\x01a\x0a\x00\x00\x01", "prefix"),
    ],
)
def test_fields_past_the_set_are_malformed(
    fields: tuple[FieldSpec, ...], body: bytes, match: str
) -> None:
    with pytest.raises(BadIpfix, match=match):
        decode(Template(256, fields), body)


def test_short_remainder_is_padding() -> None:
    template = Template(256, (FieldSpec(82, V), FieldSpec(8, 4)))
    assert decode(template, b"\x05abc") == []


def test_unknown_elements_are_kept_raw() -> None:
    template = Template(
        256,
        (
            FieldSpec(4, 1),
            FieldSpec(999, 2, 4242),
            pen9(12360, V),
            FieldSpec(32767, 3),
            pen9(12232, 4),  # Cisco AVC, not nvzFlow (nvm-ipfix.md §2.3): unknown to us.
        ),
    )
    body = b"\x11\xbe\xef" + b"\x02hi" + b"abc" + b"\x00\x00\x00\x01"
    record = one(template, body)
    assert record.values == {"protocolIdentifier": 17}
    assert record.raw_unknown == {
        (4242, 999): b"\xbe\xef",
        (9, 12360): b"hi",
        (0, 32767): b"abc",
        (9, 12232): b"\x00\x00\x00\x01",
    }
    fixed = Template(256, (FieldSpec(4, 1), FieldSpec(999, 2, 4242)))
    assert one(fixed, b"\x11\xbe\xef").raw_unknown == {(4242, 999): b"\xbe\xef"}


def test_invalid_utf8_is_kept_raw_and_flagged() -> None:
    template = Template(256, (FieldSpec(82, V), FieldSpec(4, 1)))
    record = one(template, b"\x02\xff\xfe\x11")
    assert record.values["interfaceName"] == b"\xff\xfe"
    assert record.invalid_strings == frozenset({"interfaceName"})
    fixed = Template(256, (FieldSpec(82, 2), FieldSpec(8, 4), FieldSpec(83, 2)))
    record = one(fixed, b"\xff\xfe\x0a\x00\x00\x01ok")
    assert record.values["interfaceName"] == b"\xff\xfe"
    assert record.values["interfaceDescription"] == "ok"
    assert record.invalid_strings == frozenset({"interfaceName"})
    record = one(fixed, b"ok\x0a\x00\x00\x01\xc3\x28")
    assert record.values["interfaceDescription"] == b"\xc3\x28"
    assert record.invalid_strings == frozenset({"interfaceDescription"})
    mixed = Template(256, (FieldSpec(83, V), FieldSpec(82, 2), FieldSpec(8, 4)))
    record = one(mixed, b"\x00\xff\xfe\x0a\x00\x00\x01")
    assert record.invalid_strings == frozenset({"interfaceName"})
    assert record.values["sourceIPv4Address"] == IPv4Address("10.0.0.1")


def test_repeated_element_last_wins() -> None:
    template = Template(256, (FieldSpec(4, 1), FieldSpec(4, 1)))
    assert one(template, b"\x06\x11").values == {"protocolIdentifier": 17}


def test_options_record_scope_fields() -> None:
    template = Template(256, (FieldSpec(143, 4), FieldSpec(999, 2, 77), FieldSpec(41, 8)), 2)
    record = one(template, b"\x00\x00\x00\x01\x00\x00" + (5).to_bytes(8, "big"))
    assert record.options
    assert record.scope_fields == ("meteringProcessId",)
    assert record.values == {"meteringProcessId": 1, "exportedMessageTotalCount": 5}


# --- basicList (RFC 6313) -----------------------------------------------------------------------


def test_module_name_list_variable_elements_with_long_prefixes() -> None:
    names = ("cryptsvc.dll", "dhcpcore.dll", "")
    value = BasicList(pen9(12348, V), names, long_prefixes=True)
    content = encode_value(pen9(12352, V), value)
    assert content[:9] == b"\x03\xb0\x3c\xff\xff\x00\x00\x00\x09"
    assert content[9:12] == b"\xff\x00\x0c"
    assert decode_basic_list_untrusted(content) == list(names)
    template = Template(256, (pen9(12352, V),))
    body = encode_record(template, [value], long_form=True)
    assert body[0] == 255  # NVM puts the list itself behind the 3-byte prefix.
    assert one(template, body).values["nvzFlowModuleNameList"] == list(names)


def test_module_hash_list_fixed_32_byte_elements() -> None:
    hashes = (bytes(range(32)), bytes(32))
    content = encode_value(pen9(12353, V), BasicList(pen9(12350, 32), hashes))
    assert content[:9] == b"\x03\xb0\x3e\x00\x20\x00\x00\x00\x09"
    assert decode_basic_list_untrusted(content) == list(hashes)
    with pytest.raises(BadIpfix, match="whole number"):
        decode_basic_list_untrusted(content[:-1])


def test_basic_list_of_iana_elements_and_empty_lists() -> None:
    addresses = (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"))
    content = encode_value(FieldSpec(291, V), BasicList(FieldSpec(8, 4), addresses, semantic=4))
    assert content[:5] == b"\x04\x00\x08\x00\x04"
    assert decode_basic_list_untrusted(content) == list(addresses)
    assert decode_basic_list_untrusted(b"\x03\x00\x08\x00\x04") == []
    assert decode_basic_list_untrusted(b"\x03\x00\x08\x00\x00") == []
    with pytest.raises(BadIpfix, match="zero-length"):
        decode_basic_list_untrusted(b"\x03\x00\x08\x00\x00\x01")
    assert decode_basic_list_untrusted(b"\xff\x7f\xff\x00\x01\x05\x06") == [b"\x05", b"\x06"]


def test_basic_list_with_fixed_length_in_the_template() -> None:
    content = encode_value(FieldSpec(291, V), BasicList(FieldSpec(4, 1), (6, 17)))
    template = Template(256, (FieldSpec(291, len(content)),))
    assert one(template, content).values["basicList"] == [6, 17]


def test_nested_basic_lists_are_bounded() -> None:
    inner = BasicList(FieldSpec(4, 1), (6,))
    for _ in range(MAX_LIST_DEPTH - 1):
        inner = BasicList(FieldSpec(291, V), (inner,))
    content = encode_value(FieldSpec(291, V), inner)
    value: object = decode_basic_list_untrusted(content)
    for _ in range(MAX_LIST_DEPTH - 1):
        assert isinstance(value, list)
        value = value[0]
    assert value == [6]
    deeper = encode_value(FieldSpec(291, V), BasicList(FieldSpec(291, V), (inner,)))
    with pytest.raises(BadIpfix, match="nested deeper"):
        decode_basic_list_untrusted(deeper)


@pytest.mark.parametrize(
    "content",
    [
        b"\x03\xb0",  # Header truncated.
        b"\x03\xb0\x3c\xff\xff\x00\x00",  # PEN truncated.
        b"\x03\xb0\x3c\xff\xff\x00\x00\x00\x09\x05ab",  # Element past the list.
        b"\x03\xb0\x3c\xff\xff\x00\x00\x00\x09\xff\x00",  # Long prefix truncated.
    ],
)
def test_malformed_basic_lists(content: bytes) -> None:
    with pytest.raises(BadIpfix):
        decode_basic_list_untrusted(content)
    template = Template(256, (pen9(12352, V),))
    with pytest.raises(BadIpfix):
        decode(template, encode_varlen(content))


def test_invalid_utf8_inside_a_list_keeps_the_list_raw() -> None:
    content = b"\x03\xb0\x3c\xff\xff\x00\x00\x00\x09\x02\xff\xfe"
    record = one(Template(256, (pen9(12352, V),)), encode_varlen(content))
    assert record.values["nvzFlowModuleNameList"] == content
    assert record.invalid_strings == frozenset({"nvzFlowModuleNameList"})


def test_fuzz_invalid_utf8_list_element_raises_only_bad_ipfix() -> None:
    """fuzz_ipfix_message: a basicList of applicationName (IE 96, a string) whose first element
    is ``ff`` let UnicodeDecodeError escape decode_basic_list_untrusted (tests/vectors/fuzz)."""
    content = Path(__file__).parents[3] / "vectors" / "fuzz" / "ipfix-basic-list-invalid-utf8.bin"
    content_bytes = content.read_bytes()
    with pytest.raises(BadIpfix, match="not UTF-8"):
        decode_basic_list_untrusted(content_bytes)
    # In a record the list is kept raw and flagged, like any ill-formed string.
    record = one(Template(256, (FieldSpec(291, V),)), encode_varlen(content_bytes))
    assert record.values["basicList"] == content_bytes
    assert record.invalid_strings == frozenset({"basicList"})
    nested = b"\x03\x01\x23\xff\xff" + bytes((len(content_bytes),)) + content_bytes
    record = one(Template(256, (FieldSpec(291, V),)), encode_varlen(nested))
    assert record.values["basicList"] == nested
    assert record.invalid_strings == frozenset({"basicList"})


# --- Dictionaries and encoder misuse -------------------------------------------------------------


def test_dictionaries() -> None:
    assert element_info(0, 8).name == "sourceIPv4Address"  # type: ignore[union-attr]
    assert element_info(9, 12332).name == "nvzFlowUDID"  # type: ignore[union-attr]
    assert element_by_name("nvzFlowModuleNameList").data_type is DataType.BASIC_LIST
    for element_id in range(12232, 12245):  # Cisco AVC IDs, never nvzFlow (§2.3).
        assert element_info(9, element_id) is None
    required = [*range(1, 33), *range(52, 65), 136, *range(148, 164), *range(176, 180)]
    required += [184, 185, 186, 192, 210, 239, 350, 130, 131, 143, 160, 21, 22]
    assert all(element_info(0, i) is not None for i in required)


def test_encoder_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        encode_value(FieldSpec(8, 4), b"\x00")
    with pytest.raises(LocalProtocolError):
        encode_value(FieldSpec(4, 1), 300)
    with pytest.raises(LocalProtocolError):
        encode_value(FieldSpec(4, 1), object())
    with pytest.raises(LocalProtocolError):
        encode_record(Template(256, (FieldSpec(4, 1),)), [])
    with pytest.raises(LocalProtocolError):
        encode_varlen(bytes(70000))
