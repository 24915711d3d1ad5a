"""Message and set headers, TCP stream splitting, template records (RFC 7011 §3, §8)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from ipfix_testlib import FLOW, load_vector, pen9

from ocgate.errors import BadIpfix
from ocgate.nvm.ipfix import (
    MAX_FIELDS_PER_TEMPLATE,
    FieldSpec,
    Template,
    TemplateWithdrawal,
    encode_data_set,
    encode_message,
    encode_set,
    encode_template_set,
    encode_withdrawal_set,
    parse_template_record_untrusted,
    parse_template_set_untrusted,
    pull_message_untrusted,
    split_stream_untrusted,
)


def test_header_fields_and_sets() -> None:
    msg = encode_message(
        [encode_template_set([FLOW]), encode_set(300, b"\x01\x02")],
        export_time=0x58E463CE,
        sequence=7,
        observation_domain_id=127,
    )
    header, sets = pull_message_untrusted(msg)
    assert (header.length, header.export_time, header.sequence) == (len(msg), 0x58E463CE, 7)
    assert header.observation_domain_id == 127
    assert [s.set_id for s in sets] == [2, 300]
    assert sets[1].body == b"\x01\x02"


def test_header_only_message_has_no_sets() -> None:
    assert pull_message_untrusted(encode_message([]))[1] == []


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x0a" + b"\x00" * 10, "shorter than"),
        (struct.pack("!HHIII", 9, 16, 0, 0, 0), "version 9"),
        (struct.pack("!HHIII", 10, 20, 0, 0, 0), "differs"),
        (struct.pack("!HHIII", 10, 17, 0, 0, 0) + b"\x00", "trailing"),
        (struct.pack("!HHIIIHH", 10, 20, 0, 0, 0, 256, 3), "length 3 < 4"),
        (struct.pack("!HHIIIHH", 10, 20, 0, 0, 0, 256, 8), "past the message"),
    ],
)
def test_malformed_headers(data: bytes, match: str) -> None:
    with pytest.raises(BadIpfix, match=match):
        pull_message_untrusted(data)


def test_split_stream() -> None:
    a = encode_message([encode_template_set([FLOW])], sequence=1)
    b = encode_message([], sequence=2)
    messages, rest = split_stream_untrusted(a + b + b[:5])
    assert messages == [a, b]
    assert rest == b[:5]
    assert split_stream_untrusted(b"\x00\x0a") == ([], b"\x00\x0a")


@pytest.mark.parametrize(
    "data", [b"\x00\x09\x00\x20", b"\x00\x0a\x00\x0f" + bytes(12), b"GET / HTTP/1.1\r\n"]
)
def test_split_stream_desync(data: bytes) -> None:
    with pytest.raises(BadIpfix, match="desynchronised"):
        split_stream_untrusted(data)


def test_template_roundtrip_with_enterprise_and_varlen() -> None:
    template = Template(
        300, (FieldSpec(8, 4), pen9(12332, 20), pen9(12333, 0xFFFF), FieldSpec(999, 3, 4242))
    )
    body = template.to_bytes()
    assert body[4:8] == b"\x00\x08\x00\x04"
    assert body[8:16] == b"\xb0\x2c\x00\x14\x00\x00\x00\x09"  # E bit | 12332, 20, PEN 9.
    parsed, end = parse_template_record_untrusted(body, 0, options=False)
    assert parsed == template
    assert end == len(body)


def test_options_template_roundtrip() -> None:
    template = Template(256, (FieldSpec(143, 4), FieldSpec(41, 8), FieldSpec(42, 8)), 1)
    assert template.options
    records = parse_template_set_untrusted(template.to_bytes(), options=True)
    assert records == [template]


def test_withdrawal_records() -> None:
    records = parse_template_set_untrusted(struct.pack("!HHHH", 300, 0, 2, 0), options=False)
    assert records == [TemplateWithdrawal(300, False), TemplateWithdrawal(2, False)]
    assert not records[0].withdraw_all
    assert records[1].withdraw_all
    set3 = encode_withdrawal_set([3], options=True)
    assert parse_template_set_untrusted(set3[4:], options=True) == [TemplateWithdrawal(3, True)]


@pytest.mark.parametrize("padding", [b"", b"\x00", b"\x00\x00\x00", b"\x00" * 8])
def test_template_set_padding(padding: bytes) -> None:
    assert parse_template_set_untrusted(FLOW.to_bytes() + padding, options=False) == [FLOW]


@pytest.mark.parametrize(
    ("body", "options", "match"),
    [
        (struct.pack("!HHHH", 255, 1, 8, 4), False, "< 256"),
        (struct.pack("!HHHHHH", 256, 1, 0, 8, 4, 0), True, "scope count 0"),
        (struct.pack("!HHHHH", 256, 1, 2, 8, 4), True, "scope count 2"),
        (struct.pack("!HHHH", 256, 2, 8, 4), False, "field specifier runs past"),
        (struct.pack("!HHHH", 256, 1, 0x8008, 4) + b"\x00\x00", False, "enterprise number"),
        (struct.pack("!HHHH", 256, 1, 8, 0), False, "empty records"),
        (struct.pack("!HH", 256, MAX_FIELDS_PER_TEMPLATE + 1), False, "cap"),
        (struct.pack("!HHH", 256, 1, 1), True, "runs past"),
        (b"\x01\x00\x00", False, None),  # Three bytes: padding, nothing parsed.
        (b"\x01", False, None),
    ],
)
def test_malformed_template_records(body: bytes, options: bool, match: str | None) -> None:
    if match is None:
        assert parse_template_set_untrusted(body, options=options) == []
        return
    with pytest.raises(BadIpfix, match=match):
        parse_template_set_untrusted(body, options=options)


def test_truncated_template_header() -> None:
    with pytest.raises(BadIpfix, match="header runs past"):
        parse_template_record_untrusted(b"\x01\x00", 0, options=False)


def test_every_prefix_of_the_ona_templates_parses_or_fails_cleanly() -> None:
    message = load_vector("ona_nvzflow_templates")
    body = pull_message_untrusted(message)[1][0].body
    assert len(parse_template_set_untrusted(body, options=False)) == 4
    for cut in range(len(body)):
        with contextlib.suppress(BadIpfix):
            parse_template_set_untrusted(body[:cut], options=False)
    for cut in range(len(message)):
        with pytest.raises(BadIpfix):
            pull_message_untrusted(message[:cut])


def test_encode_data_set_padding_is_in_the_set_length() -> None:
    data_set = encode_data_set(FLOW, [], padding=3)
    assert data_set == b"\x04\x00\x00\x07\x00\x00\x00"
