"""The public surface of ocgate.aggauth (STYLE rule 10)."""

from __future__ import annotations

import ocgate.aggauth

EXPECTED = {
    "DeviceId",
    "MAX_BODY_BYTES",
    "AuthReply",
    "ClientMessage",
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
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(ocgate.aggauth.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(ocgate.aggauth, name) is not None


def test_no_io_modules_imported() -> None:
    import sys

    for module in ("ocgate.aggauth._codec", "ocgate.aggauth._render", "ocgate.aggauth._xml"):
        source = sys.modules[module].__file__
        assert source is not None
        with open(source, encoding="utf-8") as fh:
            text = fh.read()
        for banned in ("import asyncio", "import socket", "import time", "import logging"):
            assert banned not in text
