"""Gateway application logic above the protocol cores: the login dialog and the CONNECT reply."""

from __future__ import annotations

from ocgate.gateway._connect import TunnelPlan, client_wants_ipv6, connect_headers, is_mobile
from ocgate.gateway._login import DOWNLOADER_STUBS, LoginDialog, LoginServices
from ocgate.gateway._scripts import ScriptContext, script_environment

__all__ = [
    "DOWNLOADER_STUBS",
    "LoginDialog",
    "LoginServices",
    "ScriptContext",
    "TunnelPlan",
    "client_wants_ipv6",
    "connect_headers",
    "is_mobile",
    "script_environment",
]
