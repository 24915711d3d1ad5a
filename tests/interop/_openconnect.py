"""Drive the real openconnect client inside the client namespace.

Two ways to use it:

* :meth:`OpenConnectRunner.authenticate` runs ``openconnect --authenticate`` (or ``--cookieonly``)
  to completion and returns its exit status, output and the cookie;
* :meth:`OpenConnectRunner.connect` starts a tunnel in the background. openconnect calls the test
  vpnc-script (``vpnc-script-test`` next to this file), which configures the tun and then dumps its
  environment to a file; :meth:`OpenConnect.wait_env` waits for that file, so "env file present"
  means "tunnel up and configured".

``ip netns exec`` execs the command, so the pid we hold *is* openconnect's and signals go straight
to it: SIGINT/SIGTERM = BYE and exit 0 (logout, the cookie dies), SIGHUP = detach without BYE (the
cookie stays valid), SIGKILL = vanish. Exit status 2 = cookie rejected. Every process is stopped by
:meth:`OpenConnectRunner.close_all` at the end of the test."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ._netns import NetnsPair

__all__ = [
    "SCRIPT",
    "AuthResult",
    "Endpoint",
    "OpenConnect",
    "OpenConnectRunner",
    "StaticEndpoint",
    "parse_env0",
]

SCRIPT = Path(__file__).with_name("vpnc-script-test")
OPENCONNECT = "openconnect"
_COOKIE_RE = re.compile(r"^COOKIE='?([^'\n]*)'?$", re.MULTILINE)


class Endpoint(Protocol):
    """Where to connect: the URL and the ``--servercert`` pin."""

    @property
    def url(self) -> str: ...

    @property
    def pin(self) -> str: ...


@dataclass(frozen=True, slots=True)
class StaticEndpoint:
    url: str
    pin: str


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of an ``--authenticate``/``--cookieonly`` run."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def cookie(self) -> str:
        """The session cookie printed by ``--authenticate`` (``COOKIE=…``) or ``--cookieonly``."""
        match = _COOKIE_RE.search(self.stdout)
        if match:
            return match.group(1)
        return self.stdout.strip().splitlines()[-1] if self.stdout.strip() else ""

    def describe(self) -> str:
        return (
            f"--- {shlex.join(self.argv)} -> exit {self.returncode}\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )


def parse_env0(data: bytes) -> dict[str, str]:
    """Parse ``env -0`` output."""
    env: dict[str, str] = {}
    for item in data.split(b"\0"):
        if b"=" in item:
            key, _, value = item.partition(b"=")
            env[key.decode()] = value.decode(errors="replace")
    return env


class OpenConnect:
    """One background openconnect process."""

    def __init__(
        self, *, argv: list[str], proc: subprocess.Popen[bytes], env_file: Path, log_path: Path
    ) -> None:
        self.argv = argv
        self.proc = proc
        self.env_file = env_file
        self.log_path = log_path
        self.interface = argv[argv.index("--interface") + 1]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self, lines: int = 40) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        tail = "\n".join(self.output().splitlines()[-lines:])
        return f"--- openconnect {self.interface} ({state}): {shlex.join(self.argv)}\n{tail}"

    def wait_env(self, timeout: float = 30) -> dict[str, str]:
        """Wait until the vpnc-script has configured the tun; return its environment."""
        deadline = time.monotonic() + timeout
        while not self.env_file.exists():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"openconnect exited before the tunnel came up\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"tunnel not up after {timeout} s\n{self.describe()}")
            time.sleep(0.05)
        return parse_env0(self.env_file.read_bytes())

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 15) -> int:
        """Wait for exit; return the exit status (negative = killed by a signal)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"openconnect still running after {timeout} s\n{self.describe()}"
            ) from None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15) -> int:
        """Send ``sig`` and wait for the exit status."""
        self.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


class OpenConnectRunner:
    """Start openconnect processes in the client namespace and stop them all at the end."""

    _ids = itertools.count()

    def __init__(self, pair: NetnsPair, workdir: Path) -> None:
        self.pair = pair
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.clients: list[OpenConnect] = []
        self.auth_runs: list[AuthResult] = []

    def _base_argv(self, endpoint: Endpoint) -> list[str]:
        return [OPENCONNECT, "--non-inter", "--servercert", endpoint.pin]

    def authenticate(
        self,
        endpoint: Endpoint,
        *,
        user: str | None,
        stdin: str = "",
        mode: str = "--authenticate",
        extra: Sequence[str] = (),
        timeout: float = 30,
    ) -> AuthResult:
        """Run a login-only openconnect; ``stdin`` holds the password line(s)."""
        argv = [*self._base_argv(endpoint), mode]
        if user is not None:
            argv += ["--user", user]
        argv += ["--passwd-on-stdin", *extra, endpoint.url]
        full = self.pair.exec_argv(self.pair.client, argv)
        try:
            proc = subprocess.run(
                full, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"{shlex.join(argv)} did not finish in {timeout} s: {exc}"
            ) from None
        result = AuthResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
        self.auth_runs.append(result)
        return result

    def connect(
        self,
        endpoint: Endpoint,
        *,
        user: str | None = None,
        password: str | None = None,
        cookie: str | None = None,
        dtls: bool = False,
        routes: Sequence[str] = ("fd77::/64",),
        extra: Sequence[str] = (),
        stdin: str | None = None,
    ) -> OpenConnect:
        """Start a tunnel (log in with user/password, or reuse ``cookie``); do not wait for it."""
        n = next(self._ids)
        ifname = f"oc{n}"
        env_file = self.workdir / f"env-{ifname}-{n}"
        log_path = self.workdir / f"openconnect-{ifname}-{n}.log"
        script = f"bash {shlex.quote(str(SCRIPT))}"
        argv = [*self._base_argv(endpoint), "--script", script, "--interface", ifname]
        argv += ["--timestamp"]
        if not dtls:
            argv.append("--no-dtls")
        if cookie is not None:
            argv += ["--cookie", cookie]
        if user is not None:
            argv += ["--user", user]
        if password is not None:
            argv.append("--passwd-on-stdin")
            stdin = password + "\n" if stdin is None else stdin
        argv += [*extra, endpoint.url]
        env = dict(os.environ, OCG_ENV_FILE=str(env_file), OCG_ROUTES=" ".join(routes))
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                self.pair.exec_argv(self.pair.client, argv),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            if stdin:
                proc.stdin.write(stdin.encode())
            proc.stdin.close()
        client = OpenConnect(argv=argv, proc=proc, env_file=env_file, log_path=log_path)
        self.clients.append(client)
        return client

    def describe(self) -> str:
        parts = [c.describe() for c in self.clients]
        parts += [r.describe() for r in self.auth_runs[-5:]]
        return "\n".join(parts)

    def close_all(self) -> None:
        """Log every still-running client out (SIGINT), then kill stragglers."""
        running = [c for c in self.clients if c.proc.poll() is None]
        for client in running:
            client.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 5
        for client in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                client.proc.wait(max(0.1, deadline - time.monotonic()))
            client.kill()
