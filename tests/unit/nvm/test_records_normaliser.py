"""The compiled :class:`Normaliser` gives exactly what the reference :func:`normalise` gives."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_records import MHASHES, MODULES, UDID, Exporter, Rec, ona_flow_values

from ocgate.nvm._normaliser import Normaliser
from ocgate.nvm._records import FIELD_MAP, FlowRecord, Module, normalise


def _same(normaliser: Normaliser, rec: Rec) -> None:
    got, want = normaliser(rec), normalise(rec)
    assert type(got) is type(want)
    assert got == want
    assert repr(got) == repr(want)  # Same field values, and the same ``extra`` key order.


def test_ona_flow_takes_the_fast_path_and_matches() -> None:
    normaliser = Normaliser()
    for _ in range(3):  # Compile, then reuse the plan and the caches.
        _same(normaliser, Rec(ona_flow_values()))
    assert normaliser.fast == 3


def test_fast_record_is_a_real_frozen_flow_record() -> None:
    got = Normaliser()(Rec(ona_flow_values()))
    assert type(got) is FlowRecord
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.src_port = 1  # type: ignore[misc]
    changed = dataclasses.replace(got, vpn_user="alice")
    assert changed.vpn_user == "alice"
    assert changed.src_addr == got.src_addr
    assert isinstance(got, FlowRecord)
    assert all(type(m) is Module for m in got.modules)
    assert got.modules[0] == Module(MODULES[0], MHASHES[0].hex())


def test_ipv6_leftovers_extras_and_contested_fields() -> None:
    values = ona_flow_values()
    del values["sourceIPv4Address"], values["destinationIPv4Address"]
    values["sourceIPv6Address"] = ipaddress.IPv6Address("2001:db8:0:0::10")
    values["destinationIPv6Address"] = ipaddress.IPv6Address("fe80::1%eth0")
    values["flowStartMilliseconds"] = 1491362774.5  # Beats flowStartSeconds (rank 1 > 0).
    values["nvzFlowEndMsec"] = 1491362775000  # Beats flowEndSeconds (rank 2).
    values["nvzFlowOSName"] = "Linux"  # Mapped, but no flow column: a leftover in ``extra``.
    values["nvzFlowProcessCommandLine"] = "x --password=y"  # Unmapped: ``extra`` by IE name.
    values["nvzFlowLoggedInUser"] = "nobackslash"
    rec = Rec(values, exporter=Exporter("dtls", "2001:db8::10", 2055))
    normaliser = Normaliser()
    _same(normaliser, rec)
    _same(normaliser, rec)
    assert normaliser.fast == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sourceTransportPort", True),  # bool is not an int for the reference.
        ("sourceTransportPort", None),
        ("sourceIPv4Address", "10.0.0.1"),  # Text address: converted by the reference.
        ("sourceIPv4Address", b"\x00"),  # Unconvertible: kept raw in ``extra``.
        ("flowStartSeconds", dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
        ("nvzFlowUDID", "ABCDEF"),
        ("nvzFlowProcessName", b"\xff\xfe"),
        ("nvzFlowModuleNameList", "not a list"),
        ("nvzFlowDestinationHostname", None),
        ("unmappedElement", None),
    ],
)
def test_unusual_values_fall_back_to_the_reference(name: str, value: object) -> None:
    values = ona_flow_values()
    values[name] = value
    normaliser = Normaliser()
    _same(normaliser, Rec(values))
    assert normaliser.fast == 0


def test_unknown_elements_and_other_kinds_use_the_reference() -> None:
    normaliser = Normaliser()
    _same(normaliser, Rec(ona_flow_values(), raw_unknown={(9, 99999): b"\x01"}))
    _same(normaliser, Rec({"nvzFlowUDID": UDID, "nvzFlowOSName": "Linux"}))
    _same(normaliser, Rec({"nvzFlowUDID": UDID}))
    assert normaliser.fast == 0


def test_batch_keeps_order_and_shares_the_exporter_text() -> None:
    normaliser = Normaliser()
    records = [Rec(ona_flow_values(), template_id=t) for t in (300, 301)]
    records.insert(1, Rec({"nvzFlowUDID": UDID}))
    out: list[object] = []
    normaliser.extend(out, records)  # type: ignore[arg-type]
    assert out == [normalise(r) for r in records]


_NAMES = [*sorted(FIELD_MAP), "unmappedElement", "otherThing"]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1)),
    st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1)),
    st.lists(st.one_of(st.text(max_size=4), st.binary(max_size=4)), max_size=3),
    st.datetimes(timezones=st.just(dt.UTC)),
)


@given(
    extra=st.dictionaries(st.sampled_from(_NAMES), _VALUES, max_size=12),
    flow=st.booleans(),
    unknown=st.booleans(),
)
def test_fuzz_compiled_equals_reference(
    extra: dict[str, object], flow: bool, unknown: bool
) -> None:
    values: dict[str, object] = {}
    if flow:
        values["sourceIPv4Address"] = ipaddress.IPv4Address("10.0.0.1")
        values["destinationIPv6Address"] = ipaddress.IPv6Address("2001:db8::1")
    values.update(extra)
    rec = Rec(values, raw_unknown={(9, 1): b"\x02"} if unknown else {})
    normaliser = Normaliser()
    _same(normaliser, rec)
    _same(normaliser, rec)  # Again with the compiled plan and warm caches.


_TYPED = {
    "int": st.integers(0, 2**64 - 1),
    "str": st.text(max_size=8),
    "hex": st.binary(max_size=8),
    "addr": st.one_of(
        st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1)),
        st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1)),
    ),
    "seconds": st.one_of(st.floats(0, 2e9), st.integers(0, 2**32)),
    "millis": st.one_of(st.integers(0, 2**64 - 1), st.floats(0, 2e12)),
    "str_list": st.lists(st.text(max_size=4), max_size=3),
    "hex_list": st.lists(st.binary(max_size=4), max_size=3),
}


@st.composite
def _well_typed(draw: st.DrawFn) -> dict[str, object]:
    names = draw(st.lists(st.sampled_from(_NAMES), max_size=14, unique=True))
    values: dict[str, object] = {}
    for name in ["sourceIPv4Address", "destinationIPv4Address", *names]:
        spec = FIELD_MAP.get(name)
        values[name] = draw(_TYPED[spec[1].value] if spec else st.integers())
    return values


@given(values=_well_typed())
def test_fuzz_well_typed_flows_take_the_fast_path(values: dict[str, object]) -> None:
    normaliser = Normaliser()
    _same(normaliser, Rec(values))
    assert normaliser.fast == 1
