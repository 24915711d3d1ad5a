"""Acceptance of issue 13 §7: what the login says of the client's machine is kept with the session.

openconnect 9.01 with ``--os=android`` describes its device as a mobile Cisco client does: the XML
init's ``<device-id platform-version="1.0" device-type="android" unique-id="AAAA…">android``
and the ``X-AnyConnect-Identifier-*`` headers (captured with ``--dump-http-traffic``). The gateway
keeps it with the session; ``ctl show user`` shows it, the connect script gets it, and the NVM
lease history records it beside the user.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._openconnect import OpenConnectRunner
from ._server import ServerKind, StartServer, recording_script, server_kind

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.skipif(server_kind() is ServerKind.OCSERV, reason="ocgate additions"),
]

OCGATE = str(Path(sys.executable).parent / "ocgate")
UNIQUE_ID = "A" * 40  # openconnect's placeholder unique id for a mobile --os


def test_the_device_shows_in_ctl_scripts_and_lease_history(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    sock = tmp_path / "occtl.sock"
    script, out = recording_script(tmp_path)
    store = tmp_path / "nvm.sqlite"
    server = start_gateway(
        {
            "use-occtl": "true",
            "occtl-socket-file": str(sock),
            "connect-script": str(script),
            "nvm-listen": "udp://0.0.0.0:2055",
            "nvm-store": f"sqlite:///{store}",
        }
    )
    client = openconnect.connect(server, user="alice", password="alicepass", extra=["--os=android"])
    client.wait_env()

    shown = subprocess.run(
        [OCGATE, "ctl", "-s", str(sock), "--json", "show", "user", "alice"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout  # fmt: skip
    (user,) = json.loads(shown)
    assert (user["Platform"], user["Platform version"]) == ("android", "1.0"), user
    assert (user["Device type"], user["Unique ID"]) == ("android", UNIQUE_ID), user

    deadline = time.monotonic() + 10
    while not list(out.glob("connect-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    env = dict(
        line.split("=", 1)
        for line in next(out.glob("connect-*")).read_text().splitlines()
        if "=" in line
    )
    assert (env["DEVICE_PLATFORM"], env["DEVICE_TYPE"]) == ("android", "android")
    assert (env["DEVICE_PLATFORM_VERSION"], env["DEVICE_UNIQUE_ID"]) == ("1.0", UNIQUE_ID)

    rows: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + 10
    while not rows and time.monotonic() < deadline:
        time.sleep(0.3)
        with (
            contextlib.suppress(sqlite3.OperationalError),
            contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db,
        ):
            rows = db.execute(
                "SELECT username, device_platform, device_unique_id FROM vpn_leases"
            ).fetchall()
    assert rows, server.describe()
    assert set(rows) == {("alice", "android", UNIQUE_ID)}, rows
    server.assert_alive()
