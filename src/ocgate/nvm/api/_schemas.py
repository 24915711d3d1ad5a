"""JSON shapes of the NVM API: record serialisation and the OpenAPI 3.1 document.

The field tables below are the single description of every JSON field; :func:`openapi_document`
builds the schema from them and a test checks that they name exactly the fields of the record
dataclasses, so the published schema cannot drift from the responses. This module is pure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Final

from ocgate.nvm._records import EndpointRecord, FlowRecord, InterfaceRecord, JsonValue, Module
from ocgate.nvm.api._params import (
    DEFAULT_LIMIT,
    DEFAULT_TOP_LIMIT,
    MAX_LIMIT,
    MAX_STEP,
    MAX_TIMELINE_POINTS,
)

__all__ = [
    "API_PREFIX",
    "ENDPOINT_FIELDS",
    "EXPORTER_COUNTERS",
    "FLOW_FIELDS",
    "INTERFACE_FIELDS",
    "dumps",
    "endpoint_to_json",
    "flow_to_json",
    "interface_to_json",
    "openapi_document",
]

API_PREFIX: Final = "/api/v1"

Schema = dict[str, JsonValue]


def _t(kind: str, description: str, *, nullable: bool = True, fmt: str | None = None) -> Schema:
    schema: Schema = {"type": [kind, "null"] if nullable else kind, "description": description}
    if fmt is not None:
        schema["format"] = fmt
    return schema


_STR, _INT, _NUM = "string", "integer", "number"
_EXTRA: Final[Schema] = {
    "type": "object",
    "additionalProperties": True,
    "description": "Decoded elements without a column of their own, keyed by IE name "
    '(undecoded ones as hex under "unknown" by "PEN:ID").',
}

FLOW_FIELDS: Final[Mapping[str, Schema]] = {
    "id": _t(_INT, "Store row id."),
    "time_start": _t(_NUM, "Flow start, epoch seconds (UTC).", nullable=False),
    "time_end": _t(_NUM, "Flow end, epoch seconds (UTC); flows are ordered by it.", nullable=False),
    "protocol": _t(_INT, "IP protocol number (IE 4)."),
    "src_addr": _t(_STR, "Source address, compressed text form."),
    "src_port": _t(_INT, "Source port."),
    "dst_addr": _t(_STR, "Destination address."),
    "dst_port": _t(_INT, "Destination port."),
    "bytes_in": _t(_INT, "nvzFlow L4 payload bytes received (9:12346)."),
    "bytes_out": _t(_INT, "nvzFlow L4 payload bytes sent (9:12347)."),
    "octets": _t(_INT, "octetDeltaCount of standard exporters (IP bytes); NVM sends none."),
    "packets": _t(_INT, "Packet count of standard exporters."),
    "udid": _t(_STR, "Endpoint UDID, lower-case hex (9:12332)."),
    "user": _t(_STR, "Logged-in user as NVM reports it, Authority\\Principal (9:12333)."),
    "user_authority": _t(_STR, "Authority part of user (before the first backslash)."),
    "user_principal": _t(_STR, "Principal part of user."),
    "user_account_type": _t(_INT, "Account type of user (9:12361)."),
    "process_name": _t(_STR, "Process name (9:12340)."),
    "process_hash": _t(_STR, "Process SHA-256, lower-case hex (9:12341)."),
    "process_account": _t(_STR, "Account the process runs as (9:12338)."),
    "process_account_type": _t(_INT, "Account type of the process (9:12362)."),
    "process_path": _t(_STR, "Process path (9:12367)."),
    "process_args": _t(_STR, "Process arguments (9:12369); off by default (privacy)."),
    "process_id": _t(_INT, "Process id (9:12365)."),
    "parent_process_name": _t(_STR, "Parent process name (9:12342)."),
    "parent_process_hash": _t(_STR, "Parent process SHA-256, hex (9:12343)."),
    "parent_process_account": _t(_STR, "Parent process account (9:12339)."),
    "parent_process_account_type": _t(_INT, "Parent process account type (9:12363)."),
    "parent_process_path": _t(_STR, "Parent process path (9:12368)."),
    "parent_process_args": _t(_STR, "Parent process arguments (9:12370)."),
    "parent_process_id": _t(_INT, "Parent process id (9:12366)."),
    "dns_suffix": _t(_STR, "DNS suffix of the interface (9:12344)."),
    "dst_hostname": _t(_STR, "Destination host name the endpoint resolved (9:12345)."),
    "interface_uid": _t(_INT, "Interface the flow left by (9:12355); see the interfaces."),
    "modules": {
        "type": "array",
        "description": "Modules loaded by the process (9:12352 names with 9:12353 hashes).",
        "items": {"$ref": "#/components/schemas/Module"},
    },
    "exporter": _t(
        _STR, "Exporter as transport://address[:port] (port: TCP only).", nullable=False
    ),
    "odid": _t(_INT, "IPFIX observation domain id.", nullable=False),
    "template_id": _t(_INT, "IPFIX template id of the record.", nullable=False),
    "vpn_user": _t(
        _STR, "VPN login whose lease was the exporter's address (never src_addr, a claim)."
    ),
    "vpn_session": _t(_STR, "VPN session id of that lease."),
    "extra": _EXTRA,
}

ENDPOINT_FIELDS: Final[Mapping[str, Schema]] = {
    "udid": _t(_STR, "Endpoint UDID, lower-case hex.", nullable=False),
    "station_name": _t(_STR, "Station (host) name (IE 350 or 9:12377)."),
    "os_name": _t(_STR, "Operating system name (9:12334)."),
    "os_version": _t(_STR, "Operating system version (9:12335)."),
    "os_edition": _t(_STR, "Operating system edition (9:12351)."),
    "manufacturer": _t(_STR, "System manufacturer (9:12336)."),
    "system_type": _t(_STR, "System type, e.g. x64 (9:12337)."),
    "agent_version": _t(_STR, "NVM agent version (9:12364)."),
    "first_seen": _t(_NUM, "First report, epoch seconds.", nullable=False),
    "last_seen": _t(_NUM, "Latest report, epoch seconds.", nullable=False),
    "exporter": _t(_STR, "Exporter of the latest report.", nullable=False),
    "extra": _EXTRA,
}

INTERFACE_FIELDS: Final[Mapping[str, Schema]] = {
    "udid": _t(_STR, "Endpoint UDID, lower-case hex.", nullable=False),
    "interface_uid": _t(_INT, "Interface UID (9:12355); flows refer to it.", nullable=False),
    "interface_index": _t(_INT, "Interface index (9:12356)."),
    "interface_type": _t(_INT, "Interface type (9:12357)."),
    "interface_name": _t(_STR, "Interface name (9:12358)."),
    "first_seen": _t(_NUM, "First report, epoch seconds.", nullable=False),
    "last_seen": _t(_NUM, "Latest report, epoch seconds.", nullable=False),
    "exporter": _t(_STR, "Exporter of the latest report.", nullable=False),
    "extra": _EXTRA,
}

EXPORTER_COUNTERS: Final[Mapping[str, str]] = {
    "records": "Data records decoded.",
    "templates": "Template records accepted (refreshes included).",
    "sequence_gaps": "Data records lost according to the IPFIX sequence numbers.",
    "malformed": "Messages discarded as malformed (decode errors).",
}


_SEPARATORS: Final = (",", ":")


def _finite(value: JsonValue) -> JsonValue:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


def dumps(value: JsonValue) -> bytes:
    """Strict JSON (UTF-8); NaN and infinities, which JSON cannot carry, become ``null``."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(
            _finite(value), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
    return text.encode("utf-8")


def _modules(modules: tuple[Module, ...]) -> list[JsonValue]:
    return [{"name": module.name, "hash": module.hash} for module in modules]


def flow_to_json(record: FlowRecord) -> dict[str, JsonValue]:
    """The API object of one flow (field names are the :class:`FlowRecord` names)."""
    result: dict[str, JsonValue] = {}
    for name in FLOW_FIELDS:
        value = getattr(record, name)
        if name == "modules":
            result[name] = _modules(value)
        elif name == "extra":
            result[name] = dict(value)
        else:
            result[name] = value
    return result


def endpoint_to_json(record: EndpointRecord) -> dict[str, JsonValue]:
    """The API object of one endpoint."""
    result: dict[str, JsonValue] = {name: getattr(record, name) for name in ENDPOINT_FIELDS}
    result["extra"] = dict(record.extra)
    return result


def interface_to_json(record: InterfaceRecord) -> dict[str, JsonValue]:
    """The API object of one interface."""
    result: dict[str, JsonValue] = {name: getattr(record, name) for name in INTERFACE_FIELDS}
    result["extra"] = dict(record.extra)
    return result


def _object(fields: Mapping[str, Schema], description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "required": list(fields),
        "properties": dict(fields),
    }


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _param(name: str, description: str, schema: Schema, *, where: str = "query") -> Schema:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


_TIME_SCHEMA: Final[Schema] = {
    "type": "string",
    "description": "ISO 8601 (naive means UTC) or epoch seconds.",
    "examples": ["2024-04-05T03:26:13Z", "1712287573"],
}
_TIME_NOTE: Final = "ISO 8601 (naive means UTC) or epoch seconds."


def _limit_param(default: int) -> Schema:
    return _param(
        "limit",
        f"Page size, 1 to {MAX_LIMIT}.",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default},
    )


_STR_SCHEMA: Final[Schema] = {"type": "string"}
_USER_PARAM: Final = _param("user", "VPN login (vpn_user) or NVM user (user), exact.", _STR_SCHEMA)
_FLOW_FILTER_PARAMS: Final[list[JsonValue]] = [
    _USER_PARAM,
    _param("udid", "Endpoint UDID, hex (case-insensitive).", _STR_SCHEMA),
    _param("process", "Process name, exact (svchost.exe).", _STR_SCHEMA),
    _param(
        "host",
        "Destination host name, case-insensitive; *.example.com matches its subdomains only.",
        _STR_SCHEMA,
    ),
    _param("address", "Source or destination IP address.", _STR_SCHEMA),
    _param("since", "Flows with time_end >= since. " + _TIME_NOTE, _TIME_SCHEMA),
    _param("until", "Flows with time_end < until. " + _TIME_NOTE, _TIME_SCHEMA),
]
_CURSOR_PARAM: Final = _param(
    "cursor", "Opaque next_cursor of the previous page.", {"type": "string"}
)


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS: Final[Schema] = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
}


def _get(summary: str, params: list[JsonValue], ok: Schema) -> Schema:
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": {"200": ok, **_ERRORS},
        }
    }


def _page(key: str, item: str) -> Schema:
    return {
        "type": "object",
        "required": [key, "next_cursor"],
        "properties": {
            key: {"type": "array", "items": _ref(item)},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as cursor for the next page; null on the last page.",
            },
        },
    }


def _paths() -> Schema:
    p = API_PREFIX
    top_item: Schema = {
        "type": "object",
        "required": ["key", "bytes"],
        "properties": {
            "key": {"type": "string", "description": "The user, process name or host name."},
            "bytes": {
                "type": "integer",
                "description": "Sum of bytes_in + bytes_out + octets of its flows in the range.",
            },
        },
    }
    timeline_point: Schema = {
        "type": "object",
        "required": ["time", "bytes"],
        "properties": {
            "time": {"type": "integer", "description": "Bucket start, epoch seconds."},
            "bytes": {
                "type": "integer",
                "description": "Sum of bytes_in + bytes_out + octets of the bucket's flows.",
            },
        },
    }
    return {
        f"{p}/flows": _get(
            "Stored flows, newest first (time_end, id descending)",
            [*_FLOW_FILTER_PARAMS, _limit_param(DEFAULT_LIMIT), _CURSOR_PARAM],
            _json("A page of flows.", _page("flows", "Flow")),
        ),
        f"{p}/endpoints": _get(
            "Known endpoints ordered by UDID",
            [
                _param("udid", "Endpoint UDID, hex.", _STR_SCHEMA),
                _param("since", "Endpoints with last_seen >= since. " + _TIME_NOTE, _TIME_SCHEMA),
                _limit_param(DEFAULT_LIMIT),
                _CURSOR_PARAM,
            ],
            _json("A page of endpoints.", _page("endpoints", "Endpoint")),
        ),
        f"{p}/endpoints/{{udid}}/interfaces": _get(
            "Interfaces reported by one endpoint, ordered by interface_uid",
            [_param("udid", "Endpoint UDID, hex.", _STR_SCHEMA, where="path")],
            _json(
                "The interfaces (empty if none).",
                {
                    "type": "object",
                    "required": ["interfaces"],
                    "properties": {"interfaces": {"type": "array", "items": _ref("Interface")}},
                },
            ),
        ),
        f"{p}/top": _get(
            "Top users, processes or destination hosts by bytes",
            [
                {
                    **_param(
                        "by",
                        "What to rank.",
                        {"type": "string", "enum": ["user", "process", "host"]},
                    ),
                    "required": True,
                },
                _USER_PARAM,
                _param("since", "Flows with time_end >= since. " + _TIME_NOTE, _TIME_SCHEMA),
                _param("until", "Flows with time_end < until. " + _TIME_NOTE, _TIME_SCHEMA),
                _limit_param(DEFAULT_TOP_LIMIT),
            ],
            _json(
                "Keys with the most bytes, largest first; user ranks vpn_user, else the NVM user.",
                {"type": "array", "items": top_item},
            ),
        ),
        f"{p}/timeline": _get(
            "Bytes per time bucket (all buckets of the range, empty ones with 0 bytes)",
            [
                _USER_PARAM,
                _param(
                    "since",
                    "Flows with time_end >= since; default: 24 hours before until. " + _TIME_NOTE,
                    _TIME_SCHEMA,
                ),
                _param(
                    "until",
                    "Flows with time_end < until; default: now. " + _TIME_NOTE,
                    _TIME_SCHEMA,
                ),
                _param(
                    "step",
                    f"Bucket width in seconds; buckets start at multiples of it. At most "
                    f"{MAX_TIMELINE_POINTS} buckets (else 400); default: a round width giving "
                    "at most 120.",
                    {"type": "integer", "minimum": 1, "maximum": MAX_STEP},
                ),
            ],
            _json(
                "One point per bucket, in time order; the first and last bucket may reach "
                "outside since..until but count only the flows inside.",
                {
                    "type": "object",
                    "required": ["step", "points"],
                    "properties": {
                        "step": {"type": "integer", "description": "Bucket width, seconds."},
                        "points": {"type": "array", "items": timeline_point},
                    },
                },
            ),
        ),
        f"{p}/exporters": _get(
            "Per-exporter collector counters (live, else as last saved)",
            [],
            _json(
                "One entry per exporter, ordered by name.",
                {
                    "type": "object",
                    "required": ["exporters"],
                    "properties": {"exporters": {"type": "array", "items": _ref("Exporter")}},
                },
            ),
        ),
        f"{p}/stream": {
            "get": {
                "summary": "WebSocket: live matching flows, one Flow object per message",
                "description": "Upgrade to WebSocket. The token may be given as ?token= when the "
                "client cannot set the Authorization header. Flows arrive within a second of "
                "ingest; a client that falls behind loses flows (its queue holds 1000).",
                "parameters": [
                    *_FLOW_FILTER_PARAMS,
                    _param("token", "Bearer token (alternative to the header).", _STR_SCHEMA),
                ],
                "responses": {
                    "101": {"description": "Switching to WebSocket; messages are Flow objects."},
                    **_ERRORS,
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            }
        },
    }


def _exporter_schema() -> Schema:
    counters: dict[str, JsonValue] = {
        name: {"type": "integer", "description": text} for name, text in EXPORTER_COUNTERS.items()
    }
    return {
        "type": "object",
        "required": ["exporter", "live", *EXPORTER_COUNTERS, "counters"],
        "properties": {
            "exporter": {"type": "string", "description": "transport://address[:port]."},
            "live": {
                "type": "boolean",
                "description": "True: from the running collector; false: as saved in the store.",
            },
            **counters,
            "counters": {
                "type": "object",
                "additionalProperties": True,
                "description": "Every counter of the exporter (messages, unknown_template, …).",
            },
        },
    }


def _error_response(description: str) -> Schema:
    return _json(description, _ref("Error"))


def _components() -> Schema:
    module: Schema = {
        "type": "object",
        "required": ["name", "hash"],
        "properties": {
            "name": {"type": ["string", "null"], "description": "Module name (9:12348)."},
            "hash": {"type": ["string", "null"], "description": "SHA-256, hex (9:12350)."},
        },
    }
    error: Schema = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What was wrong."}},
    }
    unauthorized = _error_response("Missing or unknown bearer token.")
    unauthorized["headers"] = {
        "WWW-Authenticate": {"description": "Bearer challenge.", "schema": {"type": "string"}}
    }
    return {
        "schemas": {
            "Flow": _object(FLOW_FIELDS, "One flow."),
            "Module": module,
            "Endpoint": _object(ENDPOINT_FIELDS, "One endpoint (nvzFlow template 262)."),
            "Interface": _object(INTERFACE_FIELDS, "One interface (nvzFlow template 266)."),
            "Exporter": _exporter_schema(),
            "Error": error,
        },
        "responses": {
            "BadRequest": _error_response("A parameter is malformed, unknown or repeated."),
            "Unauthorized": unauthorized,
            "Unavailable": _error_response("Too many live streams."),
        },
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    }


def openapi_document(version: str) -> dict[str, JsonValue]:
    """The OpenAPI 3.1 description of the API (served at ``/api/v1/openapi.json``)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ocgate NVM API",
            "version": version,
            "description": "Cisco NVM (nvzFlow) flows collected by ocgate, tied to VPN users.",
        },
        "security": [{"bearer": []}],
        "paths": {
            **_paths(),
            f"{API_PREFIX}/openapi.json": {
                "get": {
                    "summary": "This document (no authentication)",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1 document."}},
                }
            },
        },
        "components": _components(),
    }
