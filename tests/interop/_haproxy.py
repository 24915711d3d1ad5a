"""A real HAProxy (Debian's ``haproxy``) in the server namespace, in front of the gateway.

The test writes its own configuration (``mode tcp``, one backend server with ``send-proxy`` for
PROXY protocol v1 or ``send-proxy-v2`` for v2) into its temporary directory and starts HAProxy in
the foreground (``-db``); :meth:`Balancer.stop` ends it. HAProxy listens on every address of the
server namespace at :data:`BALANCER_PORT` and connects to the gateway at the server namespace's
own address, so the gateway's TCP peer is the balancer (198.18.0.1), never the client.
:func:`run_haproxy` starts HAProxy with a configuration the caller wrote (several frontends and
backends, health checks: ``test_cluster.py``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ._netns import NetnsPair, tcp_port_open

__all__ = ["BALANCER_PORT", "Balancer", "haproxy_missing", "run_haproxy", "start_haproxy"]

BALANCER_PORT = 8443


def haproxy_missing() -> bool:
    return shutil.which("haproxy") is None


@dataclass
class Balancer:
    """A running HAProxy."""

    proc: subprocess.Popen[bytes]
    config_path: Path
    log_path: Path
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}/"

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        try:
            log = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            log = ""
        return f"--- haproxy ({state}) {self.config_path} ---\n{log[-3000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)


def start_haproxy(
    pair: NetnsPair,
    workdir: Path,
    *,
    backend: tuple[str, int],
    send_proxy: str,
    port: int = BALANCER_PORT,
) -> Balancer:
    """Start HAProxy in the server namespace, relaying ``:port`` to ``backend`` with
    ``send_proxy`` (``send-proxy`` or ``send-proxy-v2``) on its server line."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "haproxy.cfg"
    config_path.write_text(
        "global\n"
        "    maxconn 512\n"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 5s\n"
        "    timeout client 300s\n"
        "    timeout server 300s\n"
        "frontend vpn\n"
        f"    bind :{port}\n"
        "    default_backend gateways\n"
        "backend gateways\n"
        f"    server gw1 {backend[0]}:{backend[1]} {send_proxy}\n"
    )
    return run_haproxy(pair, config_path, port=port)


def run_haproxy(pair: NetnsPair, config_path: Path, *, port: int = BALANCER_PORT) -> Balancer:
    """Start HAProxy in the server namespace with the configuration at ``config_path`` (written
    by the caller, its log beside it) and wait until ``:port`` accepts from the client side."""
    log_path = config_path.with_name("haproxy.log")
    argv = pair.exec_argv(pair.server, ["haproxy", "-db", "-f", str(config_path)])
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    balancer = Balancer(proc, config_path, log_path, pair.server_addr, port)
    deadline = time.monotonic() + 15
    while not tcp_port_open(pair.client, pair.server_addr, port, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            balancer.stop()
            raise AssertionError(f"haproxy did not start\n{balancer.describe()}")
        time.sleep(0.1)
    return balancer
