"""Acceptance: wrong passwords ban the source address; a ban ends after ``ban-time``."""

from __future__ import annotations

import time

import pytest

from ._openconnect import OpenConnectRunner
from ._server import ServerKind, StartServer, server_kind

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(180),
    pytest.mark.skipif(server_kind() is ServerKind.OCSERV, reason="ocgate's ban log lines"),
]

BAN_TIME = 6


def test_wrong_passwords_ban_the_address_until_ban_time_passes(
    start_gateway: StartServer, openconnect: OpenConnectRunner
) -> None:
    server = start_gateway(
        {
            "max-ban-score": "50",
            "ban-points-wrong-password": "10",
            "ban-points-connection": "1",
            "ban-time": str(BAN_TIME),
        }
    )
    for attempt in range(5):
        assert "event=address-banned" not in server.log_text(), f"banned after {attempt}"
        bad = openconnect.authenticate(server, user="alice", stdin="nope\n", mode="--cookieonly")
        assert bad.returncode != 0, bad.describe()
    server.wait_log(r"event=address-banned remote=198\.18\.0\.2", timeout=5)
    banned_at = time.monotonic()
    refused = openconnect.authenticate(
        server, user="alice", stdin="alicepass\n", mode="--cookieonly"
    )
    assert refused.returncode != 0, refused.describe()
    server.wait_log(r"(connection|login)-refused remote=198\.18\.0\.2", timeout=5)
    time.sleep(max(0.0, BAN_TIME + 0.5 - (time.monotonic() - banned_at)))
    ok = openconnect.authenticate(server, user="alice", stdin="alicepass\n", mode="--cookieonly")
    assert ok.returncode == 0, f"{ok.describe()}\n{server.describe()}"
