"""Acceptance: ``make run`` on a clean clone gives a demo gateway that the printed command reaches.

The test clones the repository (only committed files take part), runs ``make run NETNS=<server ns>
PORT=443 RUN_DIR=<tmp>/run`` (which installs a .venv in the clone with pip: slow, needs network),
waits for the block with the ``openconnect …`` command line and the ``Username:``/``Password:``
credentials, then runs that command in the client namespace. The printed URL names the machine (its
host name or address); the test substitutes the server end of the veth pair, 198.18.0.1, and keeps
the port. It adds ``--non-inter --passwd-on-stdin --script <test vpnc-script> --no-dtls``, and pings
the server's tunnel address, the first host of ``ipv4-network`` in ``<RUN_DIR>/ocserv.conf``."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from ._netns import SERVER_ADDR, NetnsPair, run, tcp_port_open
from ._openconnect import OpenConnectRunner, StaticEndpoint
from ._server import ServerKind, server_kind
from ._traffic import ping

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        server_kind() is ServerKind.OCSERV, reason="make run starts ocgate, not ocserv"
    ),
]

# The repository to clone; OCG_TEST_REPO points the test at another checkout (to try the harness).
REPO = Path(os.environ.get("OCG_TEST_REPO") or Path(__file__).resolve().parents[2])
PORT = 443
_INSTALL_TIMEOUT = 780


@dataclass(frozen=True, slots=True)
class Printed:
    """What ``make run`` printed: the openconnect command and the credentials."""

    argv: list[str]
    username: str
    password: str


def _parse_block(text: str) -> Printed | None:
    command = next(
        (ln.strip() for ln in text.splitlines() if ln.strip().startswith("openconnect ")), None
    )
    user = re.search(r"^\s*Username:\s*(\S+)", text, re.MULTILINE)
    password = re.search(r"^\s*Password:\s*(\S+)", text, re.MULTILINE)
    if command is None or user is None or password is None:
        return None
    return Printed(shlex.split(command), user.group(1), password.group(1))


def _split_command(argv: list[str]) -> tuple[str, str, str | None, list[str]]:
    """Return (url, pin, user, other options) from ``openconnect …`` argv."""
    url = pin = user = None
    rest: list[str] = []
    args = iter(argv[1:])
    for arg in args:
        if arg.startswith("https://"):
            url = arg
        elif arg == "--servercert":
            pin = next(args)
        elif arg.startswith("--servercert="):
            pin = arg.partition("=")[2]
        elif arg in ("--user", "-u"):
            user = next(args)
        elif arg.startswith("--user="):
            user = arg.partition("=")[2]
        else:
            rest.append(arg)
    assert url is not None, f"no https:// URL in {argv}"
    assert pin is not None, f"no --servercert in {argv}"
    assert pin.startswith("pin-sha256:"), f"no --servercert pin-sha256: in {argv}"
    return url, pin, user, rest


def _substitute_host(url: str) -> str:
    """The printed host is the machine's; inside the namespaces the server is at 198.18.0.1."""
    parts = urlsplit(url)
    port = parts.port or 443
    assert port == PORT, f"printed port {port}, asked for {PORT}"
    return urlunsplit(parts._replace(netloc=f"{SERVER_ADDR}:{port}"))


def _tunnel_address(config: str) -> str:
    """The server's tunnel address: first host of ``ipv4-network`` (+ ``ipv4-netmask``)."""
    values = dict(
        (m.group(1), m.group(2).strip().strip('"'))
        for m in re.finditer(
            r"^\s*(ipv4-network|ipv4-netmask)\s*=\s*(.+?)\s*$", config, re.MULTILINE
        )
    )
    network = values["ipv4-network"]
    if "/" not in network and "ipv4-netmask" in values:
        network = f"{network}/{values['ipv4-netmask']}"
    return str(next(ipaddress.ip_network(network, strict=False).hosts()))


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(15)
            return
        except subprocess.TimeoutExpired:
            continue


_CONSOLE_LOGIN = """
import sys, httpx, pyotp
base, user, password, secret = sys.argv[1:5]
with httpx.Client(base_url=base, verify=False) as c:
    csrf = c.get("/login").cookies["__Host-ocgate-csrf"]
    r = c.post("/api/v1/login", headers={"X-CSRF-Token": csrf},
               json={"username": user, "password": password, "otp": pyotp.TOTP(secret).now()})
    assert r.status_code == 200, r.text
    assert c.get("/api/v1/me").json()["role"] == "admin"
print("console ok")
"""


def _log_in_to_the_console(namespace: str, credentials: str) -> None:
    """The demo's web console answers on loopback and its printed administrator logs in."""
    found = re.search(
        r"Web console: (https://\S+?)/? .*?Administrator: (\S+)\s+Password: (\S+)\s+"
        r"TOTP secret[^:]*: (\S+)",
        credentials,
        re.DOTALL,
    )
    assert found is not None, credentials
    argv = ["ip", "netns", "exec", namespace, sys.executable, "-c", _CONSOLE_LOGIN, *found.groups()]
    assert "console ok" in run(argv, timeout=60).stdout


def test_make_run_prints_a_command_that_connects(
    netns_pair: NetnsPair, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", str(REPO), str(clone)], timeout=120)
    assert (clone / "Makefile").exists(), "the clone has no Makefile: nothing committed yet?"
    run_dir = tmp_path / "run"
    log_path = tmp_path / "make-run.log"
    argv = ["make", "run", f"NETNS={netns_pair.server}", f"PORT={PORT}", f"RUN_DIR={run_dir}"]
    with log_path.open("wb") as log:
        make = subprocess.Popen(
            argv, cwd=clone, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log_tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])

    try:
        started = time.monotonic()
        printed = None
        while printed is None:
            printed = _parse_block(log_path.read_text(errors="replace"))
            assert make.poll() is None or printed, (
                f"make run exited {make.returncode}\n{log_tail()}"
            )
            assert time.monotonic() - started < _INSTALL_TIMEOUT, (
                f"no command printed\n{log_tail()}"
            )
            time.sleep(0.5)
        deadline = time.monotonic() + 60
        while not tcp_port_open(netns_pair.client, SERVER_ADDR, PORT):
            assert make.poll() is None, f"make run exited {make.returncode}\n{log_tail()}"
            assert time.monotonic() < deadline, f"gateway not listening\n{log_tail()}"
            time.sleep(0.2)
        print(f"\nmake run ready after {time.monotonic() - started:.0f} s")

        credentials = (run_dir / "CREDENTIALS.txt").read_text()
        assert _parse_block(credentials) == printed, credentials

        url, pin, user, rest = _split_command(printed.argv)
        assert user == printed.username == "demo", printed
        endpoint = StaticEndpoint(_substitute_host(url), pin)
        client = openconnect.connect(
            endpoint, user=user, password=printed.password, extra=rest, routes=()
        )
        env = client.wait_env(timeout=30)
        target = _tunnel_address((run_dir / "ocserv.conf").read_text())
        result = ping(netns_pair, netns_pair.client, target, count=3)
        assert result.received == 3, f"{result.output}\n{env}\n{client.describe()}\n{log_tail()}"
        assert client.stop(signal.SIGINT) == 0, client.describe()
        _log_in_to_the_console(netns_pair.server, credentials)
    finally:
        openconnect.close_all()
        _stop_group(make)
        netns_pair.kill_in(netns_pair.server)
