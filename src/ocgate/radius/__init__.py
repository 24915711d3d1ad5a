"""RADIUS authentication and accounting (ocserv ``auth = radius[...]`` / ``acct = radius[...]``).

Needs the ``ocgate[radius]`` extra (pyrad). See ocserv-compatibility §6 for what is sent and used.
The result types load without pyrad; the rest on first use.
"""

from __future__ import annotations

from ocgate.radius._constants import TerminateCause
from ocgate.radius._results import AccountingSession, RadiusChallenge, RadiusResult, SessionStats

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocgate.radius._acct import RadiusAccounting
    from ocgate.radius._attrs import (
        parse_class_groups,
        parse_framed_route_untrusted,
        split_gigawords,
    )
    from ocgate.radius._auth import RadiusAuthenticator
    from ocgate.radius._config import (
        RadiusConfig,
        RadiusServer,
        load_radius_config,
        parse_radcli_config,
    )

__all__ = [
    "AccountingSession",
    "RadiusAccounting",
    "RadiusAuthenticator",
    "RadiusChallenge",
    "RadiusConfig",
    "RadiusResult",
    "RadiusServer",
    "SessionStats",
    "TerminateCause",
    "load_radius_config",
    "parse_class_groups",
    "parse_framed_route_untrusted",
    "parse_radcli_config",
    "split_gigawords",
]

_LAZY = {
    "RadiusAccounting": "_acct",
    "parse_class_groups": "_attrs",
    "parse_framed_route_untrusted": "_attrs",
    "split_gigawords": "_attrs",
    "RadiusAuthenticator": "_auth",
    "RadiusConfig": "_config",
    "RadiusServer": "_config",
    "load_radius_config": "_config",
    "parse_radcli_config": "_config",
}
"""Loaded on first use (PEP 562): a worker needs only the result types, not pyrad."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
