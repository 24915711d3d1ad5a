"""AnyConnect AggAuth ("config-auth") XML codec: parse client bodies, render server replies.

Pure code (sans-IO): no I/O, no logging, no clock. Reference: anyconnect-protocol.md §2.5, §3, §4.
"""

from __future__ import annotations

from ocgate.aggauth._codec import device_claim, parse_client_message_untrusted
from ocgate.aggauth._messages import (
    AuthReply,
    ClientMessage,
    DeviceId,
    FormInput,
    GroupOption,
    InitRequest,
    LoginForm,
    LogoutRequest,
    SsoLinks,
)
from ocgate.aggauth._render import (
    make_opaque,
    render_auth_request,
    render_complete,
    render_legacy_form,
    render_legacy_success,
    render_logout_complete,
)
from ocgate.aggauth._xml import MAX_BODY_BYTES

__all__ = [
    "MAX_BODY_BYTES",
    "AuthReply",
    "ClientMessage",
    "DeviceId",
    "FormInput",
    "GroupOption",
    "InitRequest",
    "LoginForm",
    "LogoutRequest",
    "SsoLinks",
    "device_claim",
    "make_opaque",
    "parse_client_message_untrusted",
    "render_auth_request",
    "render_complete",
    "render_legacy_form",
    "render_legacy_success",
    "render_logout_complete",
]
