"""An IPFIX encoder for tests, fuzzing, benchmarks and re-export (the inverse of the decoder).

It builds messages with templates, options templates, withdrawals and data records (fixed and
variable-length fields in both prefix forms, enterprise elements, basicList), with arbitrary header
values, so every decoder path can be driven byte-exactly. Values follow the decoder's conventions
(:class:`~ocgate.nvm.ipfix.events.DataRecord`); ``bytes`` are always written as they are.
Misuse (a value that does not fit its field) raises :class:`~ocgate.errors.LocalProtocolError`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from ocgate.errors import LocalProtocolError
from ocgate.nvm.ipfix._decode import NTP_UNIX_OFFSET
from ocgate.nvm.ipfix._elements import DataType, element_info
from ocgate.nvm.ipfix._message import IPFIX_VERSION, MESSAGE_HEADER, SET_HEADER, SetId
from ocgate.nvm.ipfix._templates import ENTERPRISE_BIT, FieldSpec, Template

__all__ = [
    "BasicList",
    "TemplateSpec",
    "VarLen",
    "encode_data_set",
    "encode_message",
    "encode_record",
    "encode_set",
    "encode_template_set",
    "encode_value",
    "encode_varlen",
    "encode_withdrawal_set",
]

TemplateSpec = Template
"""Templates are encoded from the same :class:`Template` the decoder produces."""

_NATURAL = {
    DataType.UNSIGNED8: 1,
    DataType.UNSIGNED16: 2,
    DataType.UNSIGNED32: 4,
    DataType.UNSIGNED64: 8,
    DataType.SIGNED8: 1,
    DataType.SIGNED16: 2,
    DataType.SIGNED32: 4,
    DataType.SIGNED64: 8,
    DataType.FLOAT32: 4,
    DataType.FLOAT64: 8,
    DataType.BOOLEAN: 1,
    DataType.DATE_TIME_SECONDS: 4,
    DataType.DATE_TIME_MILLISECONDS: 8,
    DataType.DATE_TIME_MICROSECONDS: 8,
    DataType.DATE_TIME_NANOSECONDS: 8,
}
_SIGNED = {DataType.SIGNED8, DataType.SIGNED16, DataType.SIGNED32, DataType.SIGNED64}


@dataclass(frozen=True, slots=True)
class BasicList:
    """A basicList value (RFC 6313 §4.5.3).

    :param element: the element field: its ID, PEN and length (:data:`VARIABLE_LENGTH` = each
        element carries its own prefix).
    :param values: the element values.
    :param semantic: 0x03 allOf by default (what NVM sends).
    :param long_prefixes: write the elements' variable-length prefixes in the 3-byte form.
    """

    element: FieldSpec
    values: tuple[object, ...]
    semantic: int = 0x03
    long_prefixes: bool = False


@dataclass(frozen=True, slots=True)
class VarLen:
    """Force the prefix form of one variable-length value.

    :param value: the value.
    :param long_form: ``True`` for 255 + 2-byte length, ``False`` for the 1-byte prefix.
    """

    value: object
    long_form: bool = True


def encode_varlen(content: bytes, *, long_form: bool = False) -> bytes:
    """Prefix ``content`` with its variable length (RFC 7011 §7)."""
    if long_form or len(content) >= 255:
        if len(content) > 0xFFFF:
            raise LocalProtocolError("variable-length value longer than 65535 bytes")
        return b"\xff" + struct.pack("!H", len(content)) + content
    return bytes([len(content)]) + content


def _encode_list(value: BasicList) -> bytes:
    element = value.element
    raw_id = element.element_id | (ENTERPRISE_BIT if element.enterprise else 0)
    out = struct.pack("!BHH", value.semantic, raw_id, element.length)
    if element.enterprise:
        out += struct.pack("!I", element.enterprise)
    for item in value.values:
        content = encode_value(element, item)
        if element.variable:
            content = encode_varlen(content, long_form=value.long_prefixes)
        out += content
    return out


def _encode_number(dtype: DataType, length: int, value: float) -> bytes:
    if dtype in (DataType.FLOAT32, DataType.FLOAT64):
        return struct.pack("!f" if length == 4 else "!d", value)
    if dtype is DataType.DATE_TIME_SECONDS:
        value = int(value)
    elif dtype is DataType.DATE_TIME_MILLISECONDS:
        value = round(value * 1000)
    elif dtype in (DataType.DATE_TIME_MICROSECONDS, DataType.DATE_TIME_NANOSECONDS):
        whole = int(value)
        fraction = round((value - whole) * 4294967296)
        value = ((whole + NTP_UNIX_OFFSET) << 32) | fraction
    try:
        return int(value).to_bytes(length, "big", signed=dtype in _SIGNED)
    except OverflowError as exc:
        raise LocalProtocolError(f"{value} does not fit in {length} bytes") from exc


def encode_value(spec: FieldSpec, value: object) -> bytes:
    """Encode one field's content (without a variable-length prefix).

    :param spec: the field; its element's dictionary type guides the encoding.
    :param value: ``bytes`` (as is), ``int``, ``float``, ``bool``, ``str``, an IP address or a
        :class:`BasicList`.
    """
    info = element_info(spec.enterprise, spec.element_id)
    dtype = info.data_type if info is not None else DataType.OCTET_ARRAY
    length = spec.length
    if spec.variable:
        length = _NATURAL.get(dtype, 0)
    if isinstance(value, bytes):
        content = value
    elif isinstance(value, BasicList):
        content = _encode_list(value)
    elif isinstance(value, IPv4Address | IPv6Address):
        content = value.packed
    elif isinstance(value, bool):
        content = b"\x01" if value else b"\x02"
    elif isinstance(value, str):
        content = (
            bytes.fromhex(value.replace(":", ""))
            if dtype is DataType.MAC_ADDRESS
            else value.encode("utf-8")
        )
    elif isinstance(value, int | float):
        content = _encode_number(dtype, length, value)
    else:
        raise LocalProtocolError(f"cannot encode {type(value).__name__}")
    if not spec.variable and len(content) != spec.length:
        raise LocalProtocolError(f"value of {len(content)} bytes for a {spec.length}-byte field")
    return content


def encode_record(
    template: Template, values: Sequence[object], *, long_form: bool = False
) -> bytes:
    """Encode one data record.

    :param values: one value per template field, in order; :class:`VarLen` forces a prefix form.
    :param long_form: use the 3-byte prefix for every variable-length field.
    """
    if len(values) != len(template.fields):
        raise LocalProtocolError(f"{len(values)} values for {len(template.fields)} fields")
    out = bytearray()
    for spec, value in zip(template.fields, values, strict=True):
        force = long_form
        if isinstance(value, VarLen):
            force, value = value.long_form, value.value
        content = encode_value(spec, value)
        out += encode_varlen(content, long_form=force) if spec.variable else content
    return bytes(out)


def encode_set(set_id: int, body: bytes, *, padding: int = 0) -> bytes:
    """Wrap ``body`` (plus ``padding`` zero bytes) in a set header."""
    content = body + bytes(padding)
    return SET_HEADER.pack(set_id, SET_HEADER.size + len(content)) + content


def encode_template_set(
    templates: Sequence[Template], *, options: bool | None = None, padding: int = 0
) -> bytes:
    """Encode a template set, or an options template set when the templates have scopes."""
    if options is None:
        options = any(t.options for t in templates)
    set_id = SetId.OPTIONS_TEMPLATE if options else SetId.TEMPLATE
    return encode_set(set_id, b"".join(t.to_bytes() for t in templates), padding=padding)


def encode_withdrawal_set(template_ids: Sequence[int], *, options: bool = False) -> bytes:
    """Encode withdrawals (Field Count 0); ID 2 / 3 withdraws all (options) templates."""
    set_id = SetId.OPTIONS_TEMPLATE if options else SetId.TEMPLATE
    return encode_set(set_id, b"".join(struct.pack("!HH", tid, 0) for tid in template_ids))


def encode_data_set(
    template: Template,
    records: Sequence[Sequence[object]],
    *,
    long_form: bool = False,
    padding: int = 0,
) -> bytes:
    """Encode a data set of ``records`` for ``template``."""
    body = b"".join(encode_record(template, r, long_form=long_form) for r in records)
    return encode_set(template.template_id, body, padding=padding)


def encode_message(
    sets: Sequence[bytes],
    *,
    export_time: int = 0,
    sequence: int = 0,
    observation_domain_id: int = 0,
) -> bytes:
    """Encode a message from encoded sets, with any header values."""
    body = b"".join(sets)
    length = MESSAGE_HEADER.size + len(body)
    if length > 0xFFFF:
        raise LocalProtocolError(f"message of {length} bytes exceeds 65535")
    header = MESSAGE_HEADER.pack(
        IPFIX_VERSION, length, export_time, sequence % (1 << 32), observation_domain_id
    )
    return header + body
