"""Acceptance of the DTLS issue: every mode openconnect 9.01 and Cisco clients use carries traffic.

Each mode is chosen on the client side exactly as the issue lists it; the client's own log line
"Established DTLS connection ... Ciphersuite ..." tells which protocol and cipher it negotiated.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocgate.dtls._epoch import IMPLEMENTATIONS

from ._netns import NetnsPair
from ._openconnect import OpenConnect, OpenConnectRunner
from ._server import SERVER_TUN4, ServerKind, StartServer
from ._traffic import BackgroundPing, iperf3, ping

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

ESTABLISHED = re.compile(
    r"Established DTLS connection \(using GnuTLS\)\. Ciphersuite (\S+?)\.?$", re.M
)
CISCO_UA = "--useragent=AnyConnect Linux_64 4.10.07061"

MODES = {
    "psk-default": ((), "(DTLS1.2)-(PSK)-(AES-256-GCM)"),
    "0.9-aes256-sha": (("--dtls-ciphers=AES256-SHA",), "(DTLS0.9)-(RSA)-(AES-256-CBC)-(SHA1)"),
    "0.9-aes128-sha": (("--dtls-ciphers=AES128-SHA",), "(DTLS0.9)-(RSA)-(AES-128-CBC)-(SHA1)"),
    "oc-dtls12-aes256-gcm": (
        ("--dtls-ciphers=OC-DTLS1_2-AES256-GCM",),
        "(DTLS1.2)-(RSA)-(AES-256-GCM)",
    ),
    "oc-dtls12-aes128-gcm": (
        ("--dtls-ciphers=OC-DTLS1_2-AES128-GCM",),
        "(DTLS1.2)-(RSA)-(AES-128-GCM)",
    ),
    "dtls12-aes256-gcm-sha384": (
        ("--dtls12-ciphers=AES256-GCM-SHA384", "--dtls-ciphers=UNKNOWN"),
        "(DTLS1.2)-(RSA)-(AES-256-GCM)",
    ),
    "dtls12-aes128-gcm-sha256": (
        ("--dtls12-ciphers=AES128-GCM-SHA256", "--dtls-ciphers=UNKNOWN"),
        "(DTLS1.2)-(RSA)-(AES-128-GCM)",
    ),
    "cisco-ecdhe-aes256": (
        ("--dtls12-ciphers=ECDHE-RSA-AES256-GCM-SHA384", "--dtls-ciphers=UNKNOWN", CISCO_UA),
        "AES-256-GCM",
    ),
    "cisco-ecdhe-aes128": (
        ("--dtls12-ciphers=ECDHE-RSA-AES128-GCM-SHA256", "--dtls-ciphers=UNKNOWN", CISCO_UA),
        "AES-128-GCM",
    ),
}

DTLS_CONFIG = {"udp-port": "443"}


def _established(client: OpenConnect, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = ESTABLISHED.search(client.output())
        if match:
            return match.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no DTLS connection\n{client.describe()}")


# The data path runs compiled when ocgate._fastpath is built, established data on the worker's
# C thread (ocgate.daemon._offload); every mode runs that way, and one suite of each record
# protection also with OCGATE_OFFLOAD=off (the compiled per-packet functions on the event loop)
# and with OCGATE_FASTPATH=python (the pure-Python path).
OTHER_PATHS = ("psk-default", "0.9-aes256-sha", "oc-dtls12-aes128-gcm", "cisco-ecdhe-aes256")
CASES = (
    [pytest.param(m, "default", id=m) for m in MODES]
    + [pytest.param(m, "loop", id=f"{m}-loop") for m in OTHER_PATHS]
    + [pytest.param(m, "python", id=f"{m}-python") for m in OTHER_PATHS]
)


@pytest.mark.parametrize(("mode", "fastpath"), CASES)
def test_dtls_mode_carries_traffic(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    fastpath: str,
) -> None:
    options, expected = MODES[mode]
    if fastpath == "python":
        monkeypatch.setenv("OCGATE_FASTPATH", "python")  # The server inherits it.
    elif fastpath == "loop":
        monkeypatch.setenv("OCGATE_OFFLOAD", "off")
    server = start_gateway(DTLS_CONFIG)
    client = openconnect.connect(
        server, user="alice", password="alicepass", dtls=True, extra=options
    )
    env = client.wait_env(timeout=40)
    cipher = _established(client)
    assert expected in cipher, f"{cipher}\n{client.describe()}"
    assert int(env["INTERNAL_IP4_MTU"]) >= 1200, env["INTERNAL_IP4_MTU"]
    result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=5)
    assert result.received == 5, result.output
    for reverse in (False, True):
        bps = iperf3(
            netns_pair, server_addr=SERVER_TUN4, seconds=2, reverse=reverse, port=5201 + reverse
        )
        direction = "server -> client" if reverse else "client -> server"
        print(f"\niperf3 DTLS {mode} {direction}: {bps / 1e6:.1f} Mbit/s")
        assert bps > 1e6
    assert "event=dtls-up" in server.log_text()
    if server.kind is ServerKind.OCGATE:
        want = "python" if fastpath == "python" or "c" not in IMPLEMENTATIONS else "c"
        assert f"fastpath={want}" in server.log_text()
        thread = fastpath == "default" and want == "c"  # The worker's data-path thread.
        assert f"datapath={'thread' if thread else 'loop'}" in server.log_text()
    server.assert_alive()


def _nft(pair: NetnsPair, *rules: str) -> None:
    for rule in rules:
        pair.run_in(pair.server, ["nft", *rule.split()])


def test_blocked_udp_falls_back_to_cstp_and_dtls_comes_back(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    server = start_gateway({**DTLS_CONFIG, "dpd": "3", "switch-to-tcp-timeout": "3"})
    client = openconnect.connect(server, user="alice", password="alicepass", dtls=True)
    client.wait_env(timeout=40)
    _established(client)
    ups = server.log_text().count("event=dtls-up")
    pinger = BackgroundPing(netns_pair, netns_pair.client, SERVER_TUN4, tmp_path / "ping.log")
    try:
        _nft(
            netns_pair,
            "add table inet ocgtest",
            "add chain inet ocgtest input { type filter hook input priority 0 ; }",
            "add rule inet ocgtest input udp dport 443 drop",
        )
        time.sleep(15)  # DTLS DPD on both sides notices, data moves to CSTP.
        blocked = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=5)
        assert blocked.received == 5, (
            f"no traffic over CSTP while UDP is blocked\n{client.describe()}"
        )
        _nft(netns_pair, "delete table inet ocgtest")
        deadline = time.monotonic() + 90
        while server.log_text().count("event=dtls-up") <= ups:
            assert time.monotonic() < deadline, f"DTLS did not come back\n{client.describe()}"
            time.sleep(0.5)
        after = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=5)
        assert after.received == 5
        assert client.proc.poll() is None, "the tunnel was torn down"
        assert server.log_text().count("event=tunnel-up") == 1, "the tunnel was reconnected"
    finally:
        pinger.close()
        netns_pair.run_in(
            netns_pair.server, ["nft", "delete", "table", "inet", "ocgtest"], check=False
        )


SNIFF = r"""
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.settimeout(30)
while True:
    pkt = s.recv(65535)
    ihl = (pkt[0] & 15) * 4
    if pkt[9] != 17:
        continue
    sport, dport = struct.unpack("!HH", pkt[ihl:ihl + 4])
    payload = pkt[ihl + 8:]
    if dport == 443 and payload[:1] == b"\x16" and len(payload) > 60 and payload[13] == 1:
        sys.stdout.write(payload.hex())
        break
"""


def test_garbage_and_replayed_hellos_leave_tunnels_working(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
) -> None:
    server = start_gateway(DTLS_CONFIG)
    sniffer = subprocess.Popen(
        netns_pair.exec_argv(netns_pair.server, [sys.executable, "-c", SNIFF]),
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    client = openconnect.connect(server, user="alice", password="alicepass", dtls=True)
    client.wait_env(timeout=40)
    _established(client)
    hello = bytes.fromhex(sniffer.communicate(timeout=30)[0])
    assert hello[:1] == b"\x16"
    pinger = BackgroundPing(netns_pair, netns_pair.client, SERVER_TUN4, tmp_path / "ping.log")
    flood = r"""
import os, socket, sys
hello = bytes.fromhex(sys.argv[1])
for i in range(3000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(hello if i % 2 else os.urandom(1 + i % 300), ("198.18.0.1", 443))
    s.close()
"""
    netns_pair.run_in(netns_pair.client, [sys.executable, "-c", flood, hello.hex()], timeout=60)
    time.sleep(1)
    result = pinger.stop()
    assert result.transmitted > 0
    assert result.lost <= 2, result.output
    assert client.proc.poll() is None
    assert server.log_text().count("event=dtls-up") == 1, "a replayed hello replaced the channel"
    # The tunnel still carries data over DTLS after the flood.
    assert ping(netns_pair, netns_pair.client, SERVER_TUN4, count=5).received == 5
    server.assert_alive()
