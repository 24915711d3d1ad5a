"""RADIUS authentication and accounting (ocserv ``auth = radius[...]`` / ``acct = radius[...]``).

Needs the ``ocgate[radius]`` extra (pyrad). See ocserv-compatibility §6 for what is sent and used.
"""

from __future__ import annotations

from ocgate.radius._acct import RadiusAccounting
from ocgate.radius._attrs import parse_class_groups, parse_framed_route_untrusted, split_gigawords
from ocgate.radius._auth import RadiusAuthenticator
from ocgate.radius._config import (
    RadiusConfig,
    RadiusServer,
    load_radius_config,
    parse_radcli_config,
)
from ocgate.radius._constants import TerminateCause
from ocgate.radius._results import AccountingSession, RadiusChallenge, RadiusResult, SessionStats

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
