"""Acceptance (issue 11): the policy keys ``rx-data-per-sec``/``tx-data-per-sec``, ``deny-roaming``
and ``no-udp`` hold against the real openconnect, globally and per user.

* Bandwidth: iperf3 through the tunnel, each direction with its own limit (so a swapped direction
  would show), over CSTP with the global keys and over DTLS with the keys in the user's file. The
  limit must hold from above (the key assertion: a policer that lets more through is broken); from
  below, a TCP flow through a drop-based policer on a loaded machine only needs to get a fair share.
* deny-roaming: the client namespace gets a second address; a cookie obtained from the first
  (``openconnect --authenticate``) is refused from the second and accepted again from the first.
* no-udp: openconnect's verbose log shows the CONNECT reply's headers; none is ``X-DTLS-*`` and no
  DTLS channel comes up, while a user without the key gets DTLS from the same server.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._metrics import sample, scrape
from ._netns import NetnsPair
from ._openconnect import OpenConnect, OpenConnectRunner
from ._server import SERVER_TUN4, Server, ServerKind, StartServer
from ._traffic import iperf3_report, ping

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

COOKIE_REJECTED = 2  # openconnect's exit status for "401 Cookie is not acceptable".
RX_LIMIT = 2_000_000  # bytes/s from the client
TX_LIMIT = 1_000_000  # bytes/s to the client
ABOVE = 1.20  # The acceptance bound: within 20 % of the limit.
BELOW = 0.70  # A sane floor for TCP through a drop-based policer on a loaded 2-core machine.
METRICS_PORT = 9096
SECOND_ADDR = "198.18.0.6"
ESTABLISHED = re.compile(r"Established DTLS connection")


def _users_dir(tmp_path: Path, files: dict[str, str]) -> str:
    users = tmp_path / "users"
    users.mkdir(exist_ok=True)
    for name, text in files.items():
        (users / name).write_text(text)
    return str(users)


def _throughput(pair: NetnsPair, *, reverse: bool, port: int) -> float:
    """Bytes/s iperf3 moved through the tunnel (TCP payload; the first 2 s left out)."""
    report = iperf3_report(
        pair, server_addr=SERVER_TUN4, seconds=8, reverse=reverse, port=port, omit=2, timeout=90
    )
    end = report["end"]
    assert "sum_received" in end, report.get("error", end)
    return float(end["sum_received"]["bits_per_second"]) / 8


@pytest.mark.parametrize("where", ["cstp-global", "dtls-per-user"])
def test_bandwidth_limits_hold_in_each_direction(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    where: str,
) -> None:
    limits = f"rx-data-per-sec = {RX_LIMIT}\ntx-data-per-sec = {TX_LIMIT}\n"
    metrics = {"metrics-listen": f"127.0.0.1:{METRICS_PORT}"}
    if where == "cstp-global":
        server = start_gateway(
            {"rx-data-per-sec": str(RX_LIMIT), "tx-data-per-sec": str(TX_LIMIT), **metrics}
        )
        client = openconnect.connect(server, user="alice", password="alicepass")
    else:
        users = _users_dir(tmp_path, {"alice": limits})
        server = start_gateway({"udp-port": "443", "config-per-user": users, **metrics})
        client = openconnect.connect(server, user="alice", password="alicepass", dtls=True)
    client.wait_env(timeout=40)
    if where == "dtls-per-user":
        _wait_dtls(client)
    measured = {
        "rx (client -> server)": (_throughput(netns_pair, reverse=False, port=5211), RX_LIMIT),
        "tx (server -> client)": (_throughput(netns_pair, reverse=True, port=5212), TX_LIMIT),
    }
    report = ", ".join(
        f"{name}: {rate / 1e6:.2f} MB/s = {rate / limit:.0%} of {limit / 1e6:.1f} MB/s"
        for name, (rate, limit) in measured.items()
    )
    print(f"\n{server.kind.value} {where}: {report}")
    for name, (rate, limit) in measured.items():
        assert rate <= ABOVE * limit, f"{name} exceeds its limit: {report}\n{server.describe()}"
        assert rate >= BELOW * limit, f"{name} starved: {report}\n{server.describe()}"
    if where == "dtls-per-user":
        assert ESTABLISHED.search(client.output()), client.describe()
    # The policer's drops are counted, by direction.
    text = scrape(netns_pair, METRICS_PORT)
    for direction in ("rx", "tx"):
        labels = f'cause="rate-limit",direction="{direction}"'
        assert sample(text, f"ocgate_tunnel_discarded_packets_total{{{labels}}}") > 0, text
    server.assert_alive()


def _wait_dtls(client: OpenConnect, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not ESTABLISHED.search(client.output()):
        assert time.monotonic() < deadline, f"no DTLS connection\n{client.describe()}"
        time.sleep(0.2)


def test_without_limits_the_tunnel_is_faster_than_the_limits(
    netns_pair: NetnsPair, server: Server, openconnect: OpenConnectRunner
) -> None:
    """The control: the bandwidth test measures the limit, not a slow tunnel."""
    client = openconnect.connect(server, user="alice", password="alicepass")
    client.wait_env(timeout=40)
    rate = _throughput(netns_pair, reverse=True, port=5213)
    print(f"\n{server.kind.value} unlimited tx: {rate / 1e6:.2f} MB/s")
    assert rate > 2 * ABOVE * TX_LIMIT, f"{rate / 1e6:.2f} MB/s\n{server.describe()}"


@contextlib.contextmanager
def _from_second_address(pair: NetnsPair) -> Iterator[None]:
    """Connections from the client namespace to the server leave from :data:`SECOND_ADDR`."""
    undo = [
        ["ip", "-n", pair.client, "route", "del", f"{pair.server_addr}/32"],
        ["ip", "-n", pair.server, "route", "del", f"{SECOND_ADDR}/32"],
        ["ip", "-n", pair.client, "addr", "del", f"{SECOND_ADDR}/32", "dev", "veth-c"],
    ]
    try:
        pair.run_in(pair.client, ["ip", "addr", "add", f"{SECOND_ADDR}/32", "dev", "veth-c"])
        pair.run_in(pair.server, ["ip", "route", "add", f"{SECOND_ADDR}/32", "dev", "veth-s"])
        pair.run_in(
            pair.client,
            ["ip", "route", "add", f"{pair.server_addr}/32", "dev", "veth-c", "src", SECOND_ADDR],
        )
        yield
    finally:
        for argv in undo:
            pair.run_in(pair.client, argv, check=False)


def _cookie(openconnect: OpenConnectRunner, server: Server, user: str) -> str:
    auth = openconnect.authenticate(server, user=user, stdin=f"{user}pass\n")
    assert auth.returncode == 0, auth.describe()
    assert auth.cookie, auth.describe()
    return auth.cookie


@pytest.mark.parametrize("where", ["global", "per-user"])
def test_deny_roaming_refuses_a_cookie_from_another_address(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    kind: ServerKind,
    where: str,
) -> None:
    if where == "global":
        server = start_gateway({"deny-roaming": "true"})
    else:  # Only alice's file denies roaming; bob roams freely (the control).
        users = _users_dir(tmp_path, {"alice": "deny-roaming = true\n"})
        server = start_gateway({"config-per-user": users})
    cookie = _cookie(openconnect, server, "alice")
    bob_cookie = _cookie(openconnect, server, "bob") if where == "per-user" else None

    with _from_second_address(netns_pair):
        roamed = openconnect.connect(server, cookie=cookie)
        assert roamed.wait(30) == COOKIE_REJECTED, (
            f"a roamed cookie was accepted\n{roamed.describe()}"
        )
        assert not roamed.env_file.exists()
        if kind is ServerKind.OCGATE:
            server.wait_log(
                rf"event=roaming-refused user='alice' .*login_remote={netns_pair.client_addr} "
                rf"remote={SECOND_ADDR}"
            )
        if bob_cookie is not None:
            bob = openconnect.connect(server, cookie=bob_cookie)
            bob.wait_env(timeout=30)
            assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=2).received == 2
            assert bob.stop() == 0, bob.describe()

    # From the address that logged in, the same cookie is still good.
    home = openconnect.connect(server, cookie=cookie)
    home.wait_env(timeout=30)
    result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3)
    assert result.received == 3, f"{result.output}\n{server.describe()}"
    server.assert_alive()


_HEADER = re.compile(r"^(?:\[[^\]]*\] )?(X-(?:CSTP|DTLS)-[A-Za-z0-9-]+):", re.M)


def _reply_headers(client: OpenConnect) -> list[str]:
    """Names of the X-CSTP-*/X-DTLS-* headers openconnect -v printed from the CONNECT reply."""
    return _HEADER.findall(client.output())


@pytest.mark.parametrize("where", ["global", "per-user"])
def test_no_udp_clients_get_no_dtls_headers_and_stay_on_cstp(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    kind: ServerKind,
    where: str,
) -> None:
    if where == "global":
        if kind is ServerKind.OCSERV:
            pytest.skip("ocserv 1.1.6 reads no-udp only in per-user files (unknown option here)")
        server = start_gateway({"udp-port": "443", "no-udp": "true"})
    else:  # Only alice's file says no-udp; bob gets DTLS from the same server (the control).
        users = _users_dir(tmp_path, {"alice": "no-udp = true\n"})
        server = start_gateway({"udp-port": "443", "config-per-user": users})
        bob = openconnect.connect(server, user="bob", password="bobpass", dtls=True, extra=["-v"])
        bob.wait_env(timeout=40)
        _wait_dtls(bob)
        assert "X-DTLS-Port" in _reply_headers(bob), bob.describe()
        assert bob.stop() == 0, bob.describe()

    client = openconnect.connect(
        server, user="alice", password="alicepass", dtls=True, extra=["-v"]
    )
    client.wait_env(timeout=40)
    result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=10, interval=0.3)
    assert result.received == 10, f"{result.output}\n{client.describe()}"
    headers = _reply_headers(client)
    assert "X-CSTP-Address" in headers, client.describe()  # The log does show the reply.
    assert not [h for h in headers if h.startswith("X-DTLS-")], client.describe()
    assert not ESTABLISHED.search(client.output()), client.describe()
    if kind is ServerKind.OCGATE:
        log = server.log_text()
        assert "event=tunnel-up user='alice'" in log
        assert "event=dtls-up" not in log.split("event=tunnel-up user='alice'", 1)[1]
    server.assert_alive()
