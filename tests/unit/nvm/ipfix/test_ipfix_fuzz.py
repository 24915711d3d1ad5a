"""Fuzz every ``*_untrusted`` parser and the core: only BadIpfix may escape (STYLE rule 5)."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ipfix_testlib import FLOW, UDP, UDP2, drain, load_vector, records_of

from ocgate.errors import BadIpfix
from ocgate.nvm.ipfix import (
    FieldSpec,
    IpfixCollectorCore,
    StoredTemplate,
    Template,
    compile_template,
    decode_basic_list_untrusted,
    encode_data_set,
    encode_message,
    encode_template_set,
    parse_template_record_untrusted,
    parse_template_set_untrusted,
    pull_message_untrusted,
    split_stream_untrusted,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [
    load_vector("ona_nvzflow_templates"),
    load_vector("ona_nvzflow_data_267"),
    load_vector("ona_nvzflow_data_262"),
    encode_message(
        [
            encode_template_set([FLOW]),
            encode_template_set([Template(256, (FieldSpec(143, 4), FieldSpec(41, 8)), 1)]),
            encode_data_set(
                FLOW, [(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"), 1, 2, 6, 3, 4, 5.0, 6.0)]
            ),
        ]
    ),
]
# Fields drawn from the dictionaries' interesting types, plus unknown and enterprise elements.
ELEMENTS = [4, 7, 8, 27, 56, 82, 150, 152, 154, 156, 210, 276, 291, 292, 311, 434, 999]
field_specs = st.builds(
    FieldSpec,
    st.one_of(st.sampled_from(ELEMENTS), st.sampled_from([12332, 12333, 12352, 12353, 12360])),
    st.one_of(st.sampled_from([1, 2, 3, 4, 6, 8, 16, 0xFFFF]), st.integers(0, 40)),
    st.sampled_from([0, 0, 9, 4242]),
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        index = draw(st.integers(0, len(data) - 1))
        data[index] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


inputs = st.one_of(st.binary(max_size=600), mutated())


def _only_bad_ipfix(call: object, *args: object, **kwargs: object) -> None:
    with contextlib.suppress(BadIpfix):
        call(*args, **kwargs)  # type: ignore[operator]


@FUZZ
@given(inputs)
def test_pull_message(data: bytes) -> None:
    _only_bad_ipfix(pull_message_untrusted, data)


@FUZZ
@given(inputs)
def test_split_stream(data: bytes) -> None:
    _only_bad_ipfix(split_stream_untrusted, data)


@FUZZ
@given(inputs, st.booleans())
def test_template_sets(data: bytes, options: bool) -> None:
    _only_bad_ipfix(parse_template_set_untrusted, data, options=options)
    _only_bad_ipfix(parse_template_record_untrusted, data, 0, options=options)


@FUZZ
@given(inputs)
def test_basic_list(data: bytes) -> None:
    _only_bad_ipfix(decode_basic_list_untrusted, data)
    _only_bad_ipfix(decode_basic_list_untrusted, b"\x03\x00\x08\xff\xff" + data)


@FUZZ
@given(st.lists(field_specs, min_size=1, max_size=8), st.binary(max_size=300))
def test_decode_set_with_random_templates(fields: list[FieldSpec], body: bytes) -> None:
    template = Template(256, tuple(fields))
    if template.min_record_length == 0:
        return
    decoder = compile_template(template)
    try:
        records = decoder.decode_set_untrusted(body, UDP, 0, 0, 0)
    except BadIpfix:
        return
    assert len(records) <= len(body)


@FUZZ
@given(st.text(max_size=200))
def test_stored_template_from_json(text: str) -> None:
    _only_bad_ipfix(StoredTemplate.from_json, text)


@FUZZ
@given(st.lists(inputs, max_size=6), st.sampled_from(["udp", "tcp"]))
def test_core_never_raises_and_garbage_does_not_disturb_others(
    garbage: list[bytes], transport: str
) -> None:
    core = IpfixCollectorCore()
    for seed in SEEDS[:1]:
        core.receive_message(seed, UDP, 0.0)
    hostile = UDP2 if transport == "udp" else UDP2.__class__("tcp", UDP2.address, UDP2.port)
    for data in garbage:
        core.receive_message(data, hostile, 0.0)
        core.handle_timer(1.0)
    drain(core)
    core.receive_message(SEEDS[1], UDP, 2.0)
    records = records_of(drain(core))
    assert [r.values["nvzFlowProcessName"] for r in records] == ["svchost.exe"]
    assert core.stats()[UDP].malformed == 0
