"""The collector core's caps: per exporter address and global, the accounting, the memory bound.

The cost constants of ``ocgate.nvm.ipfix._limits`` are measured again here with tracemalloc on the
worst layouts found (enterprise fields with unknown IDs, mixed variable and odd lengths, four
sequence gaps per domain), so the documented bound cannot silently become a lie.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ipfix_testlib import FLOW, drain

from ocgate.nvm.ipfix import (
    DEFAULT_MEMORY_BOUND,
    ExporterKey,
    FieldSpec,
    IpfixCollectorCore,
    LearnResult,
    Limits,
    RecordsDecoded,
    Template,
    TemplateCache,
    TemplateLearned,
    TemplateWithdrawn,
    Usage,
    compile_template,
    encode_message,
    encode_set,
    encode_template_set,
)
from ocgate.nvm.ipfix._limits import (
    BUFFERED_SET_COST,
    DISTINCT_TEMPLATE_COST,
    DOMAIN_COST,
    EXPORTER_COST,
    TEMPLATE_FIELD_COST,
    TEMPLATE_REFERENCE_COST,
)

DOCS = Path(__file__).parents[4] / "docs" / "ARCHITECTURE.md"


def key(i: int, *, transport: str = "udp", port: int = 0) -> ExporterKey:
    """Exporter ``i``: a long IPv6 address (the costlier key)."""
    return ExporterKey(transport, f"2001:db8:ffff:ffff:ffff:ffff:{i >> 16:x}:{i & 0xFFFF:x}", port)


def template(template_id: int, fields: int, *, seed: int = 0) -> Template:
    """A distinct template of ``fields`` plain fixed-length fields."""
    return Template(template_id, tuple(FieldSpec(1 + (i + seed) % 400, 4) for i in range(fields)))


def tmpl_msg(*templates: Template, odid: int = 1, seq: int = 0) -> bytes:
    return encode_message(
        [encode_template_set(list(templates))], observation_domain_id=odid, sequence=seq
    )


def unknown_set(template_id: int, size: int, *, seq: int = 0) -> bytes:
    """A data set for a template nobody defined (it is buffered)."""
    return encode_message([encode_set(template_id, bytes(size))], sequence=seq)


def learned(core: IpfixCollectorCore) -> int:
    return sum(isinstance(e, TemplateLearned) for e in drain(core))


# --- The documented numbers ----------------------------------------------------------------------


def test_default_bound_is_the_documented_one() -> None:
    assert DEFAULT_MEMORY_BOUND == Limits().memory_bound() == 239_075_328
    assert Limits().exporter_bound() == 3_534_848
    text = DOCS.read_text()
    assert "239,075,328 bytes" in text
    assert "3,534,848 bytes" in text


def test_default_per_exporter_caps_fit_under_the_global_ones() -> None:
    limits = Limits()
    assert limits.max_templates_per_exporter <= limits.max_templates
    assert limits.max_templates_per_exporter <= limits.max_distinct_templates
    assert limits.max_fields_per_exporter <= limits.max_template_fields
    assert limits.max_buffered_per_exporter <= limits.max_buffered
    assert limits.max_buffered_bytes_per_exporter <= limits.max_buffered_bytes
    assert limits.max_domains_per_exporter <= limits.max_domains


# --- The cost constants, measured ----------------------------------------------------------------


def traced(run: Callable[[], object]) -> int:
    """Bytes still allocated after ``run`` (its result is kept alive while measuring)."""
    gc.collect()
    tracemalloc.start()
    try:
        kept = run()
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del kept
    return current


def test_exporter_cost() -> None:
    n = 2000
    header = encode_message([], observation_domain_id=1)

    def run() -> IpfixCollectorCore:
        core = IpfixCollectorCore(max_domains=0, max_exporters=n)
        for i in range(n):
            core.receive_message(header, key(i), 1e9)
        drain(core)
        assert core.usage().exporters == n
        return core

    assert traced(run) / n <= EXPORTER_COST


def test_domain_cost_with_its_gaps() -> None:
    n = 2000
    core = IpfixCollectorCore(max_domains=n, max_domains_per_exporter=n)
    exporter = key(0)
    core.receive_message(encode_message([]), exporter, 1e9)

    def run() -> None:
        for odid in range(n):
            for jump in range(6):  # Five forward jumps: the four kept gaps, large numbers.
                message = encode_message(
                    [], sequence=3_000_000_000 + 1000 * jump, observation_domain_id=2**31 + odid
                )
                core.receive_message(message, exporter, 1e9)
        drain(core)

    assert traced(run) / n <= DOMAIN_COST
    assert core.stats()[exporter].sequence_gaps == n * 5 * 1000


def test_template_reference_cost() -> None:
    n, per = 1000, 8
    core = IpfixCollectorCore(max_domains=0, max_exporters=n)
    keys = [key(i) for i in range(n)]
    for k in keys:
        core.receive_message(tmpl_msg(*(template(256 + t, 2) for t in range(per))), k, 1e9)
    drain(core)
    messages = [tmpl_msg(template(512 + t, 2)) for t in range(per)]

    def run() -> None:
        for k in keys:
            for message in messages:
                core.receive_message(message, k, 1e9)
        drain(core)

    assert traced(run) / (n * per) <= TEMPLATE_REFERENCE_COST
    assert core.usage().distinct_templates == 2 * per  # Shared by every exporter.


LAYOUTS: dict[str, Callable[[int, int], FieldSpec]] = {
    "fixed": lambda i, t: FieldSpec(1 + i % 400, 4),
    "variable": lambda i, t: FieldSpec(1 + i % 400, 0xFFFF),
    "odd": lambda i, t: FieldSpec(1 + i % 400, 1 + i % 7),
    "nvm": lambda i, t: FieldSpec(12330 + i % 40, 0xFFFF if i % 2 else 4, 9),
    "unknown-enterprise": lambda i, t: FieldSpec(
        (1000 + i + 512 * t) % 32768, 0xFFFF if i % 2 else 3, 0xFFFFFFFF
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_compiled_template_costs(layout: str) -> None:
    spec = LAYOUTS[layout]
    count = 100

    def per_template(fields: int) -> float:
        core = IpfixCollectorCore(
            max_templates_per_exporter=count,
            max_fields_per_exporter=10**6,
            max_template_fields=10**6,
        )
        exporter = key(0)
        core.receive_message(encode_message([], observation_domain_id=1), exporter, 1e9)
        messages = [
            tmpl_msg(Template(256 + t, tuple(spec(i, t) for i in range(fields))))
            for t in range(count)
        ]

        def run() -> None:
            for message in messages:
                core.receive_message(message, exporter, 1e9)
            assert learned(core) == count

        return traced(run) / count

    one, big = per_template(1), per_template(512)
    assert one <= TEMPLATE_REFERENCE_COST + DISTINCT_TEMPLATE_COST + TEMPLATE_FIELD_COST
    assert (big - one) / 511 <= TEMPLATE_FIELD_COST


def test_buffered_set_cost() -> None:
    n = 2000
    core = IpfixCollectorCore(max_buffered_per_exporter=n, max_buffered=n)
    exporter = key(0)
    core.receive_message(encode_message([]), exporter, 1e9)
    messages = [unknown_set(300 + i % 1000, 0, seq=i) for i in range(n)]

    def run() -> None:
        for message in messages:
            core.receive_message(message, exporter, 1e9)
        drain(core)

    assert traced(run) / n <= BUFFERED_SET_COST
    assert core.usage().buffered == n


# --- Per exporter: by address, whatever the port or transport ----------------------------------


def test_template_caps_count_every_key_of_an_address() -> None:
    core = IpfixCollectorCore(max_templates_per_exporter=4, max_fields_per_exporter=100)
    keys = [ExporterKey("tcp", "192.0.2.1", port) for port in range(1000, 1004)]
    keys.append(ExporterKey("udp", "192.0.2.1", 0))
    for i, k in enumerate(keys):
        core.receive_message(tmpl_msg(template(256 + i, 5)), k, 0.0)
    assert learned(core) == 4
    assert core.template_cache.held_by_address("192.0.2.1") == (4, 20)
    assert core.stats()[keys[4]].templates_refused == 1
    other = ExporterKey("udp", "192.0.2.2", 0)
    core.receive_message(tmpl_msg(template(256, 101)), other, 0.0)  # Too many fields alone.
    core.receive_message(tmpl_msg(template(256, 100)), other, 0.0)
    assert learned(core) == 1
    assert core.stats()[other].templates_refused == 1


def test_a_refused_redefinition_withdraws_the_old_layout() -> None:
    core = IpfixCollectorCore(max_fields_per_exporter=10)
    exporter = ExporterKey("udp", "192.0.2.1", 0)
    core.receive_message(tmpl_msg(template(300, 5)), exporter, 0.0)
    assert learned(core) == 1
    core.receive_message(tmpl_msg(template(300, 11)), exporter, 0.0)  # Over the field cap.
    events = drain(core)
    assert events == [TemplateWithdrawn(exporter, 1, 300)]
    assert core.template_cache.get(exporter, 1, 300) is None
    assert core.usage().templates == 0


def test_buffer_caps_count_every_key_of_an_address() -> None:
    core = IpfixCollectorCore(max_buffered_per_exporter=3, max_buffered_bytes_per_exporter=1000)
    tcp = [ExporterKey("tcp", "192.0.2.1", port) for port in (1, 2)]
    for i in range(3):
        core.receive_message(unknown_set(300, 100, seq=i), tcp[0], 0.0)
    core.receive_message(unknown_set(300, 100), tcp[1], 0.0)  # The address is full: dropped.
    assert core.stats()[tcp[1]].dropped_buffered == 1
    core.receive_message(unknown_set(300, 100, seq=3), tcp[0], 0.0)  # Its own oldest makes room.
    assert core.stats()[tcp[0]].dropped_buffered == 1
    usage = core.usage()
    assert (usage.buffered, usage.buffered_bytes) == (3, 300)


def test_domains_per_exporter_and_globally() -> None:
    core = IpfixCollectorCore(max_domains_per_exporter=2, max_domains=3)
    a, b = ExporterKey("udp", "192.0.2.1", 0), ExporterKey("udp", "192.0.2.2", 0)
    for odid in range(5):
        core.receive_message(encode_message([], observation_domain_id=odid), a, 0.0)
    assert core.usage().domains == 2  # The oldest domains were forgotten.
    for odid in range(3):
        core.receive_message(encode_message([], observation_domain_id=odid), b, 0.0)
    assert core.usage().domains == 3
    assert core.stats()[b].domains_refused == 2


# --- Globally ------------------------------------------------------------------------------------


def test_identical_templates_are_compiled_once() -> None:
    core = IpfixCollectorCore()
    for i in range(500):
        core.receive_message(tmpl_msg(FLOW), key(i), 0.0)
    usage = core.usage()
    assert (usage.templates, usage.distinct_templates) == (500, 1)
    assert usage.template_fields == len(FLOW.fields)
    first = core.template_cache.get(key(0), 1, FLOW.template_id)
    assert first is core.template_cache.get(key(499), 1, FLOW.template_id)


def test_a_global_template_cap_evicts_the_least_recently_heard_exporter() -> None:
    core = IpfixCollectorCore(max_templates=6, max_templates_per_exporter=3)
    exporters = [ExporterKey("udp", f"192.0.2.{i}", 0) for i in range(1, 5)]
    for i, exporter in enumerate(exporters[:2]):
        core.receive_message(
            tmpl_msg(*(template(256 + t, 2, seed=i) for t in range(3))), exporter, 0.0
        )
    core.receive_message(tmpl_msg(FLOW), exporters[0], 1.0)  # Over its own cap: refused.
    assert core.stats()[exporters[0]].templates_refused == 1
    # A newcomer gets in: the least recently heard exporter (the second) makes room.
    core.receive_message(tmpl_msg(FLOW), exporters[2], 2.0)
    assert core.template_cache.get(exporters[2], 1, FLOW.template_id) is not None
    assert set(core.stats()) == {exporters[0], exporters[2]}
    assert core.evicted == 1
    assert core.usage().within(core.limits)


def test_distinct_and_field_caps_hold() -> None:
    limits = Limits(max_distinct_templates=5, max_template_fields=40)
    core = IpfixCollectorCore(limits=limits)
    for i in range(50):
        core.receive_message(tmpl_msg(template(256, 3 + i % 9, seed=i)), key(i), float(i))
        usage = core.usage()
        assert usage.within(limits)
        assert usage.distinct_templates <= 5
        assert usage.template_fields <= 40
    drain(core)
    # The last exporters hold their template; a shared one costs nothing more.
    core.receive_message(tmpl_msg(template(256, 3 + 49 % 9, seed=49)), key(1000), 99.0)
    assert core.template_cache.get(key(1000), 1, 256) is not None


def test_global_buffer_caps_refuse_new_sets() -> None:
    core = IpfixCollectorCore(max_buffered=4, max_buffered_bytes=350)
    for i in range(6):
        core.receive_message(unknown_set(300, 100), key(i), 0.0)
    usage = core.usage()
    assert (usage.buffered, usage.buffered_bytes) == (3, 300)
    assert sum(s.dropped_buffered for s in core.stats().values()) == 3
    core.handle_timer(100.0)  # They age out; the buffer takes new sets again.
    assert core.usage().buffered == 0
    core.receive_message(unknown_set(300, 100), key(99), 100.0)
    assert core.usage().buffered == 1


def test_accounting_returns_to_zero() -> None:
    core = IpfixCollectorCore(max_exporters=8, template_lifetime=10.0)
    for i in range(20):
        exporter = key(i, transport="tcp", port=i) if i % 2 else key(i)
        core.receive_message(tmpl_msg(template(256, 4, seed=i), FLOW), exporter, 0.0)
        core.receive_message(unknown_set(300, 50), exporter, 0.0)
    drain(core)
    for exporter in list(core.stats()):
        core.forget_exporter(exporter)
    assert core.usage() == Usage()
    assert len(core.template_cache) == 0


# --- A model check: any sequence of messages keeps the accounting exact and within the caps ---

_SMALL = Limits(
    max_templates_per_exporter=5,
    max_fields_per_exporter=30,
    max_buffered_per_exporter=4,
    max_buffered_bytes_per_exporter=600,
    max_domains_per_exporter=2,
    max_exporters=6,
    max_domains=7,
    max_templates=12,
    max_distinct_templates=8,
    max_template_fields=60,
    max_buffered=10,
    max_buffered_bytes=1200,
)

_message = st.one_of(
    st.builds(
        lambda tid, n, seed, odid: tmpl_msg(template(tid, n, seed=seed), odid=odid),
        st.integers(256, 262),
        st.integers(1, 12),
        st.integers(0, 3),
        st.integers(0, 3),
    ),
    st.builds(
        lambda tid, size, seq: unknown_set(tid, size, seq=seq),
        st.integers(256, 270),
        st.integers(0, 300),
        st.integers(0, 5),
    ),
)
_exporter = st.builds(
    lambda transport, host, port: ExporterKey(
        transport, f"192.0.2.{host}", port if transport == "tcp" else 0
    ),
    st.sampled_from(["udp", "tcp", "dtls"]),
    st.integers(1, 9),
    st.integers(1, 3),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_exporter, _message, st.booleans()), max_size=60))
def test_any_sequence_stays_within_the_caps_and_is_counted_exactly(
    steps: list[tuple[ExporterKey, bytes, bool]],
) -> None:
    core = IpfixCollectorCore(limits=_SMALL, buffer_age=5.0)
    now = 0.0
    for exporter, message, forget in steps:
        now += 1.0
        core.receive_message(message, exporter, now)
        if forget and exporter.transport == "tcp":
            core.forget_exporter(exporter)
        core.handle_timer(now)
        for event in drain(core):
            if isinstance(event, RecordsDecoded):
                assert event.records
        usage = core.usage()
        assert usage.within(_SMALL)
        assert usage.memory() <= _SMALL.memory_bound()
        # Recount from scratch: the running counters are exact.
        states = core._exporters.values()
        assert usage.exporters == len(states)
        assert usage.domains == sum(len(s.sequences) for s in states)
        assert usage.buffered == sum(len(s.buffer) for s in states)
        assert usage.buffered_bytes == sum(len(p.body) for s in states for p in s.buffer)
        cache = core.template_cache
        held = [cache.get(*scope) for scope in cache._entries]
        assert usage.templates == len(held)
        distinct = {d.template for d in held if d is not None}
        assert usage.distinct_templates == len(distinct)
        assert usage.template_fields == sum(len(t.fields) for t in distinct)
        per_address: dict[str, list[int]] = {}
        for s in states:
            per_address.setdefault(s.key.address, [0, 0])
            per_address[s.key.address][0] += len(s.buffer)
            per_address[s.key.address][1] += sum(len(p.body) for p in s.buffer)
        for sets, size in per_address.values():
            assert sets <= _SMALL.max_buffered_per_exporter
            assert size <= _SMALL.max_buffered_bytes_per_exporter
        for address in per_address:
            count, fields = cache.held_by_address(address)
            assert count <= _SMALL.max_templates_per_exporter
            assert fields <= _SMALL.max_fields_per_exporter


def test_template_cache_alone_reports_full_and_refused() -> None:
    cache = TemplateCache(max_templates_per_exporter=1, max_templates=1)
    a, b = ExporterKey("udp", "192.0.2.1", 0), ExporterKey("udp", "192.0.2.2", 0)
    flow = compile_template(FLOW)
    assert cache.learn(a, 0, flow, 0.0) is LearnResult.NEW
    assert cache.learn(a, 1, flow, 0.0) is LearnResult.REFUSED
    assert cache.learn(b, 0, flow, 0.0) is LearnResult.FULL
