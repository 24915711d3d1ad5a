"""Compression with the real openconnect 9.01: negotiation, traffic each way, ``ctl`` output.

openconnect offers ``oc-lz4,lzs`` on CSTP and DTLS by default (``--compression=stateless``) and
adds ``deflate`` on CSTP with ``--compression=all``; it has no option to offer LZS alone, so LZS
is chosen on the server side (``compression-algo-priority = lzs``), as is deflate. With ``-vv``
openconnect logs each compressed packet it receives and sends, which shows that both directions
really carried compressed frames (and that its decompressor accepted ours); on DTLS it logs
the size a packet took on the wire, smaller than the packet only when it went compressed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ._netns import NetnsPair
from ._openconnect import OpenConnectRunner
from ._server import SERVER_TUN4, Server, ServerKind, StartServer
from ._traffic import iperf3, ping

pytestmark = [pytest.mark.interop, pytest.mark.timeout(150)]

OCGATE = str(Path(sys.executable).parent / "ocgate")
ON = {"compression": "true"}

# (server keys, openconnect options, DTLS, CSTP method, DTLS method)
CASES = {
    "default-cstp-lz4": (ON, (), False, "oc-lz4", ""),
    "default-dtls-lz4": ({**ON, "udp-port": "443"}, (), True, "oc-lz4", "oc-lz4"),
    "lzs-cstp-and-dtls": (
        {**ON, "udp-port": "443", "compression-algo-priority": "lzs"},
        (),
        True,
        "lzs",
        "lzs",
    ),
    "deflate-cstp": (
        {**ON, "compression-algo-priority": "deflate:lz4"},
        ("--compression=all",),
        False,
        "deflate",
        "",
    ),
    "off-by-default": ({}, (), False, "", ""),
}


@pytest.fixture(autouse=True)
def _ocgate_only(kind: ServerKind) -> None:
    if kind is not ServerKind.OCGATE:
        pytest.skip("reads ocgate's control socket")


def _ctl(sock: Path, *words: str) -> str:
    argv = [OCGATE, "ctl", "-s", str(sock), *words]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 0, f"{argv}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _field(text: str, label: str) -> str:
    """The value occtl prints after ``label:`` (occtl leaves out a label with no value)."""
    match = re.search(rf"{re.escape(label)}: (\S+)", text)
    return match.group(1) if match else ""


@pytest.mark.parametrize("case", list(CASES))
def test_negotiated_method_carries_ping_and_shows_in_ctl(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    case: str,
) -> None:
    keys, options, dtls, cstp_method, dtls_method = CASES[case]
    sock = tmp_path / "occtl.sock"
    server: Server = start_gateway({"use-occtl": "true", "occtl-socket-file": str(sock), **keys})
    client = openconnect.connect(
        server, user="alice", password="alicepass", dtls=dtls, extra=("-vv", *options)
    )
    client.wait_env(timeout=40)
    # 1000-byte pings: above no-compress-limit (256) and compressible (ping's byte pattern).
    result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=4, size=1000)
    assert result.received == 4, f"{result.output}\n{client.describe()}\n{server.describe()}"
    log = client.output()
    reply_header = re.search(r"X-CSTP-Content-Encoding: (\S+)", log)
    assert (reply_header.group(1) if reply_header else "") == cstp_method, client.describe()
    dtls_header = re.search(r"X-DTLS-Content-Encoding: (\S+)", log)
    assert (dtls_header.group(1) if dtls_header else "") == dtls_method, client.describe()
    received = re.findall(r"Received (?:\w+ )?compressed data packet of \d+ bytes", log)
    sent = re.findall(r"Sending compressed data packet of \d+ bytes", log)
    # On DTLS openconnect logs the packet size and what the DTLS send took (type byte included).
    sent += [
        size
        for size, took in re.findall(
            r"Sent DTLS packet of (\d+) bytes; DTLS send returned (\d+)", log
        )
        if int(took) <= int(size)
    ]
    if cstp_method or dtls_method:
        assert received, f"no compressed packet reached openconnect\n{client.describe(200)}"
        assert sent, f"openconnect sent no compressed packet\n{client.describe(200)}"
    else:
        assert not received
        assert not sent
    user = _ctl(sock, "show", "user", "alice")
    assert _field(user, "CSTP compression") == cstp_method, user
    assert _field(user, "DTLS compression") == dtls_method, user
    server.assert_alive()


@pytest.mark.parametrize("case", ["default-dtls-lz4", "lzs-cstp-and-dtls", "deflate-cstp"])
def test_iperf3_over_a_compressed_tunnel(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    case: str,
) -> None:
    """Bulk TCP both ways (2 s each): what the server compresses and what it decompresses."""
    keys, options, dtls, cstp_method, _ = CASES[case]
    server = start_gateway(keys)
    client = openconnect.connect(
        server, user="alice", password="alicepass", dtls=dtls, extra=options
    )
    client.wait_env(timeout=40)
    label = {"oc-lz4": "LZ4", "lzs": "LZS", "deflate": "Deflate"}[cstp_method]
    assert f"SSL + {label} connected" in client.output(), client.describe()
    for reverse in (False, True):
        bps = iperf3(
            netns_pair, server_addr=SERVER_TUN4, seconds=2, reverse=reverse, port=5201 + reverse
        )
        direction = "server -> client" if reverse else "client -> server"
        print(f"\niperf3 {case} {direction}: {bps / 1e6:.1f} Mbit/s")
        assert bps > 1e6, f"{bps} bit/s is not a working tunnel\n{server.describe()}"
    server.assert_alive()
