"""Acceptance: many connect/disconnect cycles leak no tunnel, lease, session or task."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from ._netns import NetnsPair
from ._openconnect import OpenConnectRunner
from ._server import SERVER_TUN4, Server
from ._traffic import ping

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

CYCLES = 20


def _wait_for(what: str, check: Callable[[], str | None], timeout: float) -> None:
    """Poll ``check()`` (an error string, or None when fine) until it returns None."""
    deadline = time.monotonic() + timeout
    while True:
        error = check()
        if error is None:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {error}")
        time.sleep(0.25)


def test_connect_disconnect_cycles_leak_nothing(
    netns_pair: NetnsPair, server: Server, openconnect: OpenConnectRunner
) -> None:
    baseline = server.stats() if server.supports_stats else None
    started = time.monotonic()
    users = [("alice", "alicepass"), ("bob", "bobpass")]
    for cycle in range(CYCLES):
        user, password = users[cycle % len(users)]
        client = openconnect.connect(server, user=user, password=password)
        client.wait_env(timeout=30)
        result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=1)
        assert result.received == 1, f"cycle {cycle}: {result.output}\n{server.describe()}"
        status = client.stop(signal.SIGINT)
        assert status == 0, f"cycle {cycle}\n{client.describe()}"
    elapsed = time.monotonic() - started
    print(f"\n{CYCLES} cycles against {server.kind.value} in {elapsed:.1f} s")

    def no_server_tun() -> str | None:
        links = server.tun_links()
        return f"server tun links left: {links}" if links else None

    _wait_for("after the cycles", no_server_tun, timeout=15)
    server.assert_alive()
    if baseline is None:
        return

    last: dict[str, int] = {}

    def stats_idle() -> str | None:
        last.update(server.stats())
        bad = {
            k: last.get(k)
            for k in ("tunnels", "connected", "leases4", "leases6")
            if last.get(k) != 0
        }
        # More tasks than before the cycles is a leak; fewer is fine (the baseline may have
        # caught a short-lived task, e.g. a connection being answered).
        if last.get("tasks", 0) > baseline.get("tasks", 0):
            bad["tasks"] = last.get("tasks")
        return f"{bad} (stats {last}, baseline {baseline})" if bad else None

    _wait_for("server still holds resources", stats_idle, timeout=15)
