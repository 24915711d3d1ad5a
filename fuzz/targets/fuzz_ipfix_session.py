"""The IPFIX collector over time: one exporter's messages, templates then data, then records.

Input: operations. Tag % 4: 0 = an IPFIX message from the exporter (over UDP), 1 = the same
over TCP (withdrawals apply), 2 = the clock moves on by the payload (ms) and the timers run (the
pre-template buffer ages, templates expire), 3 = the TCP session ends (its templates are
forgotten). Bit 2 of the tag sends the message from a second exporter instead. Every decoded
record then goes through what the collector does with it: the compiled :class:`Normaliser` and
the reference ``normalise`` (they must agree), the default privacy policy, the SQL row and the
SIEM JSON line.

Oracle: ``receive_message`` and ``handle_timer`` raise nothing; a rejected message changes no
template; counters never go negative; the compiled and the reference normalisers give the same
record; the SIEM JSON line is strict JSON.
"""

from __future__ import annotations

import json
from dataclasses import astuple

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.nvm._normaliser import Normaliser
    from ocgate.nvm._privacy import PrivacyPolicy
    from ocgate.nvm._records import FlowRecord, normalise
    from ocgate.nvm._siem import json_line
    from ocgate.nvm.ipfix import (
        ExporterKey,
        IpfixCollectorCore,
        MessageRejected,
        RecordsDecoded,
    )
    from ocgate.nvm.store._rows import prepare_flow

UDP = (ExporterKey("udp", "192.0.2.1", 40000), ExporterKey("udp", "192.0.2.2", 40000))
TCP = (ExporterKey("tcp", "192.0.2.1", 40001), ExporterKey("tcp", "192.0.2.2", 40001))
PRIVACY = PrivacyPolicy.default()


def _no_constants(name: str) -> object:
    raise AssertionError(f"the SIEM JSON line holds {name}, which is not JSON")


def _check_record(normaliser: Normaliser, record: object) -> None:
    got, want = normaliser(record), normalise(record)  # type: ignore[arg-type]
    assert type(got) is type(want)
    assert repr(got) == repr(want), "compiled and reference normalisers differ"
    kept = PRIVACY.apply(got)
    if isinstance(kept, FlowRecord):
        prepare_flow(kept)
    if kept is not None:
        line = json_line(kept)
        if line is not None:
            json.loads(line, parse_constant=_no_constants)


def test_one_input(data: bytes) -> None:
    core = IpfixCollectorCore(
        max_templates_per_exporter=16,
        max_buffered_per_exporter=8,
        max_buffered_bytes_per_exporter=4096,
        buffer_age=30.0,
        max_exporters=4,
        template_lifetime=600.0,
    )
    normaliser = Normaliser()
    now = 1_700_000_000.0
    for tag, payload in _harness.ops(data):
        kind = tag % 4
        which = tag >> 2 & 1
        if kind in (0, 1):
            exporter = (UDP, TCP)[kind][which]
            before = core.template_cache.snapshot()
            core.receive_message(payload, exporter, now)
        elif kind == 2:
            now += _harness.number(payload[:3]) / 1000.0
            core.handle_timer(now)
            before = None
        else:
            core.forget_exporter(TCP[which])
            before = None
        while (event := core.next_event()) is not None:
            if isinstance(event, MessageRejected):
                assert before is not None
                assert core.template_cache.snapshot() == before, (
                    "a rejected message changed templates"
                )
            elif isinstance(event, RecordsDecoded):
                for record in event.records:
                    _check_record(normaliser, record)
        for stats in core.stats().values():
            assert all(value >= 0 for value in astuple(stats)), stats


def seeds() -> list[bytes]:
    """A real AnyConnect NVM exporter's messages (tests/vectors/ipfix) in several orders."""
    directory = _harness.VECTORS / "ipfix"
    templates = _harness.hex_vector(directory / "ona_nvzflow_templates.hex")
    d262 = _harness.hex_vector(directory / "ona_nvzflow_data_262.hex")
    d267 = _harness.hex_vector(directory / "ona_nvzflow_data_267.hex")
    tick = _harness.op(2, (40_000).to_bytes(3, "big"))
    op = _harness.op
    return [
        op(0, templates) + op(0, d262) + op(0, d267),
        op(0, d267) + op(0, templates) + op(0, d262),
        op(1, templates) + op(1, d267) + op(3) + op(1, d267),
        op(0, d267) + tick + op(0, templates) + op(4, templates) + op(4, d262),
        op(0, templates) + tick * 20 + op(0, d267) + op(0, d267),
    ]


if __name__ == "__main__":
    _harness.main(test_one_input)
