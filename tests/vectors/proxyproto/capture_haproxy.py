"""Capture the PROXY protocol headers a real HAProxy sends, over loopback only.

Starts ``haproxy -db`` (Debian's package) with frontends on 127.0.0.1 and ::1 relaying to a
listener of this script with ``send-proxy`` (v1), ``send-proxy-v2`` (v2) and ``send-proxy-v2``
with ``proxy-v2-options crc32c,unique-id`` (v2 with TLVs), connects to each frontend, sends
``hello`` and writes what the listener received (the header, then ``hello``) to
``haproxy-<case>.bin`` beside this script, with the addresses and ports of each connection in
``expected.json``. Run from the repository::

    .venv/bin/python tests/vectors/proxyproto/capture_haproxy.py
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAYLOAD = b"hello"
TLV_OPTIONS = "proxy-v2-options crc32c,unique-id"
# (case, frontend host, frontend port, family, server line options)
CASES = [
    ("v1-tcp4", "127.0.0.1", 48101, socket.AF_INET, "send-proxy"),
    ("v1-tcp6", "::1", 48102, socket.AF_INET6, "send-proxy"),
    ("v2-tcp4", "127.0.0.1", 48103, socket.AF_INET, "send-proxy-v2"),
    ("v2-tcp6", "::1", 48104, socket.AF_INET6, "send-proxy-v2"),
    ("v2-tcp4-tlvs", "127.0.0.1", 48105, socket.AF_INET, "send-proxy-v2 " + TLV_OPTIONS),
]
BACKEND4 = ("127.0.0.1", 48110)
BACKEND6 = ("::1", 48111)


def _config() -> str:
    lines = [
        "global",
        "    maxconn 64",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 10s",
        "    timeout server 10s",
    ]
    for case, host, port, family, options in CASES:
        backend = BACKEND6 if family == socket.AF_INET6 else BACKEND4
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        server = (
            f"[{backend[0]}]:{backend[1]}" if ":" in backend[0] else f"{backend[0]}:{backend[1]}"
        )
        lines += [f"listen {case}", f"    bind {bind}"]
        if case.endswith("tlvs"):
            lines.append('    unique-id-format "%{+X}o%ci:%cp"')
        lines.append(f"    server s {server} {options}")
    return "\n".join(lines) + "\n"


def _listener(family: int, address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(8)
    sock.settimeout(10)
    return sock


def _wait_port(family: int, host: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"haproxy does not listen on {host}:{port}")


def _receive(listener: socket.socket) -> bytes:
    """The next relayed connection that carries the payload (the port probes carry none)."""
    while True:
        conn, _peer = listener.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while not data.endswith(PAYLOAD):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        if data.endswith(PAYLOAD):
            return data


def main() -> int:
    version = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=True)
    print(version.stdout.splitlines()[0])
    listeners = {socket.AF_INET: _listener(socket.AF_INET, BACKEND4),
                 socket.AF_INET6: _listener(socket.AF_INET6, BACKEND6)}  # fmt: skip
    expected: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "haproxy.cfg"
        config.write_text(_config())
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)])
        try:
            for _case, host, port, family, _options in CASES:
                _wait_port(family, host, port)
            for case, host, port, family, _options in CASES:
                client = socket.socket(family, socket.SOCK_STREAM)
                client.connect((host, port))
                client.sendall(PAYLOAD)
                data = _receive(listeners[family])
                source = client.getsockname()
                client.close()
                expected[f"haproxy-{case}.bin"] = {
                    "source": source[0],
                    "source_port": source[1],
                    "destination": host,
                    "destination_port": port,
                    "after": PAYLOAD.decode(),
                }
                (HERE / f"haproxy-{case}.bin").write_bytes(data)
                print(f"{case}: {len(data)} bytes {data[: -len(PAYLOAD)]!r}")
        finally:
            proc.terminate()
            proc.wait(10)
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
