"""IE dictionaries: the IANA subset and the nvzFlow (PEN 9) elements, loaded as data.

The tables live in ``elements/iana.json`` and ``elements/nvzflow.json`` (package data). Each entry
gives an element ID, its name and its abstract data type (RFC 7012 §3.1). Elements absent from the
tables are decoded as raw bytes and kept under their ``(PEN, ID)`` key (RFC 7011 §9).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from importlib import resources

__all__ = [
    "CISCO_PEN",
    "DataType",
    "ElementInfo",
    "element_by_name",
    "element_info",
]

CISCO_PEN = 9
"""IANA Private Enterprise Number of Cisco Systems; nvzFlow elements are 12332+ under it."""


class DataType(Enum):
    """IPFIX abstract data types (RFC 7012 §3.1; RFC 6313 §4.5 for the list types)."""

    OCTET_ARRAY = "octetArray"
    UNSIGNED8 = "unsigned8"
    UNSIGNED16 = "unsigned16"
    UNSIGNED32 = "unsigned32"
    UNSIGNED64 = "unsigned64"
    SIGNED8 = "signed8"
    SIGNED16 = "signed16"
    SIGNED32 = "signed32"
    SIGNED64 = "signed64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BOOLEAN = "boolean"
    MAC_ADDRESS = "macAddress"
    STRING = "string"
    DATE_TIME_SECONDS = "dateTimeSeconds"
    DATE_TIME_MILLISECONDS = "dateTimeMilliseconds"
    DATE_TIME_MICROSECONDS = "dateTimeMicroseconds"
    DATE_TIME_NANOSECONDS = "dateTimeNanoseconds"
    IPV4_ADDRESS = "ipv4Address"
    IPV6_ADDRESS = "ipv6Address"
    BASIC_LIST = "basicList"
    SUB_TEMPLATE_LIST = "subTemplateList"
    SUB_TEMPLATE_MULTI_LIST = "subTemplateMultiList"


@dataclass(frozen=True, slots=True)
class ElementInfo:
    """One Information Element of a dictionary.

    :param enterprise: the Private Enterprise Number (0 for IANA elements).
    :param element_id: the element ID (without the enterprise bit).
    :param name: the element name used as the key of decoded values.
    :param data_type: its abstract data type.
    """

    enterprise: int
    element_id: int
    name: str
    data_type: DataType


def _load(filename: str) -> list[ElementInfo]:
    text = resources.files("ocgate.nvm.ipfix").joinpath("elements", filename).read_text("utf-8")
    table = json.loads(text)
    pen = int(table["enterprise"])
    return [
        ElementInfo(pen, int(row["id"]), str(row["name"]), DataType(row["type"]))
        for row in table["elements"]
    ]


def _build() -> dict[tuple[int, int], ElementInfo]:
    table: dict[tuple[int, int], ElementInfo] = {}
    for filename in ("iana.json", "nvzflow.json"):
        for info in _load(filename):
            table[(info.enterprise, info.element_id)] = info
    return table


_TABLE = _build()
_BY_NAME = {info.name: info for info in _TABLE.values()}


def element_info(enterprise: int, element_id: int) -> ElementInfo | None:
    """Return the dictionary entry of ``(enterprise, element_id)``, or ``None`` when unknown."""
    return _TABLE.get((enterprise, element_id))


def element_by_name(name: str) -> ElementInfo:
    """Return the dictionary entry called ``name``; raise :class:`KeyError` when there is none."""
    return _BY_NAME[name]
