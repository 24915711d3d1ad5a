"""The packet filter of one tunnel, from the session's settings and its plan (pure).

The filter admits the sources the client was given (its leases as announced in the CONNECT reply,
its ``iroute`` networks) and, under ``restrict-user-to-routes`` or ``restrict-user-to-ports``,
the destinations it was told to route (the same routes, no-routes and DNS servers the reply's
``X-CSTP-*`` headers carry). See :mod:`ocgate.ipfilter._filter` for the rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from ocgate.config import Config, IPNetwork
from ocgate.gateway._connect import TunnelPlan
from ocgate.ipfilter import PacketFilter, Restriction

__all__ = ["tunnel_filter"]


def tunnel_filter(config: Config, plan: TunnelPlan, iroutes: Sequence[IPNetwork]) -> PacketFilter:
    """The filter for a tunnel planned as ``plan`` with the session's ``config``.

    :param config: the session's effective configuration.
    :param plan: the CONNECT plan (the addresses the client was given).
    :param iroutes: the session's ``iroute`` networks.
    """
    restriction = None
    if config.restrict_user_to_routes or config.restrict_user_to_ports is not None:
        restriction = Restriction(
            routes=() if config.route_default else config.route,
            no_routes=config.no_route,
            dns=config.dns,
            ports=config.restrict_user_to_ports,
        )
    return PacketFilter(ipv4=plan.ipv4, ipv6=plan.ipv6, iroutes=iroutes, restriction=restriction)
