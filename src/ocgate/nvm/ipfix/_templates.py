"""Template and options-template records (RFC 7011 §3.4) and their field specifiers.

Theory of operation:

* A template set (ID 2) holds template records: Template ID (≥ 256), Field Count, then that many
  field specifiers. An options template set (ID 3) adds a Scope Field Count (≥ 1, ≤ Field Count)
  after the Field Count; the scope fields come first (§3.4.2.2).
* A field specifier is a 16-bit IE ID whose top bit is the enterprise bit, a 16-bit length
  (65535 = variable length, §7) and, with the enterprise bit, a 32-bit PEN (§3.2).
* A record with Field Count 0 is a withdrawal (§8.1); Template ID 2 (in set 2) or 3 (in set 3)
  with count 0 withdraws them all. Whether to honour it is the session's decision (§8.4).
* Up to three trailing bytes, or trailing zero bytes, are padding (§3.3.1).
* Every template must describe a record of at least one byte, so decoding always makes
  progress (nvm-ipfix.md §3: an infinite loop bit another collector).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ocgate.errors import BadIpfix
from ocgate.nvm.ipfix._message import SetId

__all__ = [
    "ENTERPRISE_BIT",
    "MAX_FIELDS_PER_TEMPLATE",
    "VARIABLE_LENGTH",
    "FieldSpec",
    "Template",
    "TemplateWithdrawal",
    "parse_template_record_untrusted",
    "parse_template_set_untrusted",
]

ENTERPRISE_BIT = 0x8000
"""RFC 7011 §3.2: top bit of the IE ID in a field specifier; a 4-byte PEN follows."""

VARIABLE_LENGTH = 0xFFFF
"""RFC 7011 §7: the field length that announces a variable-length encoding."""

MAX_FIELDS_PER_TEMPLATE = 512
"""Our cap on fields per template (nvm-ipfix.md §3); NVM's largest template has 25."""

# Template record header (RFC 7011 §3.4.1): Template ID, Field Count.
_TEMPLATE_HEADER = struct.Struct("!HH")
# Options template record header (RFC 7011 §3.4.2.2): Template ID, Field Count, Scope Field Count.
_OPTIONS_HEADER = struct.Struct("!HHH")
# Field specifier (RFC 7011 §3.2): E bit + IE ID, Field Length; then PEN if the E bit is set.
_FIELD = struct.Struct("!HH")
_PEN = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field specifier of a template.

    :param element_id: the Information Element ID, without the enterprise bit.
    :param length: the field length in bytes, or :data:`VARIABLE_LENGTH`.
    :param enterprise: the Private Enterprise Number; 0 for IANA elements.
    """

    element_id: int
    length: int
    enterprise: int = 0

    @property
    def variable(self) -> bool:
        """Whether the field uses the variable-length encoding."""
        return self.length == VARIABLE_LENGTH

    def to_bytes(self) -> bytes:
        """Encode the field specifier."""
        if self.enterprise:
            return _FIELD.pack(self.element_id | ENTERPRISE_BIT, self.length) + _PEN.pack(
                self.enterprise
            )
        return _FIELD.pack(self.element_id, self.length)


@dataclass(frozen=True, slots=True)
class Template:
    """A template or options template.

    :param template_id: 256-65535.
    :param fields: the field specifiers in record order.
    :param scope_count: the number of leading scope fields; 0 for a plain template.
    """

    template_id: int
    fields: tuple[FieldSpec, ...]
    scope_count: int = 0

    @property
    def options(self) -> bool:
        """Whether this is an options template (set 3)."""
        return self.scope_count > 0

    @property
    def min_record_length(self) -> int:
        """The smallest possible record: fixed lengths plus one prefix byte per variable field."""
        return sum(1 if f.variable else f.length for f in self.fields)

    def to_bytes(self) -> bytes:
        """Encode the template record, as it appears in its set."""
        if self.scope_count:
            head = _OPTIONS_HEADER.pack(self.template_id, len(self.fields), self.scope_count)
        else:
            head = _TEMPLATE_HEADER.pack(self.template_id, len(self.fields))
        return head + b"".join(f.to_bytes() for f in self.fields)


@dataclass(frozen=True, slots=True)
class TemplateWithdrawal:
    """A template withdrawal record (Field Count 0, RFC 7011 §8.1).

    :param template_id: the template to withdraw, or 2 / 3 for "all (options) templates".
    :param options: whether it came in an options template set.
    """

    template_id: int
    options: bool

    @property
    def withdraw_all(self) -> bool:
        """Whether this withdraws every template of its kind in the domain."""
        return self.template_id in (SetId.TEMPLATE, SetId.OPTIONS_TEMPLATE)


def _pull_fields_untrusted(
    data: bytes, pos: int, count: int, end: int
) -> tuple[tuple[FieldSpec, ...], int]:
    fields: list[FieldSpec] = []
    for _ in range(count):
        if end - pos < _FIELD.size:
            raise BadIpfix("field specifier runs past the set")
        raw_id, length = _FIELD.unpack_from(data, pos)
        pos += _FIELD.size
        pen = 0
        if raw_id & ENTERPRISE_BIT:
            if end - pos < _PEN.size:
                raise BadIpfix("enterprise number runs past the set")
            (pen,) = _PEN.unpack_from(data, pos)
            pos += _PEN.size
        fields.append(FieldSpec(raw_id & ~ENTERPRISE_BIT, length, pen))
    return tuple(fields), pos


def parse_template_record_untrusted(
    data: bytes, pos: int, *, options: bool, end: int | None = None
) -> tuple[Template | TemplateWithdrawal, int]:
    """Parse one (options) template record starting at ``pos``.

    :param data: the buffer (a set body, or a stored template record).
    :param options: whether the record comes from an options template set.
    :param end: where the container ends; the end of ``data`` by default.
    :returns: the template or withdrawal, and the position after it.
    :raises BadIpfix: a record that breaks RFC 7011 §3.4 or our field cap.
    """
    end = len(data) if end is None else end
    if end - pos < _TEMPLATE_HEADER.size:
        raise BadIpfix("template record header runs past the set")
    template_id, count = _TEMPLATE_HEADER.unpack_from(data, pos)
    if count == 0:
        return TemplateWithdrawal(template_id, options), pos + _TEMPLATE_HEADER.size
    if template_id < SetId.MIN_DATA:
        raise BadIpfix(f"template ID {template_id} < 256")
    if count > MAX_FIELDS_PER_TEMPLATE:
        raise BadIpfix(f"template {template_id} has {count} fields (cap {MAX_FIELDS_PER_TEMPLATE})")
    scope_count = 0
    if options:
        if end - pos < _OPTIONS_HEADER.size:
            raise BadIpfix("options template record header runs past the set")
        _, _, scope_count = _OPTIONS_HEADER.unpack_from(data, pos)
        if not 1 <= scope_count <= count:
            raise BadIpfix(f"options template {template_id}: scope count {scope_count} invalid")
        pos += _OPTIONS_HEADER.size
    else:
        pos += _TEMPLATE_HEADER.size
    fields, pos = _pull_fields_untrusted(data, pos, count, end)
    template = Template(template_id, fields, scope_count)
    if template.min_record_length == 0:
        raise BadIpfix(f"template {template_id} describes empty records")
    return template, pos


def parse_template_set_untrusted(
    body: bytes, *, options: bool
) -> list[Template | TemplateWithdrawal]:
    """Parse the body of a template set (ID 2) or options template set (ID 3).

    :param body: the set content after its header.
    :param options: ``True`` for set ID 3.
    :raises BadIpfix: any malformed record.
    """
    records: list[Template | TemplateWithdrawal] = []
    pos = 0
    end = len(body)
    while end - pos >= _TEMPLATE_HEADER.size:
        if body[pos] == 0 and body[pos + 1] == 0 and not any(body[pos:end]):
            break  # Zero padding after the last record.
        record, pos = parse_template_record_untrusted(body, pos, options=options, end=end)
        records.append(record)
    return records
