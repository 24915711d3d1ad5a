"""Gateway application logic above the protocol cores: the login dialog and the CONNECT reply."""

from __future__ import annotations

# Names load on first use (PEP 562): a worker, which only plans tunnels, does not import the
# login dialog and the authentication backends it never runs.
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocgate.gateway._authflow import Accepted, LoginBackends, LoginFlow, Prompt, Step
    from ocgate.gateway._bandwidth import TokenBucket
    from ocgate.gateway._connect import (
        TunnelPlan,
        client_wants_ipv6,
        connect_headers,
        dtls_headers,
        is_mobile,
    )
    from ocgate.gateway._contexts import CONTEXT_COOKIE, LoginContexts
    from ocgate.gateway._filter import tunnel_filter
    from ocgate.gateway._groups import GroupEntry, GroupMenu, parse_group_entry
    from ocgate.gateway._login import DOWNLOADER_STUBS, LoginDialog, LoginServices
    from ocgate.gateway._plan import (
        lease_addresses,
        lease_ipv4,
        lease_ipv6,
        plan_tunnel,
        previous_addresses,
    )
    from ocgate.gateway._scripts import ScriptContext, script_environment
    from ocgate.gateway._settings import SessionSettings, radius_overrides, session_settings
    from ocgate.gateway._sso import SsoService
    from ocgate.gateway._strap import (
        STRAP_PUBKEY,
        STRAP_VERIFY,
        StrapProof,
        load_strap_pubkey_untrusted,
        verify_strap,
    )

_WHERE = {
    "Accepted": "ocgate.gateway._authflow",
    "CONTEXT_COOKIE": "ocgate.gateway._contexts",
    "LoginContexts": "ocgate.gateway._contexts",
    "DOWNLOADER_STUBS": "ocgate.gateway._login",
    "GroupEntry": "ocgate.gateway._groups",
    "GroupMenu": "ocgate.gateway._groups",
    "LoginBackends": "ocgate.gateway._authflow",
    "LoginDialog": "ocgate.gateway._login",
    "LoginFlow": "ocgate.gateway._authflow",
    "LoginServices": "ocgate.gateway._login",
    "STRAP_PUBKEY": "ocgate.gateway._strap",
    "STRAP_VERIFY": "ocgate.gateway._strap",
    "StrapProof": "ocgate.gateway._strap",
    "load_strap_pubkey_untrusted": "ocgate.gateway._strap",
    "verify_strap": "ocgate.gateway._strap",
    "Prompt": "ocgate.gateway._authflow",
    "ScriptContext": "ocgate.gateway._scripts",
    "SessionSettings": "ocgate.gateway._settings",
    "SsoService": "ocgate.gateway._sso",
    "Step": "ocgate.gateway._authflow",
    "TokenBucket": "ocgate.gateway._bandwidth",
    "TunnelPlan": "ocgate.gateway._connect",
    "client_wants_ipv6": "ocgate.gateway._connect",
    "connect_headers": "ocgate.gateway._connect",
    "dtls_headers": "ocgate.gateway._connect",
    "is_mobile": "ocgate.gateway._connect",
    "lease_addresses": "ocgate.gateway._plan",
    "lease_ipv4": "ocgate.gateway._plan",
    "lease_ipv6": "ocgate.gateway._plan",
    "parse_group_entry": "ocgate.gateway._groups",
    "plan_tunnel": "ocgate.gateway._plan",
    "previous_addresses": "ocgate.gateway._plan",
    "radius_overrides": "ocgate.gateway._settings",
    "script_environment": "ocgate.gateway._scripts",
    "session_settings": "ocgate.gateway._settings",
    "tunnel_filter": "ocgate.gateway._filter",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ocgate.gateway' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CONTEXT_COOKIE",
    "DOWNLOADER_STUBS",
    "STRAP_PUBKEY",
    "STRAP_VERIFY",
    "Accepted",
    "GroupEntry",
    "GroupMenu",
    "LoginBackends",
    "LoginContexts",
    "LoginDialog",
    "LoginFlow",
    "LoginServices",
    "Prompt",
    "ScriptContext",
    "SessionSettings",
    "SsoService",
    "Step",
    "StrapProof",
    "TokenBucket",
    "TunnelPlan",
    "client_wants_ipv6",
    "connect_headers",
    "dtls_headers",
    "is_mobile",
    "lease_addresses",
    "lease_ipv4",
    "lease_ipv6",
    "load_strap_pubkey_untrusted",
    "parse_group_entry",
    "plan_tunnel",
    "previous_addresses",
    "radius_overrides",
    "script_environment",
    "session_settings",
    "tunnel_filter",
    "verify_strap",
]
