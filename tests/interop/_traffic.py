"""Real packets through the tunnel: ping and iperf3, run inside the namespaces."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._netns import NetnsPair, run

__all__ = ["BackgroundPing", "PingResult", "iperf3", "iperf3_report", "parse_ping", "ping"]

_SUMMARY_RE = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")


@dataclass(frozen=True, slots=True)
class PingResult:
    transmitted: int
    received: int
    output: str

    @property
    def lost(self) -> int:
        return self.transmitted - self.received


def parse_ping(output: str) -> PingResult:
    match = _SUMMARY_RE.search(output)
    if not match:
        return PingResult(0, 0, output)
    return PingResult(int(match.group(1)), int(match.group(2)), output)


def ping(
    pair: NetnsPair,
    ns: str,
    addr: str,
    *,
    count: int = 3,
    interval: float = 0.2,
    deadline: int = 10,
    size: int | None = None,
) -> PingResult:
    """``ping -c count`` from namespace ``ns``; never raises on loss."""
    argv = [
        "ping",
        "-n",
        *(["-s", str(size)] if size is not None else []),
        "-c",
        str(count),
        "-i",
        str(interval),
        "-W",
        "2",
        "-w",
        str(deadline),
        addr,
    ]
    proc = run(pair.exec_argv(ns, argv), check=False, timeout=deadline + 10)
    return parse_ping(proc.stdout + proc.stderr)


class BackgroundPing:
    """A continuous ping from namespace ``ns``, stopped with SIGINT for its summary."""

    def __init__(self, pair: NetnsPair, ns: str, addr: str, log_path: Path, interval: float = 0.1):
        self.log_path = log_path
        argv = pair.exec_argv(ns, ["ping", "-n", "-i", str(interval), "-W", "2", addr])
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> PingResult:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return parse_ping(self.log_path.read_text(errors="replace"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


def iperf3(
    pair: NetnsPair,
    *,
    server_addr: str,
    seconds: int = 3,
    reverse: bool = False,
    port: int = 5201,
    timeout: float = 60,
) -> float:
    """Run one iperf3 test (server in the server ns, client in the client ns); return bit/s."""
    report = iperf3_report(
        pair, server_addr=server_addr, seconds=seconds, reverse=reverse, port=port, timeout=timeout
    )
    end = report["end"]
    if "sum_received" not in end:
        raise AssertionError(f"iperf3 reported no result: {report.get('error', end)!r}")
    return float(end["sum_received"]["bits_per_second"])


def iperf3_report(
    pair: NetnsPair,
    *,
    server_addr: str,
    seconds: int = 3,
    reverse: bool = False,
    port: int = 5201,
    timeout: float = 60,
    omit: int = 0,
) -> dict[str, Any]:
    """Run one iperf3 test and return its whole ``--json`` report (``omit``: leave the first
    seconds out of the figures, iperf3 ``-O``)."""
    server_argv = ["iperf3", "-s", "-1", "-B", server_addr, "-p", str(port)]
    server = subprocess.Popen(
        pair.exec_argv(pair.server, server_argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client_argv = ["iperf3", "-c", server_addr, "-p", str(port), "-t", str(seconds), "--json"]
        if reverse:
            client_argv.append("-R")
        if omit:
            client_argv += ["-O", str(omit)]
        deadline = time.monotonic() + 10
        while True:  # The server needs a moment to bind; retry "connection refused".
            proc = run(pair.exec_argv(pair.client, client_argv), check=False, timeout=timeout)
            try:
                report: dict[str, Any] = json.loads(proc.stdout)
            except ValueError:
                report = {"error": proc.stdout + proc.stderr}
            error = str(report.get("error", ""))
            if not error and proc.returncode == 0:
                return report
            # iperf3 --json may exit 0 and put "Connection refused" in its report.
            if "refused" not in error or time.monotonic() > deadline:
                raise AssertionError(f"iperf3 client failed ({proc.returncode}): {error}")
            time.sleep(0.2)
    finally:
        if server.poll() is None:
            server.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.communicate(timeout=5)
