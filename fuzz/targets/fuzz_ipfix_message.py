"""The IPFIX codecs one message at a time: every parser raises only ``BadIpfix``.

Input: a selector byte, then bytes for: ``pull_message_untrusted`` (then each template set
through ``parse_template_set_untrusted`` and each data set through the ``decode_set_untrusted``
of the templates defined before it in the same message), ``split_stream_untrusted`` (a TCP
stream), ``parse_template_set_untrusted`` / ``parse_template_record_untrusted`` (a set body),
``decode_basic_list_untrusted`` (a list value).

Oracle: templates re-encode to records that parse back equal; a stream splits into messages
whose concatenation and the rest give back the input; decoded records carry only the exporter,
domain and template they came with; a data set holds no more records than it has bytes.
"""

from __future__ import annotations

import contextlib

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.errors import BadIpfix
    from ocgate.nvm.ipfix import (
        ExporterKey,
        SetId,
        Template,
        compile_template,
        decode_basic_list_untrusted,
        parse_template_record_untrusted,
        parse_template_set_untrusted,
        pull_message_untrusted,
        split_stream_untrusted,
    )

EXPORTER = ExporterKey("udp", "192.0.2.1", 40000)


def _message(data: bytes) -> None:
    header, sets = pull_message_untrusted(data)
    assert header.length == len(data)
    decoders = {}
    for raw in sets:
        if raw.set_id in (SetId.TEMPLATE, SetId.OPTIONS_TEMPLATE):
            options = raw.set_id == SetId.OPTIONS_TEMPLATE
            for record in parse_template_set_untrusted(raw.body, options=options):
                if isinstance(record, Template):
                    again, end = parse_template_record_untrusted(
                        record.to_bytes(), 0, options=options
                    )
                    assert (again, end) == (record, len(record.to_bytes()))
                    decoders[record.template_id] = compile_template(record)
        elif raw.set_id in decoders:
            odid = header.observation_domain_id
            records = decoders[raw.set_id].decode_set_untrusted(
                raw.body, EXPORTER, odid, header.export_time, header.sequence
            )
            assert len(records) <= len(raw.body)
            for record in records:
                assert (record.exporter, record.observation_domain_id) == (EXPORTER, odid)
                assert record.template_id == raw.set_id


def _stream(data: bytes) -> None:
    messages, rest = split_stream_untrusted(data)
    assert b"".join(messages) + rest == data
    assert all(len(m) >= 16 for m in messages)


def _template_set(data: bytes) -> None:
    options = bool(data[:1]) and data[0] & 1 == 1
    parse_template_set_untrusted(data[1:], options=options)
    parse_template_record_untrusted(data[1:], 0, options=options)


def _basic_list(data: bytes) -> None:
    values = decode_basic_list_untrusted(data)
    assert len(values) <= len(data)


_PARSERS = (_message, _stream, _template_set, _basic_list)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    with contextlib.suppress(BadIpfix):
        _PARSERS[data[0] % len(_PARSERS)](data[1:])


def seeds() -> list[bytes]:
    """A real AnyConnect NVM exporter's messages (tests/vectors/ipfix, ONA test fixtures)."""
    directory = _harness.VECTORS / "ipfix"
    templates = _harness.hex_vector(directory / "ona_nvzflow_templates.hex")
    data = [_harness.hex_vector(directory / f"ona_nvzflow_data_{n}.hex") for n in (262, 267)]
    # One message with the templates and both records (templates take effect in message order).
    merged = templates[:2] + (len(templates) + sum(len(d) - 16 for d in data)).to_bytes(2, "big")
    merged += templates[4:] + b"".join(d[16:] for d in data)
    out = [b"\x00" + merged, b"\x01" + templates + data[0] + data[1][:20]]
    out += [b"\x00" + m for m in (templates, *data)]
    out.append(b"\x02\x00" + templates[20:])
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
