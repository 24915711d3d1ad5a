"""Acceptance: RADIUS authentication and accounting against a real FreeRADIUS 3.

FreeRADIUS runs inside the *server* namespace (the gateway reaches it on that namespace's
127.0.0.1), with the users of ``_freeradius.USERS``: ``alice`` (Class ``OU=eng``), ``bob``
(password, then an Access-Challenge "Enter the code" answered with ``123456``) and ``carol``
(Framed-IP-Address outside the pool, Framed-Route, timers).
"""

from __future__ import annotations

import ipaddress
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import _freeradius
from ._freeradius import FreeRadius, free_udp_port
from ._netns import NetnsPair
from ._openconnect import OpenConnectRunner
from ._server import SERVER_TUN4, Server, ServerKind, StartServer, server_kind
from ._traffic import BackgroundPing, iperf3_report

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(240),
    pytest.mark.skipif(server_kind() is ServerKind.OCSERV, reason="ocgate's RADIUS set-up"),
]


@pytest.fixture
def radius(netns_pair: NetnsPair, tmp_path: Path) -> Iterator[FreeRadius]:
    """FreeRADIUS in the server namespace (ports picked free there by trying)."""
    binary = shutil.which("freeradius") or shutil.which("radiusd")
    if binary is None:
        pytest.skip("needs FreeRADIUS")
    conf_dir = tmp_path / "raddb"
    auth_port, acct_port = free_udp_port(), free_udp_port()
    while acct_port == auth_port:
        acct_port = free_udp_port()
    _freeradius._write_config(conf_dir, auth_port, acct_port)
    with open(conf_dir / "radiusd.log", "wb") as log:
        process = subprocess.Popen(
            netns_pair.exec_argv(netns_pair.server, [binary, "-X", "-d", str(conf_dir)]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = FreeRadius(
        host="127.0.0.1",
        auth_port=auth_port,
        acct_port=acct_port,
        secret=_freeradius.SECRET,
        detail_dir=conf_dir / "radacct",
        conf_dir=conf_dir,
        process=process,
    )
    _freeradius._wait_ready(server, time.monotonic() + 15)
    try:
        yield server
    finally:
        server.stop()


def _start(
    start_gateway: StartServer,
    radius: FreeRadius,
    tmp_path: Path,
    *,
    acct: bool = False,
    extra: dict[str, str | list[str] | None] | None = None,
) -> Server:
    radcli = radius.write_radcli_config(tmp_path / "radiusclient.conf", timeout=1, retries=2)
    options: dict[str, str | list[str] | None] = {
        "auth": f'"radius[config={radcli},groupconfig=true]"',
        **(extra or {}),
    }
    if acct:
        options["acct"] = f'"radius[config={radcli}]"'
    return start_gateway(options)


def test_password_login(
    start_gateway: StartServer, openconnect: OpenConnectRunner, radius: FreeRadius, tmp_path: Path
) -> None:
    server = _start(start_gateway, radius, tmp_path)
    result = openconnect.authenticate(
        server, user="alice", stdin="alicepass\n", mode="--cookieonly"
    )
    assert result.returncode == 0, f"{result.describe()}\n{server.describe()}"
    bad = openconnect.authenticate(server, user="alice", stdin="nope\n", mode="--cookieonly")
    assert bad.returncode != 0, bad.describe()
    server.wait_log(r"login-failed user='alice'.*rejected", timeout=10)


def test_challenge_response_through_a_second_form(
    start_gateway: StartServer, openconnect: OpenConnectRunner, radius: FreeRadius, tmp_path: Path
) -> None:
    server = _start(start_gateway, radius, tmp_path)
    result = openconnect.authenticate(
        server, user="bob", stdin="bobpass\n123456\n", mode="--cookieonly"
    )
    assert result.returncode == 0, f"{result.describe()}\n{server.describe()}"
    assert "Enter the code" in result.stderr, result.describe()
    wrong = openconnect.authenticate(
        server, user="bob", stdin="bobpass\n000000\n", mode="--cookieonly"
    )
    assert wrong.returncode != 0, wrong.describe()


def _split(env: dict[str, str], prefix: str) -> list[str]:
    return [env.get(f"{prefix}_{i}_ADDR", "") for i in range(int(env.get(prefix, "0")))]


def test_class_selects_the_group_config(
    start_gateway: StartServer, openconnect: OpenConnectRunner, radius: FreeRadius, tmp_path: Path
) -> None:
    groups = tmp_path / "groups"
    groups.mkdir()
    (groups / "eng").write_text("route = 10.99.0.0/16\nroute = 10.98.0.0/16\n")
    server = _start(start_gateway, radius, tmp_path, extra={"config-per-group": str(groups)})
    client = openconnect.connect(server, user="alice", password="alicepass")
    env = client.wait_env(timeout=30)
    assert sorted(_split(env, "CISCO_SPLIT_INC")) == ["10.98.0.0", "10.99.0.0"], env
    server.wait_log(r"event=login user='alice' group='eng'", timeout=5)


def test_framed_ip_and_routes(
    start_gateway: StartServer, openconnect: OpenConnectRunner, radius: FreeRadius, tmp_path: Path
) -> None:
    server = _start(start_gateway, radius, tmp_path)
    client = openconnect.connect(server, user="carol", password="carolpass")
    env = client.wait_env(timeout=30)
    assert env["INTERNAL_IP4_ADDRESS"] == "10.9.0.5", env
    assert sorted(_split(env, "CISCO_SPLIT_INC")) == ["10.20.0.0", "192.168.50.0"], env
    assert env.get("CISCO_IDLE_TIMEOUT", "600") in {"600"}, env


def _records(radius: FreeRadius, kind: str) -> list[dict[str, str]]:
    return [r for r in radius.detail_records() if r.get("Acct-Status-Type") == kind]


def _wait_records(radius: FreeRadius, kind: str, timeout: float = 15) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _records(radius, kind)
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {kind} record\n{radius.detail_records()}")


def _octets(record: dict[str, str], name: str) -> int:
    giga = int(record.get(f"Acct-{name}-Gigawords", "0"))
    return giga * 2**32 + int(record.get(f"Acct-{name}-Octets", "0"))


def _iperf_bytes(report: dict[str, Any]) -> int:
    end = report["end"]
    summary = end.get("sum_sent") or end.get("sum") or end["streams"][0]["sender"]
    return int(summary["bytes"])


@pytest.mark.parametrize("reverse", [False, True], ids=["client-to-server", "server-to-client"])
def test_accounting_start_and_stop_with_byte_counts(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    radius: FreeRadius,
    tmp_path: Path,
    reverse: bool,
) -> None:
    """One session, one iperf3 direction: the Stop record's counter for that direction (IP
    bytes) is within 5 % of the TCP payload iperf3 sent (headers are about 4 %)."""
    server = _start(start_gateway, radius, tmp_path, acct=True)
    client = openconnect.connect(server, user="alice", password="alicepass")
    client.wait_env(timeout=30)
    start = _wait_records(radius, "Start")
    assert start[0]["User-Name"] == "alice", start
    sent = _iperf_bytes(iperf3_report(netns_pair, server_addr=SERVER_TUN4, reverse=reverse))
    assert client.stop(signal.SIGINT) == 0
    stop = _wait_records(radius, "Stop")[0]
    counted = _octets(stop, "Output" if reverse else "Input")
    print(f"\niperf3 sent {sent} bytes; Stop record: {counted}")
    assert abs(counted - sent) <= 0.05 * sent, (stop, sent)
    assert int(stop.get("Acct-Session-Time", "-1")) >= 0, stop
    assert stop.get("Acct-Terminate-Cause") == "User-Request", stop
    assert stop.get("Acct-Session-Id") == start[0].get("Acct-Session-Id"), (start, stop)


def test_dead_radius_fails_logins_quickly_and_keeps_tunnels(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    radius: FreeRadius,
    tmp_path: Path,
) -> None:
    server = _start(start_gateway, radius, tmp_path)
    client = openconnect.connect(server, user="alice", password="alicepass")
    client.wait_env(timeout=30)
    pinger = BackgroundPing(netns_pair, netns_pair.client, SERVER_TUN4, tmp_path / "ping.log")
    try:
        radius.stop()
        began = time.monotonic()
        result = openconnect.authenticate(
            server, user="alice", stdin="alicepass\n", mode="--cookieonly", timeout=60
        )
        elapsed = time.monotonic() - began
        assert result.returncode != 0, result.describe()
        assert elapsed < 20, f"login failure took {elapsed:.1f} s"
        server.wait_log(r"login-failed user='alice'.*unreachable", timeout=5)
        time.sleep(3)  # The tunnel keeps carrying traffic after the failed login.
    finally:
        summary = pinger.stop()
    assert summary.transmitted > 10, summary.output
    assert summary.received >= summary.transmitted - 2, summary.output
    assert client.proc.poll() is None, client.describe()
    _ = ipaddress  # (addresses are compared as text above)
