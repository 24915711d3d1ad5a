"""Value parsers of the per-session policy keys: ``restrict-user-to-ports`` and ``iroute``.

Like every parser of :mod:`ocgate.config._values`, they raise :class:`~ocgate.errors.ConfigError`
with ``message`` and ``expected`` only; the loader adds the file, the line and the key.
"""

from __future__ import annotations

from ocgate.config._model import IPNetwork
from ocgate.config._net import parse_no_route
from ocgate.config._values import ParseContext
from ocgate.errors import ConfigError
from ocgate.ipfilter import PortPolicy, parse_port_policy

__all__ = ["parse_iroute", "parse_restrict_user_to_ports"]

_IROUTE_EXPECTED = "a network behind the client, e.g. 192.168.5.0/24, 192.168.5.0/255.255.255.0"


def parse_restrict_user_to_ports(value: str, ctx: ParseContext) -> PortPolicy:
    """``restrict-user-to-ports``: see :mod:`ocgate.ipfilter._ports` for the syntax."""
    return parse_port_policy(value)


def parse_iroute(value: str, ctx: ParseContext) -> IPNetwork:
    """``iroute``: a network behind the client (its addresses are valid tunnel sources).

    A default route (``default``, ``0.0.0.0/0``, ``::/0``) is refused: it would let the client
    send with any source address.
    """
    try:
        route = parse_no_route(value, ctx)
    except ConfigError as exc:
        raise ConfigError(exc.message, expected=_IROUTE_EXPECTED) from None
    if route.network is None or route.network.prefixlen == 0:
        raise ConfigError("a default route cannot be an iroute", expected=_IROUTE_EXPECTED)
    return route.network
