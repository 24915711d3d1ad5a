"""The collector core: templates, withdrawal, buffering, sequence numbers, scope, stats (§8-9)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from ipfix_testlib import FLOW, TCP, UDP, UDP2, drain, records_of

from ocgate.errors import BadIpfix
from ocgate.nvm.ipfix import (
    ExporterKey,
    ExporterStats,
    FieldSpec,
    IpfixCollectorCore,
    MessageRejected,
    RecordsDecoded,
    SequenceGap,
    StoredTemplate,
    Template,
    TemplateCache,
    TemplateLearned,
    TemplateWithdrawn,
    encode_data_set,
    encode_message,
    encode_set,
    encode_template_set,
    encode_withdrawal_set,
)

ROW = (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"), 40000, 443, 6, 740, 6, 1.5, 2.5)
OPTS = Template(256, (FieldSpec(143, 4), FieldSpec(41, 8)), 1)


def flow_rows(n: int, base: int = 0) -> list[tuple[object, ...]]:
    return [(*ROW[:5], base + i, *ROW[6:]) for i in range(n)]


def data_msg(n: int, seq: int, *, odid: int = 0, template: Template = FLOW) -> bytes:
    rows = flow_rows(n, seq) if template is FLOW else [(1, 2)] * n
    return encode_message(
        [encode_data_set(template, rows)], sequence=seq, observation_domain_id=odid
    )


def tmpl_msg(*templates: Template, seq: int = 0, odid: int = 0) -> bytes:
    return encode_message(
        [encode_template_set(list(templates))], sequence=seq, observation_domain_id=odid
    )


def feed(core: IpfixCollectorCore, *messages: bytes, exporter: ExporterKey = UDP) -> list[object]:
    for message in messages:
        core.receive_message(message, exporter, 100.0)
    return list(drain(core))


def test_template_then_data_in_one_message() -> None:
    core = IpfixCollectorCore()
    msg = encode_message(
        [encode_template_set([FLOW]), encode_data_set(FLOW, flow_rows(3))],
        export_time=1_700_000_000,
        sequence=10,
        observation_domain_id=5,
    )
    events = feed(core, msg)
    assert [type(e) for e in events] == [TemplateLearned, RecordsDecoded]
    assert events[0] == TemplateLearned(UDP, 5, 1024, redefined=False, options=False)
    records = records_of(events)  # type: ignore[arg-type]
    assert [r.values["octetDeltaCount"] for r in records] == [0, 1, 2]
    first = records[0]
    assert first.values["sourceIPv4Address"] == IPv4Address("10.0.0.1")
    assert first.values["flowStartMilliseconds"] == 1.5
    assert (first.export_time, first.sequence, first.observation_domain_id) == (
        1_700_000_000,
        10,
        5,
    )
    assert core.stats()[UDP] == ExporterStats(messages=1, records=3, templates=1)


def test_identical_refresh_is_silent_and_redefinition_is_reported() -> None:
    core = IpfixCollectorCore()
    feed(core, tmpl_msg(FLOW))
    assert feed(core, tmpl_msg(FLOW)) == []
    changed = Template(1024, (FieldSpec(4, 1),))
    events = feed(core, tmpl_msg(changed))
    assert events == [TemplateLearned(UDP, 0, 1024, redefined=True, options=False)]
    records = records_of(feed(core, encode_message([encode_set(1024, b"\x11")])))  # type: ignore[arg-type]
    assert records[0].values == {"protocolIdentifier": 17}
    assert core.stats()[UDP].templates == 3


def test_scope_isolation_exporters_and_domains() -> None:
    core = IpfixCollectorCore()
    other = Template(1024, (FieldSpec(4, 1),))
    feed(core, tmpl_msg(FLOW, odid=1))
    feed(core, tmpl_msg(other, odid=2))
    feed(core, tmpl_msg(other), exporter=UDP2)
    feed(core, tmpl_msg(other), exporter=ExporterKey("tcp", "192.0.2.1", 40000))
    records = records_of(feed(core, data_msg(1, 0, odid=1)))  # type: ignore[arg-type]
    assert records[0].values["sourceTransportPort"] == 40000
    records = records_of(  # type: ignore[arg-type]
        feed(core, encode_message([encode_set(1024, b"\x06")], observation_domain_id=2))
    )
    assert records[0].values == {"protocolIdentifier": 6}
    # The same ID on odid 0 of UDP is unknown: the UDP2 and TCP definitions do not leak.
    feed(core, encode_message([encode_set(1024, b"\x06")]))
    assert core.stats()[UDP].unknown_template == 1
    assert len(core.template_cache) == 4


def test_udp_withdrawal_is_ignored() -> None:
    core = IpfixCollectorCore()
    feed(core, tmpl_msg(FLOW))
    events = feed(core, encode_message([encode_withdrawal_set([1024]), encode_withdrawal_set([2])]))
    assert events == []
    assert core.template_cache.get(UDP, 0, 1024) is not None
    assert core.stats()[UDP].withdrawals_ignored == 2
    dtls = ExporterKey("dtls", "192.0.2.1", 40000)
    feed(core, tmpl_msg(FLOW), encode_message([encode_withdrawal_set([2])]), exporter=dtls)
    assert core.template_cache.get(dtls, 0, 1024) is not None


def test_tcp_withdrawal_applies_in_message_order() -> None:
    core = IpfixCollectorCore()
    feed(core, tmpl_msg(FLOW), exporter=TCP)
    msg = encode_message(
        [
            encode_data_set(FLOW, flow_rows(1)),
            encode_withdrawal_set([1024]),
            encode_data_set(FLOW, flow_rows(1)),  # No template any more: buffered.
        ],
    )
    events = feed(core, msg, exporter=TCP)
    assert [type(e) for e in events] == [TemplateWithdrawn, RecordsDecoded]
    assert len(records_of(events)) == 1  # type: ignore[arg-type]
    assert core.template_cache.get(TCP, 0, 1024) is None
    assert core.stats()[TCP].unknown_template == 1
    # Withdrawing an unknown template is harmless.
    assert feed(core, encode_message([encode_withdrawal_set([999])]), exporter=TCP) == []


def test_tcp_withdraw_all_by_kind() -> None:
    core = IpfixCollectorCore()
    second = Template(1025, (FieldSpec(4, 1),))
    feed(core, tmpl_msg(FLOW, second), exporter=TCP)
    feed(core, encode_message([encode_template_set([OPTS])]), exporter=TCP)
    msg = encode_message(
        [
            encode_template_set([Template(1026, (FieldSpec(4, 1),))]),
            encode_withdrawal_set([2]),
            encode_set(1026, b"\x06"),  # Withdrawn earlier in this message: buffered.
            encode_data_set(OPTS, [(1, 2)]),  # Options templates survive set-2 "withdraw all".
        ]
    )
    events = feed(core, msg, exporter=TCP)
    assert [e.template_id for e in events if isinstance(e, TemplateWithdrawn)] == [
        1024,
        1025,
        1026,
    ]
    assert records_of(events)[0].options  # type: ignore[arg-type]
    events = feed(core, encode_message([encode_withdrawal_set([3], options=True)]), exporter=TCP)
    assert events == [TemplateWithdrawn(TCP, 0, 256)]
    assert len(core.template_cache) == 0


def test_tcp_withdraw_all_hides_cached_templates_for_the_rest_of_the_message() -> None:
    core = IpfixCollectorCore()
    feed(core, tmpl_msg(FLOW), exporter=TCP)
    msg = encode_message([encode_withdrawal_set([2]), encode_data_set(FLOW, flow_rows(1))])
    events = feed(core, msg, exporter=TCP)
    assert records_of(events) == []  # type: ignore[arg-type]
    assert core.stats()[TCP].unknown_template == 1


def test_options_template_and_records() -> None:
    core = IpfixCollectorCore()
    events = feed(
        core, encode_message([encode_template_set([OPTS]), encode_data_set(OPTS, [(7, 9)])])
    )
    assert events[0] == TemplateLearned(UDP, 0, 256, redefined=False, options=True)
    record = records_of(events)[0]  # type: ignore[arg-type]
    assert record.options
    assert record.scope_fields == ("meteringProcessId",)
    assert record.values == {"meteringProcessId": 7, "exportedMessageTotalCount": 9}


def test_options_template_with_scope_count_zero_is_rejected() -> None:
    core = IpfixCollectorCore()
    bad = encode_set(3, b"\x01\x00\x00\x01\x00\x00\x00\x8f\x00\x04")
    events = feed(core, encode_message([encode_template_set([FLOW]), bad]))
    assert len(events) == 1
    assert isinstance(events[0], MessageRejected)
    assert "scope count 0" in events[0].reason
    assert len(core.template_cache) == 0  # Nothing of a malformed message is applied.
    assert core.stats()[UDP].malformed == 1


def test_data_before_template_is_buffered_then_decoded() -> None:
    core = IpfixCollectorCore()
    assert feed(core, data_msg(2, 0)) == []
    assert core.stats()[UDP].buffered == 1
    events = feed(core, tmpl_msg(FLOW, seq=2))
    assert [type(e) for e in events] == [TemplateLearned, RecordsDecoded]
    assert len(records_of(events)) == 2  # type: ignore[arg-type]
    stats = core.stats()[UDP]
    assert (stats.unknown_template, stats.records, stats.dropped_buffered) == (1, 2, 0)
    assert core.get_timer() is None


def test_data_before_template_in_the_same_message() -> None:
    core = IpfixCollectorCore()
    msg = encode_message([encode_data_set(FLOW, flow_rows(1)), encode_template_set([FLOW])])
    events = feed(core, msg)
    assert [type(e) for e in events] == [TemplateLearned, RecordsDecoded]


def test_buffer_bounds_count_bytes_and_age() -> None:
    core = IpfixCollectorCore(
        max_buffered_per_exporter=2, max_buffered_bytes_per_exporter=400, buffer_age=10.0
    )
    for seq in range(3):
        core.receive_message(data_msg(1, seq), UDP, 0.0)
    assert core.stats()[UDP].dropped_buffered == 1
    assert core.get_timer() == 10.0
    core.receive_message(data_msg(20, 3), UDP, 1.0)  # Larger than the byte cap: dropped.
    assert core.stats()[UDP].dropped_buffered == 2
    core.receive_message(data_msg(8, 4), UDP, 1.0)  # Evicts by count, then by bytes.
    assert core.stats()[UDP].dropped_buffered == 4
    core.handle_timer(11.5)
    assert core.stats()[UDP].dropped_buffered == 5
    assert core.get_timer() is None
    core.receive_message(tmpl_msg(FLOW), UDP, 12.0)
    assert records_of(drain(core)) == []
    zero = IpfixCollectorCore(max_buffered_per_exporter=0)
    zero.receive_message(data_msg(1, 0), UDP, 0.0)
    assert zero.stats()[UDP].dropped_buffered == 1


def test_buffered_set_that_does_not_fit_its_template_is_dropped() -> None:
    core = IpfixCollectorCore()
    var = Template(300, (FieldSpec(82, 0xFFFF),))
    feed(core, encode_message([encode_set(300, b"\x09abc")]))
    events = feed(core, tmpl_msg(var))
    assert [type(e) for e in events] == [TemplateLearned]
    stats = core.stats()[UDP]
    assert (stats.malformed, stats.dropped_buffered) == (1, 1)


def test_sequence_gap_duplicate_reorder_restart() -> None:
    core = IpfixCollectorCore()
    feed(core, tmpl_msg(FLOW, seq=0))
    assert not any(isinstance(e, SequenceGap) for e in feed(core, data_msg(3, 0)))
    events = feed(core, data_msg(2, 5))  # Records 3 and 4 lost.
    assert SequenceGap(UDP, 0, 2) in events
    assert core.stats()[UDP].sequence_gaps == 2
    feed(core, data_msg(2, 3))  # The late message fills the gap.
    stats = core.stats()[UDP]
    assert (stats.sequence_gaps, stats.late_messages) == (0, 1)
    feed(core, data_msg(2, 5))  # Duplicate.
    assert core.stats()[UDP].late_messages == 2
    assert core.stats()[UDP].sequence_gaps == 0
    feed(core, data_msg(1, 7))  # In order after the duplicate.
    feed(core, data_msg(1, 3_000_000_000))  # Restart-like jump: no loss counted.
    feed(core, data_msg(1, 3_000_000_001))
    stats = core.stats()[UDP]
    assert (stats.sequence_gaps, stats.sequence_resets) == (0, 1)
    assert stats.records == 12


def test_sequence_wraps_modulo_2_32() -> None:
    core = IpfixCollectorCore()
    feed(core, tmpl_msg(FLOW, seq=2**32 - 2))
    feed(core, data_msg(3, 2**32 - 2))
    events = feed(core, data_msg(1, 1))
    assert not any(isinstance(e, SequenceGap) for e in events)


def test_sequence_is_per_domain_and_templates_do_not_count() -> None:
    core = IpfixCollectorCore()
    feed(core, tmpl_msg(FLOW, odid=1, seq=0), tmpl_msg(FLOW, odid=2, seq=0))
    feed(core, data_msg(4, 0, odid=1), data_msg(1, 0, odid=2))
    feed(core, tmpl_msg(FLOW, odid=1, seq=4))
    events = feed(core, data_msg(1, 4, odid=1), data_msg(1, 1, odid=2))
    assert not any(isinstance(e, SequenceGap) for e in events)


def test_unknown_record_count_resynchronises() -> None:
    core = IpfixCollectorCore()
    feed(core, data_msg(3, 0))  # Buffered: how many records is unknown.
    events = feed(core, tmpl_msg(FLOW, seq=50))
    assert not any(isinstance(e, SequenceGap) for e in events)


def test_reserved_sets_are_skipped() -> None:
    core = IpfixCollectorCore()
    msg = encode_message([encode_set(1, b"abcd"), encode_set(200, b""), tmpl_msg(FLOW)[16:]])
    events = feed(core, msg)
    assert [type(e) for e in events] == [TemplateLearned]
    assert core.stats()[UDP].skipped_sets == 2


def test_template_cap_per_exporter() -> None:
    core = IpfixCollectorCore(max_templates_per_exporter=2)
    templates = [Template(300 + i, (FieldSpec(4, 1),)) for i in range(3)]
    feed(core, tmpl_msg(*templates))
    assert core.stats()[UDP].templates_refused == 1
    assert core.template_cache.count(UDP) == 2
    feed(core, tmpl_msg(templates[0]))  # Refreshing a held one is fine.
    assert core.stats()[UDP].templates_refused == 1


def test_malformed_message_from_one_exporter_does_not_disturb_another() -> None:
    core = IpfixCollectorCore()
    feed(core, tmpl_msg(FLOW), exporter=UDP)
    feed(core, tmpl_msg(FLOW), exporter=UDP2)
    good = data_msg(2, 0)
    for cut in range(len(good)):
        core.receive_message(good[:cut], UDP2, 1.0)
        core.receive_message(b"\xff" * cut, UDP2, 1.0)
    core.receive_message(good, UDP, 1.0)
    records = records_of(drain(core))
    assert len(records) == 2
    assert all(r.exporter == UDP for r in records)
    assert core.stats()[UDP].malformed == 0
    assert core.stats()[UDP2].malformed == 2 * len(good)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_every_truncated_prefix_is_rejected_cleanly(transport: str) -> None:
    exporter = ExporterKey(transport, "192.0.2.9", 1)
    message = encode_message(
        [
            encode_template_set([FLOW]),
            encode_template_set([OPTS]),
            encode_data_set(FLOW, flow_rows(2)),
        ]
    )
    core = IpfixCollectorCore()
    for cut in range(len(message)):
        core.receive_message(message[:cut], exporter, 0.0)
        events = drain(core)
        assert [type(e) for e in events] == [MessageRejected]
    assert core.stats()[exporter].malformed == len(message)
    assert len(core.template_cache) == 0
    core.receive_message(message, exporter, 0.0)
    assert len(records_of(drain(core))) == 2


def test_exporter_table_is_bounded() -> None:
    core = IpfixCollectorCore(max_exporters=2)
    keys = [ExporterKey("udp", f"192.0.2.{i}", 1) for i in range(3)]
    for key in keys:
        core.receive_message(tmpl_msg(FLOW), key, 0.0)
        core.receive_message(data_msg(1, 0), key, 0.0)
    assert set(core.stats()) == set(keys[1:])
    assert core.template_cache.count(keys[0]) == 0
    core.forget_exporter(keys[1])
    assert set(core.stats()) == {keys[2]}
    assert core.template_cache.count(keys[1]) == 0


def test_template_lifetime() -> None:
    core = IpfixCollectorCore(template_lifetime=100.0)
    assert core.get_timer() is None
    core.receive_message(tmpl_msg(FLOW), UDP, 0.0)
    core.handle_timer(0.0)
    assert core.get_timer() == 25.0
    core.handle_timer(50.0)
    assert len(core.template_cache) == 1
    core.handle_timer(101.0)
    assert len(core.template_cache) == 0
    never = IpfixCollectorCore()
    never.receive_message(tmpl_msg(FLOW), UDP, 0.0)
    never.handle_timer(1e9)
    assert len(never.template_cache) == 1


def test_snapshot_restore_roundtrip() -> None:
    core = IpfixCollectorCore()
    core.receive_message(tmpl_msg(FLOW, odid=3), UDP, 5.0)
    core.receive_message(encode_message([encode_template_set([OPTS])]), TCP, 6.0)
    core.receive_message(tmpl_msg(FLOW, odid=3), UDP, 7.0)
    snapshot = core.template_cache.snapshot()
    assert len(snapshot) == 2
    texts = [s.to_json() for s in snapshot]
    stored = [StoredTemplate.from_json(t) for t in texts]
    assert stored == snapshot
    flow = next(s for s in stored if s.template_id == 1024)
    assert (flow.exporter, flow.observation_domain_id, flow.learned_at, flow.last_seen) == (
        UDP,
        3,
        5.0,
        7.0,
    )
    assert flow.record == FLOW.to_bytes()
    fresh = IpfixCollectorCore()
    assert fresh.template_cache.restore(stored) == 2
    assert fresh.template_cache.restore(stored) == 0  # Already there.
    assert fresh.template_cache.snapshot() == snapshot
    fresh.receive_message(data_msg(1, 0, odid=3), UDP, 8.0)
    assert len(records_of(drain(fresh))) == 1


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{}",
        '{"transport": "sctp", "address": "a", "port": 1, "observation_domain_id": 0,'
        ' "template_id": 256, "options": false, "record": "", "learned_at": 0, "last_seen": 0}',
        '{"transport": "udp", "address": "a", "port": 1, "observation_domain_id": 0,'
        ' "template_id": 256, "options": false, "record": "!!", "learned_at": 0, "last_seen": 0}',
        '{"transport": "udp", "address": "a", "port": 1, "observation_domain_id": 0,'
        ' "template_id": 256, "options": false, "record": "AQEAAA==", "learned_at": 0,'
        ' "last_seen": 0}',
    ],
)
def test_stored_template_from_bad_json(text: str) -> None:
    with pytest.raises(BadIpfix):
        StoredTemplate.from_json(text)


def test_restore_skips_bad_and_mismatched_entries() -> None:
    good = StoredTemplate(UDP, 0, 1024, False, FLOW.to_bytes(), 1.0, 2.0)
    wrong_id = StoredTemplate(UDP, 0, 999, False, FLOW.to_bytes(), 1.0, 2.0)
    broken = StoredTemplate(UDP, 0, 1025, False, b"\x04\x01", 1.0, 2.0)
    withdrawal = StoredTemplate(UDP, 0, 1026, False, b"\x04\x02\x00\x00", 1.0, 2.0)
    cache = TemplateCache(max_templates_per_exporter=1)
    over = StoredTemplate(UDP, 1, 1024, False, FLOW.to_bytes(), 1.0, 2.0)
    assert cache.restore([good, wrong_id, broken, withdrawal, over]) == 1
    with pytest.raises(BadIpfix):
        StoredTemplate.from_json(wrong_id.to_json())


def test_exporter_key_validates_transport() -> None:
    with pytest.raises(ValueError, match="transport"):
        ExporterKey("sctp", "192.0.2.1", 1)
    assert UDP.datagram
    assert not TCP.datagram
