"""Start the gateway under test inside the server namespace.

The gateway is ``ocgate serve`` from the virtualenv that runs pytest. With the environment variable
``OCG_TEST_SERVER=ocserv`` the real ``ocserv`` (Debian package) runs instead, with the same config
file: that proves the tests themselves against the reference implementation. ocserv has no USR2
statistics line, so :meth:`Server.stats` skips the calling test there.

The config is an ocserv.conf rendered from :data:`DEFAULT_OPTIONS`; a test overrides keys with a
mapping ``{key: value | [values] | None}`` (``None`` drops the key, a list repeats it)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest

from ._certs import ServerCert
from ._netns import NetnsPair, run, tcp_port_open

__all__ = [
    "DEFAULT_OPTIONS",
    "DEFAULT_USERS",
    "POOL4",
    "POOL6",
    "SERVER_TUN4",
    "SERVER_TUN6",
    "Server",
    "ServerKind",
    "StartServer",
    "User",
    "recording_script",
    "render_config",
    "server_kind",
    "start_server",
    "write_passwd",
]

POOL4 = "10.77.0.0/24"
POOL6 = "fd77::/64"
SERVER_TUN4 = "10.77.0.1"
SERVER_TUN6 = "fd77::1"
PORT = 443
STATS_RE = re.compile(r"stats sessions=\d+.*")
_VENV_BIN = Path(sys.executable).parent


class ServerKind(Enum):
    """Which implementation the tests drive."""

    OCGATE = "ocgate"
    OCSERV = "ocserv"


def server_kind() -> ServerKind:
    """The implementation chosen by ``OCG_TEST_SERVER`` (default ocgate)."""
    value = os.environ.get("OCG_TEST_SERVER", "ocgate").strip().lower() or "ocgate"
    try:
        return ServerKind(value)
    except ValueError:
        raise RuntimeError(f"OCG_TEST_SERVER must be 'ocgate' or 'ocserv', not {value!r}") from None


@dataclass(frozen=True, slots=True)
class User:
    """An entry of the plain password file."""

    name: str
    password: str
    groups: tuple[str, ...] = ()
    locked: bool = False


DEFAULT_USERS = (
    User("alice", "alicepass", ("eng",)),
    User("bob", "bobpass"),
    User("carol", "carolpass", locked=True),
)

# (key, value) in file order; repeated keys are repeated lines. Paths are filled in by start_server.
DEFAULT_OPTIONS: tuple[tuple[str, str], ...] = (
    ("tcp-port", str(PORT)),
    ("device", "vpns"),
    ("ipv4-network", POOL4),
    ("ipv6-network", POOL6),
    ("ipv6-subnet-prefix", "128"),
    ("dns", "10.77.0.53"),
    ("dns", "fd77::53"),
    ("split-dns", "corp.test"),
    ("split-dns", "int.test"),
    ("default-domain", "corp.test"),
    ("route", "10.20.0.0/255.255.0.0"),
    ("route", "10.30.0.0/16"),
    ("route", "fd20::/48"),
    ("no-route", "10.20.5.0/255.255.255.0"),
    ("no-route", "fd20:0:5::/64"),
    ("tunnel-all-dns", "false"),
    ("mtu", "1400"),
    ("dpd", "90"),
    ("keepalive", "32400"),
    ("cookie-timeout", "300"),
    ("max-clients", "16"),
    ("max-same-clients", "4"),
    ("predictable-ips", "true"),
)

# Only for ocserv: no seccomp/privilege games inside the test namespace, no occtl socket.
_OCSERV_EXTRA: tuple[tuple[str, str], ...] = (
    ("isolate-workers", "false"),
    ("use-occtl", "false"),
)


def render_config(
    options: Sequence[tuple[str, str]], overrides: Mapping[str, str | Sequence[str] | None]
) -> str:
    """Render ``options`` with ``overrides`` applied (replacing every line of an overridden key)."""
    lines: list[str] = []
    done: set[str] = set()
    for key, value in options:
        if key not in overrides:
            lines.append(f"{key} = {value}")
            continue
        if key in done:
            continue
        done.add(key)
        lines.extend(_override_lines(key, overrides[key]))
    for key, new in overrides.items():
        if key not in done and key not in {k for k, _ in options}:
            lines.extend(_override_lines(key, new))
    return "\n".join(lines) + "\n"


def _override_lines(key: str, value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [f"{key} = {value}"]
    return [f"{key} = {v}" for v in value]


def recording_script(tmp_path: Path) -> tuple[Path, Path]:
    """A connect/disconnect script that writes its environment to ``out/$REASON-$$``; returns the
    script and ``out``."""
    out = tmp_path / "script-env"
    out.mkdir()
    script = tmp_path / "record.sh"
    script.write_text(f'#!/bin/sh\nenv > "{out}/$REASON-$$"\nexit 0\n')
    script.chmod(0o755)
    return script, out


def _passwd_tool(kind: ServerKind) -> list[str]:
    if kind is ServerKind.OCSERV:
        return ["ocpasswd"]
    return [str(_VENV_BIN / "ocgate"), "passwd"]


def write_passwd(path: Path, users: Sequence[User], kind: ServerKind) -> None:
    """Create the password file with the ocpasswd-compatible tool of ``kind``."""
    tool = _passwd_tool(kind)
    for user in users:
        argv = [*tool, "-c", str(path)]
        if user.groups:
            argv += ["-g", ",".join(user.groups)]
        run([*argv, user.name], input_text=user.password + "\n", timeout=30)
        if user.locked:
            run([*tool, "-c", str(path), "-l", user.name], timeout=30)


class Server:
    """A running gateway process inside the server namespace."""

    def __init__(
        self,
        *,
        kind: ServerKind,
        pair: NetnsPair,
        workdir: Path,
        config_path: Path,
        log_path: Path,
        proc: subprocess.Popen[bytes],
        cert: ServerCert,
    ) -> None:
        self.kind = kind
        self.pair = pair
        self.workdir = workdir
        self.config_path = config_path
        self.log_path = log_path
        self.proc = proc
        self.cert = cert
        self.host = pair.server_addr
        self.port = PORT

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}/"

    @property
    def pin(self) -> str:
        return self.cert.pin

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def describe(self) -> str:
        """A diagnostic block for assertion messages."""
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"--- {self.kind.value} ({state}) log tail {self.log_path} ---\n{self.log_tail()}"

    def wait_log(
        self, pattern: str | re.Pattern[str], *, since: int = 0, timeout: float = 10
    ) -> str:
        """Wait until a log line after byte ``since`` matches ``pattern``; return the line."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_since(since).splitlines():
                if regex.search(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matching {regex.pattern!r}\n{self.describe()}")
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the TCP port accepts connections from the client namespace."""
        deadline = time.monotonic() + timeout
        while not tcp_port_open(self.pair.client, self.host, self.port, timeout=0.5):
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited during start-up\n{self.describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not listening after {timeout} s\n{self.describe()}")
            time.sleep(0.1)

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, f"server died\n{self.describe()}"

    @property
    def supports_stats(self) -> bool:
        """Whether SIGUSR2 logs the ``stats …`` line (ocgate only)."""
        return self.kind is ServerKind.OCGATE

    def stats(self, timeout: float = 10) -> dict[str, int]:
        """Send SIGUSR2 and parse the one ``stats sessions=N …`` line it logs (ocgate only)."""
        if not self.supports_stats:
            pytest.skip("USR2 statistics line is an ocgate feature")
        self.assert_alive()
        offset = self.log_size()
        os.kill(self.pid, signal.SIGUSR2)
        line = self.wait_log(STATS_RE, since=offset, timeout=timeout)
        match = STATS_RE.search(line)
        assert match is not None
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(0))}

    def tun_links(self) -> list[str]:
        """Server-side tun interfaces (named after ``device``)."""
        return [name for name in self.pair.links(self.pair.server) if name.startswith("vpns")]

    def stop(self, timeout: float = 10) -> int | None:
        """Terminate the server (SIGTERM, then SIGKILL) and anything it left in the namespace."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.pair.kill_in(self.pair.server)
        return self.proc.returncode


StartServer = Callable[..., Server]
"""The ``start_gateway`` fixture: ``(overrides=None, users=DEFAULT_USERS) -> Server``."""


def _server_argv(kind: ServerKind, config_path: Path, pid_path: Path) -> list[str]:
    if kind is ServerKind.OCSERV:
        return ["ocserv", "-f", "-c", str(config_path), "-p", str(pid_path), "-d", "3"]
    ocgate = _VENV_BIN / "ocgate"
    return [str(ocgate), "serve", "-f", "-c", str(config_path), "-p", str(pid_path), "-d", "3"]


def start_server(
    *,
    pair: NetnsPair,
    workdir: Path,
    cert: ServerCert,
    overrides: Mapping[str, str | Sequence[str] | None] | None = None,
    users: Sequence[User] = DEFAULT_USERS,
    kind: ServerKind | None = None,
    ready_timeout: float = 30,
    tail: str = "",
) -> Server:
    """Write config and users into ``workdir`` and start the gateway in the server namespace.

    ``tail`` is text appended after the top-level keys (``[vhost:NAME]`` sections)."""
    kind = kind or server_kind()
    workdir.mkdir(parents=True, exist_ok=True)
    passwd = workdir / "ocpasswd"
    write_passwd(passwd, users, kind)
    config_path = workdir / "ocserv.conf"
    pid_path = workdir / "server.pid"
    options: list[tuple[str, str]] = [
        ("auth", f'"plain[passwd={passwd}]"'),
        ("server-cert", str(cert.cert_path)),
        ("server-key", str(cert.key_path)),
        ("socket-file", str(workdir / "ocserv.sock")),
        ("pid-file", str(pid_path)),
        *DEFAULT_OPTIONS,
    ]
    if kind is ServerKind.OCSERV:
        options += _OCSERV_EXTRA
    config_path.write_text(render_config(options, overrides or {}) + tail)
    log_path = workdir / "server.log"
    argv = pair.exec_argv(pair.server, _server_argv(kind, config_path, pid_path))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=workdir
        )
    server = Server(
        kind=kind,
        pair=pair,
        workdir=workdir,
        config_path=config_path,
        log_path=log_path,
        proc=proc,
        cert=cert,
    )
    try:
        server.wait_ready(ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server
