"""Gateway application logic above the protocol cores: the login dialog and the CONNECT reply."""

from __future__ import annotations

from ocgate.gateway._authflow import Accepted, LoginBackends, LoginFlow, Prompt, Step
from ocgate.gateway._connect import (
    TunnelPlan,
    client_wants_ipv6,
    connect_headers,
    dtls_headers,
    is_mobile,
)
from ocgate.gateway._groups import GroupEntry, GroupMenu, parse_group_entry
from ocgate.gateway._login import DOWNLOADER_STUBS, LoginDialog, LoginServices
from ocgate.gateway._plan import lease_ipv4, plan_tunnel, previous_addresses
from ocgate.gateway._scripts import ScriptContext, script_environment
from ocgate.gateway._settings import SessionSettings, radius_overrides, session_settings

__all__ = [
    "DOWNLOADER_STUBS",
    "Accepted",
    "GroupEntry",
    "GroupMenu",
    "LoginBackends",
    "LoginDialog",
    "LoginFlow",
    "LoginServices",
    "Prompt",
    "ScriptContext",
    "SessionSettings",
    "Step",
    "TunnelPlan",
    "client_wants_ipv6",
    "connect_headers",
    "dtls_headers",
    "is_mobile",
    "lease_ipv4",
    "parse_group_entry",
    "plan_tunnel",
    "previous_addresses",
    "radius_overrides",
    "script_environment",
    "session_settings",
]
