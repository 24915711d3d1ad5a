"""Normalised NVM records: one decoded IPFIX data record in, one typed record out.

Theory of operation
-------------------
The IPFIX decoder hands over a data record whose ``values`` are keyed by Information Element name.
:data:`FIELD_MAP` is the ONE table that says which IE name feeds which normalised field and how the
value is converted; align names with the decoder there and nowhere else. Elements not in the table
land, JSON-safe, in ``extra`` (and undecoded ``raw_unknown`` elements as hex under
``extra["unknown"]["PEN:ID"]``), so nothing is lost.

The record kind is decided by content, never by template id (NVM template ids are not fixed):

* source and destination address present → :class:`FlowRecord`;
* otherwise a UDID plus any OS / system field → :class:`EndpointRecord` (nvzFlow template 262);
* otherwise a UDID plus an interface UID and interface details → :class:`InterfaceRecord` (266);
* anything else → :class:`GenericRecord` (all values kept, JSON-safe).

Conventions (nvm-ipfix.md §2.5): UDID and hashes become lower-case hex, addresses their compressed
text form, times float seconds since the epoch (UTC), account strings are split at the first ``\\``
into authority and principal. A value that cannot be converted is kept raw in ``extra`` under its
IE name instead of failing the record. This module is pure (no I/O, no clock).
"""

from __future__ import annotations

import datetime as _dt
import enum
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

__all__ = [
    "FIELD_MAP",
    "DataRecordLike",
    "EndpointRecord",
    "ExporterLike",
    "FlowRecord",
    "GenericRecord",
    "InterfaceRecord",
    "JsonValue",
    "Module",
    "Normalised",
    "exporter_address",
    "format_exporter",
    "json_safe",
    "normalise",
    "split_account",
]

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


class ExporterLike(Protocol):
    """The decoder's ``ExporterKey``: where the IPFIX messages came from."""

    @property
    def transport(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...


class DataRecordLike(Protocol):
    """What :func:`normalise` reads from the decoder's ``DataRecord``."""

    @property
    def exporter(self) -> ExporterLike: ...
    @property
    def observation_domain_id(self) -> int: ...
    @property
    def template_id(self) -> int: ...
    @property
    def export_time(self) -> int: ...
    @property
    def values(self) -> Mapping[str, object]: ...
    @property
    def raw_unknown(self) -> Mapping[tuple[int, int], bytes]: ...


@dataclass(frozen=True, slots=True)
class Module:
    """One module (DLL / shared object) loaded by the process of a flow."""

    name: str | None
    hash: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowRecord:
    """One flow. Field names are the API and database column names."""

    time_start: float
    time_end: float
    protocol: int | None = None
    src_addr: str | None = None
    src_port: int | None = None
    dst_addr: str | None = None
    dst_port: int | None = None
    bytes_in: int | None = None
    """nvzFlow L4 payload bytes received (12346); not comparable with ``octets``."""
    bytes_out: int | None = None
    """nvzFlow L4 payload bytes sent (12347)."""
    octets: int | None = None
    """``octetDeltaCount`` of standard exporters (IP bytes); NVM sends none."""
    packets: int | None = None
    udid: str | None = None
    user: str | None = None
    user_authority: str | None = None
    user_principal: str | None = None
    user_account_type: int | None = None
    process_name: str | None = None
    process_hash: str | None = None
    process_account: str | None = None
    process_account_type: int | None = None
    process_path: str | None = None
    process_args: str | None = None
    process_id: int | None = None
    parent_process_name: str | None = None
    parent_process_hash: str | None = None
    parent_process_account: str | None = None
    parent_process_account_type: int | None = None
    parent_process_path: str | None = None
    parent_process_args: str | None = None
    parent_process_id: int | None = None
    dns_suffix: str | None = None
    dst_hostname: str | None = None
    interface_uid: int | None = None
    modules: tuple[Module, ...] = ()
    exporter: str = ""
    """``transport://address[:port]`` of the exporter (see :func:`format_exporter`)."""
    odid: int = 0
    template_id: int = 0
    vpn_user: str | None = None
    """Owner of the VPN lease of the *exporter's* address (never the claimed ``src_addr``)."""
    vpn_session: str | None = None
    extra: Mapping[str, JsonValue] = field(default_factory=dict)
    id: int | None = None
    """Database row id; ``None`` until stored."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointRecord:
    """Identity of one endpoint (nvzFlow template 262-like)."""

    udid: str
    station_name: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    os_edition: str | None = None
    manufacturer: str | None = None
    system_type: str | None = None
    agent_version: str | None = None
    first_seen: float
    last_seen: float
    exporter: str = ""
    extra: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class InterfaceRecord:
    """One network interface of an endpoint (nvzFlow template 266-like)."""

    udid: str
    interface_uid: int
    interface_index: int | None = None
    interface_type: int | None = None
    interface_name: str | None = None
    first_seen: float
    last_seen: float
    exporter: str = ""
    extra: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericRecord:
    """A record of any other layout: every value kept, JSON-safe, keyed by IE name."""

    time: float
    exporter: str
    odid: int
    template_id: int
    udid: str | None = None
    values: Mapping[str, JsonValue] = field(default_factory=dict)


Normalised = FlowRecord | EndpointRecord | InterfaceRecord | GenericRecord


class _Conv(enum.Enum):
    """How an IE value becomes a normalised value."""

    INT = "int"
    STR = "str"
    HEX = "hex"
    ADDR = "addr"
    SECONDS = "seconds"
    MILLIS = "millis"
    STR_LIST = "str_list"
    HEX_LIST = "hex_list"


# The ONE name table: IE name (as the decoder spells it) -> (normalised field, conversion, rank).
# When several IEs feed one field, the highest rank present wins (milliseconds beat seconds).
# Sources: IANA IPFIX registry; nvzFlow PEN-9 ids in nvm-ipfix.md §2.2 (given in comments).
FIELD_MAP: Final[Mapping[str, tuple[str, _Conv, int]]] = {
    "protocolIdentifier": ("protocol", _Conv.INT, 0),  # IE 4
    "sourceIPv4Address": ("src_addr", _Conv.ADDR, 0),  # IE 8
    "sourceIPv6Address": ("src_addr", _Conv.ADDR, 0),  # IE 27
    "destinationIPv4Address": ("dst_addr", _Conv.ADDR, 0),  # IE 12
    "destinationIPv6Address": ("dst_addr", _Conv.ADDR, 0),  # IE 28
    "sourceTransportPort": ("src_port", _Conv.INT, 0),  # IE 7
    "destinationTransportPort": ("dst_port", _Conv.INT, 0),  # IE 11
    "flowStartSeconds": ("time_start", _Conv.SECONDS, 0),  # IE 150
    "flowEndSeconds": ("time_end", _Conv.SECONDS, 0),  # IE 151
    # The decoder gives every dateTime* type as float seconds (RFC 7012 §3.1 types).
    "flowStartMilliseconds": ("time_start", _Conv.SECONDS, 1),  # IE 152
    "flowEndMilliseconds": ("time_end", _Conv.SECONDS, 1),  # IE 153
    "flowStartMicroseconds": ("time_start", _Conv.SECONDS, 1),  # IE 154
    "flowEndMicroseconds": ("time_end", _Conv.SECONDS, 1),  # IE 155
    "flowStartNanoseconds": ("time_start", _Conv.SECONDS, 1),  # IE 156
    "flowEndNanoseconds": ("time_end", _Conv.SECONDS, 1),  # IE 157
    # nvzFlow's own millisecond times are plain unsigned64 counts of milliseconds.
    "nvzFlowStartMsec": ("time_start", _Conv.MILLIS, 2),  # 9:12371
    "nvzFlowEndMsec": ("time_end", _Conv.MILLIS, 2),  # 9:12372
    "octetDeltaCount": ("octets", _Conv.INT, 1),  # IE 1
    "octetTotalCount": ("octets", _Conv.INT, 0),  # IE 85
    "packetDeltaCount": ("packets", _Conv.INT, 1),  # IE 2
    "packetTotalCount": ("packets", _Conv.INT, 0),  # IE 86
    "nvzFlowL4ByteCountIn": ("bytes_in", _Conv.INT, 0),  # 9:12346
    "nvzFlowL4ByteCountOut": ("bytes_out", _Conv.INT, 0),  # 9:12347
    "nvzFlowUDID": ("udid", _Conv.HEX, 0),  # 9:12332
    "nvzFlowLoggedInUser": ("user", _Conv.STR, 0),  # 9:12333
    "nvzFlowLoggedInUserAccountType": ("user_account_type", _Conv.INT, 0),  # 9:12361
    "nvzFlowProcessName": ("process_name", _Conv.STR, 0),  # 9:12340
    "nvzFlowProcessHash": ("process_hash", _Conv.HEX, 0),  # 9:12341
    "nvzFlowProcessAccount": ("process_account", _Conv.STR, 0),  # 9:12338
    "nvzFlowProcessAccountType": ("process_account_type", _Conv.INT, 0),  # 9:12362
    "nvzFlowProcessPath": ("process_path", _Conv.STR, 0),  # 9:12367
    "nvzFlowProcessArgs": ("process_args", _Conv.STR, 0),  # 9:12369
    "nvzFlowProcessID": ("process_id", _Conv.INT, 0),  # 9:12365
    "nvzFlowParentProcessName": ("parent_process_name", _Conv.STR, 0),  # 9:12342
    "nvzFlowParentProcessHash": ("parent_process_hash", _Conv.HEX, 0),  # 9:12343
    "nvzFlowParentProcessAccount": ("parent_process_account", _Conv.STR, 0),  # 9:12339
    "nvzFlowParentProcessAccountType": ("parent_process_account_type", _Conv.INT, 0),  # 9:12363
    "nvzFlowParentProcessPath": ("parent_process_path", _Conv.STR, 0),  # 9:12368
    "nvzFlowParentProcessArgs": ("parent_process_args", _Conv.STR, 0),  # 9:12370
    "nvzFlowParentProcessID": ("parent_process_id", _Conv.INT, 0),  # 9:12366
    "nvzFlowDNSSuffix": ("dns_suffix", _Conv.STR, 0),  # 9:12344
    "nvzFlowDestinationHostname": ("dst_hostname", _Conv.STR, 0),  # 9:12345
    "nvzFlowModuleNameList": ("module_names", _Conv.STR_LIST, 0),  # 9:12352
    "nvzFlowModuleHashList": ("module_hashes", _Conv.HEX_LIST, 0),  # 9:12353
    "nvzFlowInterfaceInfoUID": ("interface_uid", _Conv.INT, 0),  # 9:12355
    "nvzFlowInterfaceIndex": ("interface_index", _Conv.INT, 0),  # 9:12356
    "nvzFlowInterfaceType": ("interface_type", _Conv.INT, 0),  # 9:12357
    "nvzFlowInterfaceName": ("interface_name", _Conv.STR, 0),  # 9:12358
    "virtualStationName": ("station_name", _Conv.STR, 0),  # IE 350
    "nvzFlowVirtualStationName": ("station_name", _Conv.STR, 1),  # 9:12377
    "nvzFlowOSName": ("os_name", _Conv.STR, 0),  # 9:12334
    "nvzFlowOSVersion": ("os_version", _Conv.STR, 0),  # 9:12335
    "nvzFlowOSEdition": ("os_edition", _Conv.STR, 0),  # 9:12351
    "nvzFlowSystemManufacturer": ("manufacturer", _Conv.STR, 0),  # 9:12336
    "nvzFlowSystemType": ("system_type", _Conv.STR, 0),  # 9:12337
    "nvzFlowAgentVersion": ("agent_version", _Conv.STR, 0),  # 9:12364
}

_ENDPOINT_FIELDS: Final = ("os_name", "os_version", "os_edition", "manufacturer", "system_type")
_INTERFACE_FIELDS: Final = ("interface_index", "interface_type", "interface_name")
_FLOW_PLAIN_FIELDS: Final = tuple(
    name
    for name in FlowRecord.__dataclass_fields__
    if name
    not in {
        "time_start",
        "time_end",
        "modules",
        "exporter",
        "odid",
        "template_id",
        "vpn_user",
        "vpn_session",
        "extra",
        "id",
        "user_authority",
        "user_principal",
    }
)


def format_exporter(exporter: ExporterLike) -> str:
    """``tcp://192.0.2.1:40123``, ``udp://192.0.2.1`` or ``udp://[2001:db8::1]``.

    Port 0 (datagram exporters are keyed by address alone, see ``ExporterKey``) is left out.
    """
    host = exporter.address
    if ":" in host:
        host = f"[{host}]"
    if not exporter.port:
        return f"{exporter.transport}://{host}"
    return f"{exporter.transport}://{host}:{exporter.port}"


def exporter_address(exporter: str) -> str | None:
    """The canonical IP address of a :func:`format_exporter` text (``None`` if it has none).

    IPv4-mapped IPv6 addresses come back as IPv4, compressed IPv6 otherwise: the form lease
    addresses are stored in, so the two compare as strings.
    """
    rest = exporter.partition("://")[2]
    host = rest[1:].partition("]")[0] if rest.startswith("[") else rest.partition(":")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.compressed


def split_account(account: str | None) -> tuple[str | None, str | None]:
    """Split ``Authority\\Principal`` at the first backslash into ``(authority, principal)``.

    An account without a backslash has no authority; its principal is the whole string.
    """
    if account is None:
        return None, None
    authority, sep, principal = account.partition("\\")
    if not sep:
        return None, account
    return authority, principal


def json_safe(value: object) -> JsonValue:
    """Turn a decoded IE value into JSON-able data: bytes → hex, addresses → text, times → float."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value.compressed
    if isinstance(value, _dt.datetime):
        return _timestamp(value)
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    return str(value)


def _timestamp(value: _dt.datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return value.timestamp()


def _to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("not an integer")


def _to_str(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    raise ValueError("not a string")


def _to_hex(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, str):
        bytes.fromhex(value)
        return value.lower()
    raise ValueError("not an octet array")


def _to_addr(value: object) -> str:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value.compressed
    if isinstance(value, str | bytes | int) and not isinstance(value, bool):
        return ipaddress.ip_address(value).compressed
    raise ValueError("not an address")


def _to_seconds(value: object) -> float:
    if isinstance(value, _dt.datetime):
        return _timestamp(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError("not a time")


def _to_millis(value: object) -> float:
    if isinstance(value, _dt.datetime):
        return _timestamp(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000.0
    raise ValueError("not a time")


def _to_list(item: Callable[[object], str]) -> Callable[[object], list[str]]:
    def convert(value: object) -> list[str]:
        if not isinstance(value, list | tuple):
            raise ValueError("not a list")
        return [item(element) for element in value]

    return convert


_CONVERTERS: Final[Mapping[_Conv, Callable[[object], object]]] = {
    _Conv.INT: _to_int,
    _Conv.STR: _to_str,
    _Conv.HEX: _to_hex,
    _Conv.ADDR: _to_addr,
    _Conv.SECONDS: _to_seconds,
    _Conv.MILLIS: _to_millis,
    _Conv.STR_LIST: _to_list(_to_str),
    _Conv.HEX_LIST: _to_list(_to_hex),
}


def _collect(record: DataRecordLike) -> tuple[dict[str, object], dict[str, JsonValue]]:
    """Split the values into mapped fields and JSON-safe extras."""
    fields: dict[str, object] = {}
    ranks: dict[str, int] = {}
    extra: dict[str, JsonValue] = {}
    for name, value in record.values.items():
        spec = FIELD_MAP.get(name)
        if spec is None or value is None:
            if value is not None:
                extra[name] = json_safe(value)
            continue
        target, conv, rank = spec
        try:
            converted = _CONVERTERS[conv](value)
        except (ValueError, TypeError, UnicodeError):
            extra[name] = json_safe(value)
            continue
        if ranks.get(target, -1) < rank:
            fields[target] = converted
            ranks[target] = rank
    unknown = {f"{pen}:{ie}": raw.hex() for (pen, ie), raw in record.raw_unknown.items()}
    if unknown:
        extra["unknown"] = dict(sorted(unknown.items()))
    return fields, extra


def _modules(fields: Mapping[str, object]) -> tuple[Module, ...]:
    names = fields.get("module_names")
    hashes = fields.get("module_hashes")
    name_list: list[str] = names if isinstance(names, list) else []
    hash_list: list[str] = hashes if isinstance(hashes, list) else []
    count = max(len(name_list), len(hash_list))
    return tuple(
        Module(
            name=name_list[i] if i < len(name_list) else None,
            hash=hash_list[i] if i < len(hash_list) else None,
        )
        for i in range(count)
    )


def _opt_float(value: object) -> float | None:
    return value if isinstance(value, float) else None


def _flow(
    record: DataRecordLike, fields: dict[str, object], extra: dict[str, JsonValue]
) -> FlowRecord:
    start = _opt_float(fields.get("time_start"))
    end = _opt_float(fields.get("time_end"))
    fallback = float(record.export_time)
    start = start if start is not None else (end if end is not None else fallback)
    end = end if end is not None else start
    user = fields.get("user")
    authority, principal = split_account(user if isinstance(user, str) else None)
    plain = {name: fields[name] for name in _FLOW_PLAIN_FIELDS if name in fields}
    used = {*_FLOW_PLAIN_FIELDS, "time_start", "time_end", "module_names", "module_hashes"}
    return FlowRecord(
        time_start=start,
        time_end=end,
        user_authority=authority,
        user_principal=principal,
        modules=_modules(fields),
        exporter=format_exporter(record.exporter),
        odid=record.observation_domain_id,
        template_id=record.template_id,
        extra=_leftovers(fields, extra, used),
        **plain,  # type: ignore[arg-type]
    )


def _endpoint(
    record: DataRecordLike, fields: dict[str, object], extra: dict[str, JsonValue]
) -> EndpointRecord:
    names = (*_ENDPOINT_FIELDS, "station_name", "agent_version")
    plain = {name: fields[name] for name in names if name in fields}
    seen = float(record.export_time)
    return EndpointRecord(
        udid=str(fields["udid"]),
        first_seen=seen,
        last_seen=seen,
        exporter=format_exporter(record.exporter),
        extra=_leftovers(fields, extra, {"udid", *names}),
        **plain,  # type: ignore[arg-type]
    )


def _interface(
    record: DataRecordLike, fields: dict[str, object], extra: dict[str, JsonValue]
) -> InterfaceRecord:
    plain = {name: fields[name] for name in _INTERFACE_FIELDS if name in fields}
    seen = float(record.export_time)
    uid = fields["interface_uid"]
    assert isinstance(uid, int)  # Guaranteed by the INT conversion of FIELD_MAP.
    return InterfaceRecord(
        udid=str(fields["udid"]),
        interface_uid=uid,
        first_seen=seen,
        last_seen=seen,
        exporter=format_exporter(record.exporter),
        extra=_leftovers(fields, extra, {"udid", "interface_uid", *_INTERFACE_FIELDS}),
        **plain,  # type: ignore[arg-type]
    )


def _leftovers(
    fields: Mapping[str, object], extra: dict[str, JsonValue], used: set[str]
) -> dict[str, JsonValue]:
    """Mapped fields that this record kind has no column for go to ``extra`` by field name."""
    for name, value in fields.items():
        if name not in used:
            extra[name] = json_safe(value)
    return extra


def _generic(record: DataRecordLike, fields: Mapping[str, object]) -> GenericRecord:
    values: dict[str, JsonValue] = {
        name: json_safe(value) for name, value in record.values.items() if value is not None
    }
    unknown = {f"{pen}:{ie}": raw.hex() for (pen, ie), raw in record.raw_unknown.items()}
    if unknown:
        values["unknown"] = dict(sorted(unknown.items()))
    udid = fields.get("udid")
    return GenericRecord(
        time=float(record.export_time),
        exporter=format_exporter(record.exporter),
        odid=record.observation_domain_id,
        template_id=record.template_id,
        udid=udid if isinstance(udid, str) else None,
        values=values,
    )


def normalise(record: DataRecordLike) -> Normalised:
    """Turn one decoded IPFIX data record into a typed record (kind decided by content)."""
    fields, extra = _collect(record)
    if "src_addr" in fields and "dst_addr" in fields:
        return _flow(record, fields, extra)
    if "udid" in fields:
        if any(name in fields for name in _ENDPOINT_FIELDS):
            return _endpoint(record, fields, extra)
        if "interface_uid" in fields and any(name in fields for name in _INTERFACE_FIELDS):
            return _interface(record, fields, extra)
    return _generic(record, fields)
