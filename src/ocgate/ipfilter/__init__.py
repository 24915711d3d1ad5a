"""The client-to-TUN packet filter: source addresses, ``restrict-user-to-routes`` and
``restrict-user-to-ports`` (pure; see :mod:`ocgate.ipfilter._filter` for the rules)."""

from __future__ import annotations

from ocgate.ipfilter._filter import DropReason, PacketFilter, Restriction
from ocgate.ipfilter._ports import (
    EXPECTED_PORTS,
    PortPolicy,
    PortProto,
    PortRule,
    parse_port_policy,
)

__all__ = [
    "EXPECTED_PORTS",
    "DropReason",
    "PacketFilter",
    "PortPolicy",
    "PortProto",
    "PortRule",
    "Restriction",
    "parse_port_policy",
]
