"""A session's effective settings: the global config, then per-group and per-user files, then
what RADIUS returned (ocserv-compatibility §4.5, §6).

The result is an ordinary :class:`~ocgate.config.Config` built with :func:`dataclasses.replace`,
so the CONNECT reply, the scripts and the timers read a session's settings exactly as they read
the global ones. RADIUS values come last: Framed-Route (and Framed-IPv6-Route) replace the routes
(``append-routes`` appends them), MS-DNS / DNS-Server-IPv6-Address replace the DNS servers, and
Session-Timeout / Idle-Timeout set the timers.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

from ocgate.config import Config, IPNetwork, apply_layers, load_session_layers
from ocgate.radius import RadiusResult

__all__ = ["SessionSettings", "radius_overrides", "session_settings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSettings:
    """What a session is given.

    :param config: the effective configuration.
    :param explicit_ipv4: the address the session must get (``explicit-ipv4`` or
        Framed-IP-Address), or ``None`` for a pool lease.
    :param hostname: ``hostname`` from a per-user file.
    :param sources: the per-user/per-group files applied (for the log).
    :param explicit_ipv6: ``explicit-ipv6`` from a per-user or per-group file.
    :param iroutes: ``iroute`` networks of the group and user files (valid tunnel sources).
    """

    config: Config
    explicit_ipv4: ipaddress.IPv4Address | None = None
    hostname: str | None = None
    sources: tuple[str, ...] = ()
    explicit_ipv6: ipaddress.IPv6Address | None = None
    iroutes: tuple[IPNetwork, ...] = ()


def radius_overrides(config: Config, result: RadiusResult) -> Config:
    """``config`` with the settings of an Access-Accept applied."""
    changes: dict[str, object] = {}
    routes: tuple[IPNetwork, ...] = (*result.routes, *result.ipv6_routes)
    if routes:
        base = config.route if config.append_routes and not config.route_default else ()
        changes.update(route=tuple(dict.fromkeys((*routes, *base))), route_default=False)
    if result.dns:
        changes["dns"] = result.dns
    if result.session_timeout is not None:
        changes["session_timeout"] = result.session_timeout or None
    if result.idle_timeout is not None:
        changes["idle_timeout"] = result.idle_timeout or None
        changes["mobile_idle_timeout"] = result.idle_timeout or None
    if not changes:
        return config
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def session_settings(
    config: Config, *, username: str, group: str | None, radius: RadiusResult | None
) -> SessionSettings:
    """Build a session's settings.

    :raises ConfigError: a bad user or group name, or a missing/broken per-user or per-group file.
    """
    layers = load_session_layers(config, username=username, group=group)
    effective = apply_layers(config, layers)
    explicit: ipaddress.IPv4Address | None = None
    explicit6: ipaddress.IPv6Address | None = None
    hostname: str | None = None
    iroutes: dict[IPNetwork, None] = {}
    for layer in layers:
        explicit = layer.explicit_ipv4 or explicit
        explicit6 = layer.explicit_ipv6 or explicit6
        hostname = layer.hostname or hostname
        iroutes.update(dict.fromkeys(layer.iroutes))
    if radius is not None:
        effective = radius_overrides(effective, radius)
        explicit = radius.framed_ipv4 or explicit
    return SessionSettings(
        config=effective,
        explicit_ipv4=explicit,
        hostname=hostname,
        sources=tuple(layer.source for layer in layers),
        explicit_ipv6=explicit6,
        iroutes=tuple(iroutes),
    )
