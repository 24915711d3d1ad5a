"""Conversion between normalised records and database rows (both dialects)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from operator import attrgetter
from typing import Final, cast

from ocgate.nvm._records import (
    EndpointRecord,
    FlowRecord,
    GenericRecord,
    InterfaceRecord,
    JsonValue,
    Module,
    exporter_address,
)

__all__ = [
    "CONTEXT_FIELDS",
    "DESTINATION_FIELDS",
    "ENDPOINT_COLUMNS",
    "FLOW_COLUMNS",
    "FLOW_DIRECT",
    "FLOW_SELECT",
    "GENERIC_COLUMNS",
    "INTERFACE_COLUMNS",
    "PROCESS_FIELDS",
    "Prepared",
    "Row",
    "dumps",
    "endpoint_from_row",
    "endpoint_row",
    "flow_from_row",
    "flow_sort_key",
    "generic_row",
    "interface_from_row",
    "interface_row",
    "loads",
    "modules_json",
    "prepare_flow",
    "quoted",
]

Row = tuple[object, ...]

# A flow is split three ways (see ``_schema``): the endpoint context (who and where from, with
# the VPN attribution), the process (with its module list) and the destination hostname are
# interned in dimension tables; what varies per flow stays in ``flows``.
CONTEXT_FIELDS: Final = (
    "exporter",
    "odid",
    "template_id",
    "udid",
    "user",
    "user_authority",
    "user_principal",
    "user_account_type",
    "src_addr",
    "dns_suffix",
    "interface_uid",
    "vpn_user",
    "vpn_session",
)
PROCESS_FIELDS: Final = (
    "process_name",
    "process_hash",
    "process_account",
    "process_account_type",
    "process_path",
    "process_args",
    "parent_process_name",
    "parent_process_hash",
    "parent_process_account",
    "parent_process_account_type",
    "parent_process_path",
    "parent_process_args",
)
FLOW_DIRECT: Final = (
    "time_start",
    "time_end",
    "protocol",
    "src_port",
    "dst_port",
    "bytes_in",
    "bytes_out",
    "octets",
    "packets",
    "process_id",
    "parent_process_id",
)
DESTINATION_FIELDS: Final = ("dst_addr", "dst_hostname")
FLOW_COLUMNS: Final = ("id", "seg", "ctx_id", "proc_id", "dst_id", *FLOW_DIRECT, "extra")
"""Columns written to ``flows``, in the order of the writer's rows."""

_context_base = attrgetter(*CONTEXT_FIELDS[:-2])
_process_base = attrgetter(*PROCESS_FIELDS)
_direct = attrgetter(*FLOW_DIRECT)
_module_pair = attrgetter("name", "hash")

Prepared = tuple[
    float,  # time_start
    float,  # time_end
    str | None,  # the exporter's address: what attribution looks up (never src_addr)
    str | None,  # vpn_user
    str | None,  # vpn_session
    Row,  # context key without the attribution
    Row,  # process key: PROCESS_FIELDS values, then the module (name, hash) pairs
    tuple[str | None, str | None] | None,  # destination key (None: neither address nor name)
    Row,  # FLOW_DIRECT values, then the extra JSON
]
"""A flow reduced to what the writer needs (see :func:`prepare_flow`)."""


_exporter_address = lru_cache(maxsize=65536)(exporter_address)


def prepare_flow(flow: FlowRecord) -> Prepared:
    """The writer's view of a flow: its dimension keys and per-flow values, as plain tuples.

    Built by the caller of ``write_batch`` (the writer thread only attributes, interns and
    inserts); tuples of strings hash and compare in C, unlike the record's dataclasses. The
    address attribution looks up is the exporter's (``ocgate.nvm._collector`` says why).
    """
    dst = flow.dst_addr
    name = flow.dst_hostname
    return (
        flow.time_start,
        flow.time_end,
        _exporter_address(flow.exporter),
        flow.vpn_user,
        flow.vpn_session,
        _context_base(flow),
        (*_process_base(flow), tuple(map(_module_pair, flow.modules))),
        None if dst is None and name is None else (dst, name),
        (*_direct(flow), dumps(dict(flow.extra)) if flow.extra else None),
    )


_SELECTED: Final = (
    "id",
    *FLOW_DIRECT,
    "extra",
    *CONTEXT_FIELDS,
    *PROCESS_FIELDS,
    "modules",
    *DESTINATION_FIELDS,
)
FLOW_SELECT: Final = (
    "SELECT "
    + ", ".join(f'flows."{name}"' for name in ("id", *FLOW_DIRECT, "extra"))
    + ", "
    + ", ".join(f'c."{name}"' for name in CONTEXT_FIELDS)
    + ", "
    + ", ".join(f'p."{name}"' for name in (*PROCESS_FIELDS, "modules"))
    + ", d.dst_addr, d.dst_hostname FROM flows "
    "LEFT JOIN flow_contexts c ON c.id = flows.ctx_id "
    "LEFT JOIN flow_processes p ON p.id = flows.proc_id "
    "LEFT JOIN flow_destinations d ON d.id = flows.dst_id"
)
"""Reads a flow with its dimensions, in :func:`flow_from_row` order."""
_FLOW_ID: Final = 0
_FLOW_TIME_END: Final = 1 + FLOW_DIRECT.index("time_end")

ENDPOINT_COLUMNS: Final = tuple(EndpointRecord.__dataclass_fields__)
_endpoint_base = attrgetter(*ENDPOINT_COLUMNS[:-1])
INTERFACE_COLUMNS: Final = tuple(InterfaceRecord.__dataclass_fields__)
_interface_base = attrgetter(*INTERFACE_COLUMNS[:-1])
GENERIC_COLUMNS: Final = ("time", "exporter", "odid", "template_id", "udid", "data")


def quoted(columns: Sequence[str]) -> str:
    """``"a", "b"``: every identifier quoted (``user`` is reserved in PostgreSQL)."""
    return ", ".join(f'"{name}"' for name in columns)


def dumps(value: JsonValue) -> str:
    """Compact JSON text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: object) -> JsonValue:
    """Parse a JSON column (``None`` stays ``None``)."""
    if text is None:
        return None
    parsed: JsonValue = json.loads(str(text))
    return parsed


def modules_json(modules: Sequence[tuple[str | None, str | None]]) -> str | None:
    """The ``modules`` column of a list of module ``(name, hash)`` pairs (``None`` if empty)."""
    if not modules:
        return None
    return dumps([{"name": name, "hash": digest} for name, digest in modules])


def flow_sort_key(row: Row) -> tuple[float, int]:
    """``(time_end, id)`` of a :data:`FLOW_SELECT` row: the listing order (descending)."""
    return float(cast(float, row[_FLOW_TIME_END])), int(cast(int, row[_FLOW_ID]))


def flow_from_row(row: Row) -> FlowRecord:
    """A :class:`FlowRecord` from a row of :data:`FLOW_SELECT`."""
    values = dict(zip(_SELECTED, row, strict=True))
    modules = loads(values.pop("modules"))
    extra = loads(values.pop("extra"))
    # A context row is never missing (retention keeps every referenced one); be total anyway.
    values["exporter"] = values["exporter"] or ""
    values["odid"] = values["odid"] or 0
    values["template_id"] = values["template_id"] or 0
    return FlowRecord(
        modules=tuple(
            Module(name=_opt_str(m.get("name")), hash=_opt_str(m.get("hash")))
            for m in (modules if isinstance(modules, list) else [])
            if isinstance(m, dict)
        ),
        extra=extra if isinstance(extra, dict) else {},
        **values,  # type: ignore[arg-type]
    )


def endpoint_row(record: EndpointRecord) -> Row:
    """The row of :data:`ENDPOINT_COLUMNS`."""
    base: Row = _endpoint_base(record)
    return (*base, dumps(dict(record.extra)) if record.extra else None)


def endpoint_from_row(row: Row) -> EndpointRecord:
    """An :class:`EndpointRecord` from a row of :data:`ENDPOINT_COLUMNS`."""
    values = dict(zip(ENDPOINT_COLUMNS, row, strict=True))
    extra = loads(values.pop("extra"))
    return EndpointRecord(extra=extra if isinstance(extra, dict) else {}, **values)  # type: ignore[arg-type]


def interface_row(record: InterfaceRecord) -> Row:
    """The row of :data:`INTERFACE_COLUMNS`."""
    base: Row = _interface_base(record)
    return (*base, dumps(dict(record.extra)) if record.extra else None)


def interface_from_row(row: Row) -> InterfaceRecord:
    """An :class:`InterfaceRecord` from a row of :data:`INTERFACE_COLUMNS`."""
    values = dict(zip(INTERFACE_COLUMNS, row, strict=True))
    extra = loads(values.pop("extra"))
    return InterfaceRecord(extra=extra if isinstance(extra, dict) else {}, **values)  # type: ignore[arg-type]


def generic_row(record: GenericRecord) -> Row:
    """The row of :data:`GENERIC_COLUMNS`."""
    return (
        record.time,
        record.exporter,
        record.odid,
        record.template_id,
        record.udid,
        dumps(dict(record.values)),
    )


def _opt_str(value: JsonValue) -> str | None:
    return value if isinstance(value, str) else None
