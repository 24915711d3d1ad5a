"""Per-template record decoders: fixed fields, variable-length fields, basicList (RFC 7011 §6-7).

Theory of operation:

* A template is compiled once into a :class:`TemplateDecoder`. Consecutive fixed-length fields
  become one ``struct.Struct`` run; variable-length fields are steps of their own. Converters run
  only for the fields whose Python value differs from what ``struct`` returns (addresses, times,
  strings, odd reduced-size integers).
* A template with fixed fields only decodes a whole set with ``Struct.iter_unpack``.
* Records are decoded while at least the template's minimum record length remains; the rest is
  padding (§3.3.1). The minimum is ≥ 1, so decoding always advances.
* A variable-length prefix (1 byte, or 255 + 2 bytes, §7) or a list that runs past its container
  raises :class:`BadIpfix`, which discards the message. Unknown elements are kept raw with
  ``(PEN, ID)``; ill-formed UTF-8 keeps the raw bytes and flags the name (§6.1.6), also when it
  sits in a list element (the whole list is kept raw; :class:`InvalidListText`).
* basicList (RFC 6313 §4.5.3): semantic, element field ID (+ PEN), element length (65535 = each
  element has its own variable-length prefix), then the elements; nesting is bounded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address, IPv6Address
from typing import cast

from ocgate.errors import BadIpfix
from ocgate.nvm.ipfix._elements import DataType, ElementInfo, element_info
from ocgate.nvm.ipfix._exporter import ExporterKey
from ocgate.nvm.ipfix._templates import ENTERPRISE_BIT, VARIABLE_LENGTH, FieldSpec, Template
from ocgate.nvm.ipfix.events import DataRecord

__all__ = [
    "MAX_LIST_DEPTH",
    "TemplateDecoder",
    "compile_template",
    "decode_basic_list_untrusted",
]

MAX_LIST_DEPTH = 4
"""How deep basicLists may nest (nvm-ipfix.md §1.5: bound the nesting)."""

NTP_UNIX_OFFSET = 2_208_988_800
"""Seconds from the NTP epoch (1900) to the Unix epoch (1970): RFC 7011 §6.1.9-10 times."""

_Conv = Callable[[int], object] | Callable[[bytes], object]
_BytesConv = Callable[[bytes], object]
_Key = str | tuple[int, int]

# basicList header (RFC 6313 §4.5.3): Semantic, Field ID (E bit), Element Length.
_LIST_HEADER = struct.Struct("!BHH")
_PEN = struct.Struct("!I")
_U16 = struct.Struct("!H")
_F32 = struct.Struct("!f")
_F64 = struct.Struct("!d")

_UNSIGNED = {DataType.UNSIGNED8, DataType.UNSIGNED16, DataType.UNSIGNED32, DataType.UNSIGNED64}
_SIGNED = {DataType.SIGNED8, DataType.SIGNED16, DataType.SIGNED32, DataType.SIGNED64}
_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_NO_INVALID: frozenset[str] = frozenset()


# --- Converters. Each takes what struct returns (int or bytes) and gives the Python value. -------


def _ms(value: int) -> float:
    return value / 1000


def _seconds(value: int) -> float:
    return float(value)


def _ntp_micro(value: int) -> float:
    # RFC 7011 §6.1.9: the lower 11 bits of the fraction are not significant.
    return (value >> 32) - NTP_UNIX_OFFSET + (value & 0xFFFFF800) / 4294967296


def _ntp_nano(value: int) -> float:
    return (value >> 32) - NTP_UNIX_OFFSET + (value & 0xFFFFFFFF) / 4294967296


def _boolean(value: int) -> object:
    # RFC 7011 §6.1.5: 1 is true, 2 is false; anything else is kept as it is.
    return True if value == 1 else False if value == 2 else value


def _mac(value: bytes) -> str:
    return value.hex(":")


_utf8: Callable[[bytes], str] = bytes.decode  # UTF-8, strict: the C method, no Python frame.


def _uint(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _sint(value: bytes) -> int:
    return int.from_bytes(value, "big", signed=True)


def _f32(value: bytes) -> float:
    return float(_F32.unpack(value)[0])


def _f64(value: bytes) -> float:
    return float(_F64.unpack(value)[0])


def _bytes_then(conv: Callable[[int], object]) -> _BytesConv:
    def convert(value: bytes) -> object:
        return conv(int.from_bytes(value, "big"))

    return convert


# (data type, length) -> (struct code, converter of the unpacked value) for fixed fields.
_FIXED: dict[tuple[DataType, int], tuple[str, _Conv | None]] = {
    (DataType.FLOAT32, 4): ("f", None),
    (DataType.FLOAT64, 8): ("d", None),
    (DataType.FLOAT64, 4): ("f", None),
    (DataType.BOOLEAN, 1): ("B", _boolean),
    (DataType.MAC_ADDRESS, 6): ("6s", _mac),
    (DataType.DATE_TIME_SECONDS, 4): ("I", _seconds),
    (DataType.DATE_TIME_MILLISECONDS, 8): ("Q", _ms),
    (DataType.DATE_TIME_MICROSECONDS, 8): ("Q", _ntp_micro),
    (DataType.DATE_TIME_NANOSECONDS, 8): ("Q", _ntp_nano),
    (DataType.IPV4_ADDRESS, 4): ("I", IPv4Address),
    (DataType.IPV6_ADDRESS, 16): ("16s", IPv6Address),
}


def _fixed_code(info: ElementInfo | None, length: int) -> tuple[str, _Conv | None]:
    """Return the struct code and converter of a fixed-length field."""
    if info is None:
        return f"{length}s", None
    dtype = info.data_type
    if dtype in _UNSIGNED or dtype in _SIGNED:
        code = _INT_CODES.get(length)
        if code is not None:
            return (code.lower() if dtype in _SIGNED else code), None
        if 1 <= length <= 8:  # Reduced-size encoding with an odd length (§6.2).
            return f"{length}s", (_sint if dtype in _SIGNED else _uint)
        return f"{length}s", None
    found = _FIXED.get((dtype, length))
    if found is not None:
        return found
    if dtype is DataType.STRING:
        return f"{length}s", _utf8
    if dtype is DataType.BASIC_LIST:
        return f"{length}s", partial(decode_basic_list_untrusted, depth=1)
    return f"{length}s", None


def _float_any(value: bytes) -> object:
    size = len(value)
    return _f32(value) if size == 4 else _f64(value) if size == 8 else value


def _sized(size: int, conv: _BytesConv) -> _BytesConv:
    def convert(value: bytes) -> object:
        return conv(value) if len(value) == size else value

    return convert


# Converters of values held as bytes of any length (variable-length fields, list elements). A
# value whose length does not fit its type stays raw.
_ANY_LENGTH: dict[DataType, _BytesConv] = {
    DataType.UNSIGNED8: _uint,
    DataType.UNSIGNED16: _uint,
    DataType.UNSIGNED32: _uint,
    DataType.UNSIGNED64: _uint,
    DataType.SIGNED8: _sint,
    DataType.SIGNED16: _sint,
    DataType.SIGNED32: _sint,
    DataType.SIGNED64: _sint,
    DataType.FLOAT32: _float_any,
    DataType.FLOAT64: _float_any,
    DataType.BOOLEAN: _sized(1, _bytes_then(_boolean)),
    DataType.MAC_ADDRESS: _sized(6, _mac),
    DataType.STRING: _utf8,
    DataType.DATE_TIME_SECONDS: _sized(4, _bytes_then(_seconds)),
    DataType.DATE_TIME_MILLISECONDS: _sized(8, _bytes_then(_ms)),
    DataType.DATE_TIME_MICROSECONDS: _sized(8, _bytes_then(_ntp_micro)),
    DataType.DATE_TIME_NANOSECONDS: _sized(8, _bytes_then(_ntp_nano)),
    DataType.IPV4_ADDRESS: _sized(4, IPv4Address),
    DataType.IPV6_ADDRESS: _sized(16, IPv6Address),
}


def _bytes_conv(info: ElementInfo | None, depth: int) -> _BytesConv | None:
    """Return the converter of a value held as bytes (variable-length fields, list elements)."""
    if info is None:
        return None
    if info.data_type is DataType.BASIC_LIST:
        return partial(decode_basic_list_untrusted, depth=depth + 1)
    return _ANY_LENGTH.get(info.data_type)


# --- basicList (RFC 6313 §4.5.3) ---------------------------------------------------------------


def _split_varlen_untrusted(data: bytes, pos: int, end: int) -> list[bytes]:
    items: list[bytes] = []
    while pos < end:
        length = data[pos]
        pos += 1
        if length == 255:
            if end - pos < 2:
                raise BadIpfix("long variable-length prefix runs past its container")
            length = (data[pos] << 8) | data[pos + 1]
            pos += 2
        if end - pos < length:
            raise BadIpfix("variable-length value runs past its container")
        items.append(data[pos : pos + length])
        pos += length
    return items


class InvalidListText(BadIpfix):
    """A basicList element of a string type is not UTF-8.

    The record decoder keeps such a list raw and flags it, like an ill-formed string field; only
    a caller of :func:`decode_basic_list_untrusted` alone sees it as malformed. (A bare
    ``UnicodeDecodeError`` escaped before: found by fuzz/targets/fuzz_ipfix_message.py.)
    """


_TEXT_ERRORS = (UnicodeDecodeError, InvalidListText)

_LIST_CONVS: dict[tuple[int, int, int], _BytesConv | None] = {}


def _list_conv(pen: int, element_id: int, depth: int) -> _BytesConv | None:
    """Return the element converter of a list; memoised for dictionary elements only."""
    key = (pen, element_id, depth)
    try:
        return _LIST_CONVS[key]
    except KeyError:
        pass
    info = element_info(pen, element_id)
    conv = _bytes_conv(info, depth)
    if info is not None:
        _LIST_CONVS[key] = conv
    return conv


def decode_basic_list_untrusted(data: bytes, depth: int = 1) -> list[object]:
    """Decode a basicList value into the list of its element values.

    :param data: the list content (after the field's own variable-length prefix).
    :param depth: the nesting level of this list (1 for a list in a record).
    :raises BadIpfix: a truncated header, elements that do not fill the list exactly, or
        nesting deeper than :data:`MAX_LIST_DEPTH`.
    """
    if depth > MAX_LIST_DEPTH:
        raise BadIpfix(f"basicList nested deeper than {MAX_LIST_DEPTH}")
    end = len(data)
    if end < _LIST_HEADER.size:
        raise BadIpfix("basicList header truncated")
    _semantic, raw_id, element_length = _LIST_HEADER.unpack_from(data, 0)
    pos = _LIST_HEADER.size
    pen = 0
    if raw_id & ENTERPRISE_BIT:
        if end - pos < _PEN.size:
            raise BadIpfix("basicList enterprise number truncated")
        (pen,) = _PEN.unpack_from(data, pos)
        pos += _PEN.size
    conv = _list_conv(pen, raw_id & ~ENTERPRISE_BIT, depth)
    if element_length == VARIABLE_LENGTH:
        raw = _split_varlen_untrusted(data, pos, end)
    elif element_length == 0:
        if pos != end:
            raise BadIpfix("basicList of zero-length elements has content")
        raw = []
    else:
        if (end - pos) % element_length:
            raise BadIpfix("basicList content is not a whole number of elements")
        raw = [data[i : i + element_length] for i in range(pos, end, element_length)]
    if conv is None:
        return raw  # type: ignore[return-value]  # A list[bytes] is a list[object] here.
    try:
        return [conv(item) for item in raw]
    except UnicodeDecodeError as exc:
        raise InvalidListText(f"basicList element is not UTF-8 ({exc.reason})") from None


# --- Compiled templates -------------------------------------------------------------------------

_Fields = dict[str, object]
_Work = dict[_Key, object]  # Values while decoding; unknown (PEN, ID) keys move to the raw dict.
_Raw = dict[tuple[int, int], bytes]


@dataclass(frozen=True, slots=True)
class _FixedRun:
    """Consecutive fixed-length fields decoded with one struct."""

    struct: struct.Struct
    keys: tuple[_Key, ...]
    convs: tuple[tuple[int, _Conv], ...]
    unknown: tuple[tuple[int, int], ...]


# One step of a mixed template, as a plain tuple for speed: (run, None, None, False) for a fixed
# run, (None, key, converter, is_unknown) for a variable-length field.
_Step = tuple[_FixedRun | None, _Key, _BytesConv | None, bool]


def _key(spec: FieldSpec, info: ElementInfo | None) -> _Key:
    return info.name if info is not None else (spec.enterprise, spec.element_id)


def _make_run(specs: list[tuple[FieldSpec, ElementInfo | None]]) -> _FixedRun:
    codes: list[str] = []
    keys: list[_Key] = []
    convs: list[tuple[int, _Conv]] = []
    for index, (spec, info) in enumerate(specs):
        code, conv = _fixed_code(info, spec.length)
        codes.append(code)
        keys.append(_key(spec, info))
        if conv is not None:
            convs.append((index, conv))
    unknown = tuple(dict.fromkeys(k for k in keys if isinstance(k, tuple)))
    return _FixedRun(struct.Struct("!" + "".join(codes)), tuple(keys), tuple(convs), unknown)


def _compile_steps(template: Template) -> list[_FixedRun | tuple[_Key, _BytesConv | None]]:
    steps: list[_FixedRun | tuple[_Key, _BytesConv | None]] = []
    pending: list[tuple[FieldSpec, ElementInfo | None]] = []
    for spec in template.fields:
        info = element_info(spec.enterprise, spec.element_id)
        if not spec.variable:
            pending.append((spec, info))
            continue
        if pending:
            steps.append(_make_run(pending))
            pending = []
        steps.append((_key(spec, info), _bytes_conv(info, 0)))
    if pending:
        steps.append(_make_run(pending))
    return steps


def _convert_slowly(run: _FixedRun, vals: tuple[object, ...], invalid: list[str]) -> list[object]:
    """Apply converters one field at a time, flagging ill-formed UTF-8."""
    out = list(vals)
    for index, conv in run.convs:
        try:
            out[index] = conv(out[index])  # type: ignore[arg-type]
        except _TEXT_ERRORS:
            invalid.append(str(run.keys[index]))
    return out


def _convert(run: _FixedRun, vals: tuple[object, ...], invalid: list[str]) -> list[object]:
    out = list(vals)
    try:
        for index, conv in run.convs:
            out[index] = conv(out[index])  # type: ignore[arg-type]
    except _TEXT_ERRORS:
        return _convert_slowly(run, vals, invalid)
    return out


class TemplateDecoder:
    """The compiled decoder of one template.

    :param template: the template to compile.
    """

    __slots__ = ("_fixed", "_scope", "_steps", "min_length", "template")

    def __init__(self, template: Template) -> None:
        self.template = template
        self.min_length = template.min_record_length
        compiled = _compile_steps(template)
        first = compiled[0]
        self._fixed = first if len(compiled) == 1 and isinstance(first, _FixedRun) else None
        self._steps: list[_Step] = [
            (c, "", None, False)
            if isinstance(c, _FixedRun)
            else (None, c[0], c[1], isinstance(c[0], tuple))
            for c in compiled
        ]
        self._scope = tuple(
            name
            for name in (
                _key(f, element_info(f.enterprise, f.element_id))
                for f in template.fields[: template.scope_count]
            )
            if isinstance(name, str)
        )

    def decode_set_untrusted(
        self, body: bytes, exporter: ExporterKey, odid: int, export_time: int, sequence: int
    ) -> list[DataRecord]:
        """Decode every record of a data set body (its padding is skipped).

        :raises BadIpfix: a variable-length field or list that runs past the set.
        """
        tid = self.template.template_id
        scope = self._scope
        rows = self._fixed_rows(body) if self._fixed is not None else self._mixed_rows(body)
        return [
            DataRecord(exporter, odid, tid, export_time, sequence, values, raw, scope, invalid)
            for values, raw, invalid in rows
        ]

    def _fixed_rows(self, body: bytes) -> list[tuple[_Fields, _Raw, frozenset[str]]]:
        run = self._fixed
        assert run is not None
        size = run.struct.size
        usable = len(body) - len(body) % size
        keys, convs, unknown = run.keys, run.convs, run.unknown
        rows: list[tuple[_Fields, _Raw, frozenset[str]]] = []
        for vals in run.struct.iter_unpack(body[:usable] if usable != len(body) else body):
            invalid = _NO_INVALID
            if convs:
                flagged: list[str] = []
                values: _Work = dict(zip(keys, _convert(run, vals, flagged), strict=False))
                if flagged:
                    invalid = frozenset(flagged)
            else:
                values = dict(zip(keys, vals, strict=False))
            raw: _Raw = {}
            for key in unknown:
                raw[key] = values.pop(key)  # type: ignore[assignment]  # Unknown fields are bytes.
            rows.append((cast(_Fields, values), raw, invalid))
        return rows

    def _mixed_rows(self, body: bytes) -> list[tuple[_Fields, _Raw, frozenset[str]]]:
        end = len(body)
        pos = 0
        minimum = self.min_length
        steps = self._steps
        rows: list[tuple[_Fields, _Raw, frozenset[str]]] = []
        while end - pos >= minimum:
            values: _Work = {}
            raw: _Raw = {}
            invalid: list[str] = []
            for run, key, conv, unknown in steps:
                if run is not None:
                    size = run.struct.size
                    if end - pos < size:
                        raise BadIpfix("fixed fields run past the set")
                    vals = run.struct.unpack_from(body, pos)
                    pos += size
                    values.update(
                        zip(
                            run.keys,
                            _convert(run, vals, invalid) if run.convs else vals,
                            strict=False,
                        )
                    )
                    for gone in run.unknown:
                        raw[gone] = values.pop(gone)  # type: ignore[assignment]  # Bytes.
                    continue
                if pos >= end:
                    raise BadIpfix("variable-length prefix runs past the set")
                length = body[pos]
                pos += 1
                if length == 255:
                    if end - pos < 2:
                        raise BadIpfix("long variable-length prefix runs past the set")
                    length = (body[pos] << 8) | body[pos + 1]
                    pos += 2
                if end - pos < length:
                    raise BadIpfix("variable-length value runs past the set")
                data = body[pos : pos + length]
                pos += length
                if unknown:
                    raw[key] = data  # type: ignore[index]  # Unknown keys are (PEN, ID).
                elif conv is None:
                    values[key] = data
                else:
                    try:
                        values[key] = conv(data)
                    except _TEXT_ERRORS:
                        values[key] = data
                        invalid.append(str(key))
            rows.append(
                (cast(_Fields, values), raw, frozenset(invalid) if invalid else _NO_INVALID)
            )
        return rows


def compile_template(template: Template) -> TemplateDecoder:
    """Compile ``template`` into a :class:`TemplateDecoder`."""
    return TemplateDecoder(template)
