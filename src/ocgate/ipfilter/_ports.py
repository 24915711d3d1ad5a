"""``restrict-user-to-ports``: ocserv's port list, parsed strictly.

Syntax (ocserv ``src/config-ports.c`` ``cfg_parse_ports``, ``doc/sample.config``): a
comma-separated list of ``PROTO(PORT)`` entries, the whole list optionally wrapped as
``!( … )`` to turn an allow-list into a deny-list::

    restrict-user-to-ports = "tcp(443), tcp(80), udp(53), icmp(), icmpv6()"
    restrict-user-to-ports = "!(tcp(22), udp(1000-2000))"

* Protocols (any case): ``tcp``, ``udp``, ``sctp`` take a port; ``icmp``, ``icmpv6`` and ``esp``
  take nothing (``icmp()``) and match every packet of that protocol, as ocserv's ``icmp all``.
* Ports are 1-65535; ``LOW-HIGH`` is an inclusive range (an ocgate extension: ocserv reads
  ``udp(1000-2000)`` with ``atoi`` as port 1000 alone, which is never what such a line meant).
* Where ocserv is lenient (``atoi`` reads garbage as port 0, anything may follow the closing
  bracket of the ``!`` form, ``tcp()`` is port 0) ocgate refuses the value: a firewall rule that
  silently means something else is worse than a server that does not start.

The result is a :class:`PortPolicy`; :mod:`ocgate.ipfilter._filter` applies it to packets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from ocgate.errors import ConfigError

__all__ = ["EXPECTED_PORTS", "PortPolicy", "PortProto", "PortRule", "parse_port_policy"]

EXPECTED_PORTS = (
    'a list such as "tcp(443), udp(53), udp(1000-2000), icmp(), icmpv6()" '
    'or its deny form "!(tcp(22), udp(111))"; protocols tcp, udp, sctp (with a port or '
    "LOW-HIGH range 1-65535), icmp, icmpv6, esp (with empty brackets)"
)
"""The expected form, for :class:`~ocgate.errors.ConfigError` messages."""


class PortProto(IntEnum):
    """IP protocol numbers of the ``restrict-user-to-ports`` protocols (IANA protocol numbers)."""

    ICMP = 1
    TCP = 6
    UDP = 17
    ESP = 50
    ICMPV6 = 58
    SCTP = 132


_WITH_PORTS = frozenset({PortProto.TCP, PortProto.UDP, PortProto.SCTP})
_NAMES = {
    "tcp": PortProto.TCP,
    "udp": PortProto.UDP,
    "sctp": PortProto.SCTP,
    "icmp": PortProto.ICMP,
    "icmpv6": PortProto.ICMPV6,
    "esp": PortProto.ESP,
}
_ENTRY = re.compile(r"\s*([A-Za-z0-9]+)\s*\(\s*([^()]*?)\s*\)\s*")
_PORTS = re.compile(r"([0-9]{1,5})(?:\s*-\s*([0-9]{1,5}))?")


@dataclass(frozen=True, slots=True)
class PortRule:
    """One entry: a protocol and, for TCP/UDP/SCTP, the destination ports ``low..high``.

    :param proto: the protocol.
    :param low: first port (0 for the protocols without ports).
    :param high: last port, inclusive (0 for the protocols without ports).
    """

    proto: PortProto
    low: int = 0
    high: int = 0

    def __str__(self) -> str:
        """occtl's form: ``tcp(443)``, ``udp(1000-2000)``, ``icmp()``."""
        name = self.proto.name.lower()
        if self.proto not in _WITH_PORTS:
            return f"{name}()"
        if self.low == self.high:
            return f"{name}({self.low})"
        return f"{name}({self.low}-{self.high})"


@dataclass(frozen=True, slots=True)
class PortPolicy:
    """A parsed ``restrict-user-to-ports`` value.

    :param rules: the entries, in the order written.
    :param deny: the ``!( … )`` form: the entries are refused and everything else passes;
        otherwise only the entries pass.
    """

    rules: tuple[PortRule, ...]
    deny: bool = False

    def entries(self) -> tuple[str, ...]:
        """The entries as occtl prints them (``tcp(443)``; ``!tcp(22)`` in the deny form)."""
        mark = "!" if self.deny else ""
        return tuple(f"{mark}{rule}" for rule in self.rules)


def _fail(message: str) -> ConfigError:
    return ConfigError(message, expected=EXPECTED_PORTS)


def _port(text: str, entry: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise _fail(f"port {text} out of range in {entry!r}")
    return port


def _rule(name: str, inside: str, entry: str) -> PortRule:
    proto = _NAMES.get(name.lower())
    if proto is None:
        raise _fail(f"unknown protocol {name!r} in {entry!r}")
    if proto not in _WITH_PORTS:
        if inside:
            raise _fail(f"{name} takes no port, in {entry!r}")
        return PortRule(proto)
    match = _PORTS.fullmatch(inside)
    if match is None:
        raise _fail(f"{name} needs a port or a LOW-HIGH range, in {entry!r}")
    low = _port(match.group(1), entry)
    high = _port(match.group(2), entry) if match.group(2) is not None else low
    if high < low:
        raise _fail(f"empty port range in {entry!r}")
    return PortRule(proto, low, high)


def parse_port_policy(value: str) -> PortPolicy:
    """Parse a ``restrict-user-to-ports`` value (quotes already removed).

    :raises ConfigError: the value is not a well-formed list (``message`` and ``expected`` only;
        the config loader adds the file, line and key).
    """
    text = value.strip()
    deny = text.startswith("!")
    if deny:
        body = text[1:].strip()
        if not (body.startswith("(") and body.endswith(")")):
            raise _fail("'!' must be followed by the whole list in brackets")
        text = body[1:-1]
    if not text.strip():
        raise _fail("the list is empty")
    rules: list[PortRule] = []
    for entry in text.split(","):
        match = _ENTRY.fullmatch(entry)
        if match is None:
            raise _fail(f"not PROTO(PORT): {entry.strip()!r}")
        rule = _rule(match.group(1), match.group(2), entry.strip())
        if rule not in rules:
            rules.append(rule)
    return PortPolicy(tuple(rules), deny=deny)
