"""Two network namespaces joined by a veth pair, and ways to run things inside them.

Theory of operation: the end-to-end tests never touch the host's interfaces, routes or DNS.
Everything happens in two namespaces created here (names carry the pid, so parallel runs do not
collide):

    server ns  veth-s 198.18.0.1/30  <---- veth pair ---->  veth-c 198.18.0.2/30  client ns

The veth pair is created *inside* the server namespace with its peer moved straight into the client
namespace, so no interface ever appears in the host namespace. Each namespace gets its own
``/etc/netns/NAME/resolv.conf`` (``ip netns exec`` bind-mounts it over ``/etc/resolv.conf``), which
is removed again on teardown. Teardown kills the processes still running in the namespaces (they can
only be ours) and deletes the namespaces, whatever happened before.

Python sockets are opened inside a namespace with :func:`netns_socket`: a short-lived thread joins
the namespace with ``setns(2)`` and creates the socket there; a socket stays in the namespace it was
created in, so the caller can use it from any thread."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLIENT_ADDR",
    "SERVER_ADDR",
    "NetnsPair",
    "SideNetns",
    "enter_netns",
    "netns_socket",
    "run",
    "tcp_port_open",
]

SERVER_ADDR = "198.18.0.1"
CLIENT_ADDR = "198.18.0.2"
_PREFIX_LEN = 30
_NETNS_RUN_DIR = Path("/run/netns")
_NETNS_ETC_DIR = Path("/etc/netns")
_CLONE_NEWNET = 0x40000000


def run(
    argv: Sequence[str],
    *,
    timeout: float = 30,
    check: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a timeout, capturing its output; raise with the output when it fails."""
    proc = subprocess.run(
        list(argv),
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


_libc = ctypes.CDLL(None, use_errno=True)
_joined = threading.local()  # .name: the namespace this thread joined with enter_netns().


def _setns(name: str) -> None:
    libc = _libc
    fd = os.open(_NETNS_RUN_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def enter_netns(name: str) -> None:
    """Move the calling thread (only it: setns(2) is per thread) into network namespace ``name``.

    For a load generator's own threads: their sockets are then made without a helper thread each.
    """
    _setns(name)
    _joined.name = name


def netns_socket(
    name: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """Create a socket that lives in network namespace ``name``."""
    if getattr(_joined, "name", None) == name:
        return socket.socket(family, kind)
    result: list[socket.socket | BaseException] = []

    def worker() -> None:
        try:
            _setns(name)
            result.append(socket.socket(family, kind))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=worker, name=f"setns-{name}")
    thread.start()
    thread.join(10)
    if not result:
        raise RuntimeError(f"could not create a socket in netns {name}")
    item = result[0]
    if isinstance(item, BaseException):
        raise item
    return item


def tcp_port_open(ns: str, host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection from namespace ``ns`` to ``host:port`` succeeds."""
    sock = netns_socket(ns)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except OSError:
        return False
    finally:
        sock.close()
    return True


@dataclass(frozen=True, slots=True)
class NetnsPair:
    """The two namespaces of one test session."""

    server: str
    client: str
    server_addr: str = SERVER_ADDR
    client_addr: str = CLIENT_ADDR

    @classmethod
    def create(cls, tag: str | None = None) -> NetnsPair:
        """Create both namespaces, the veth pair and the per-namespace ``resolv.conf``."""
        tag = tag or str(os.getpid())
        pair = cls(server=f"ocgs{tag}", client=f"ocgc{tag}")
        pair.destroy()  # A namespace of this name can only be a leftover of a crashed test run.
        try:
            pair._setup()
        except BaseException:
            pair.destroy()
            raise
        return pair

    def _setup(self) -> None:
        for ns in (self.server, self.client):
            run(["ip", "netns", "add", ns])
            etc = _NETNS_ETC_DIR / ns
            etc.mkdir(parents=True, exist_ok=True)
            # A resolver nobody answers on: nothing in the namespaces may need the host's DNS.
            (etc / "resolv.conf").write_text(
                "# ocgate interop test namespace\nnameserver 127.0.0.1\n"
            )
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(
            [
                *("ip", "-n", self.server, "link", "add", "veth-s", "type", "veth"),
                *("peer", "name", "veth-c", "netns", self.client),
            ]
        )
        for ns, dev, addr in (
            (self.server, "veth-s", self.server_addr),
            (self.client, "veth-c", self.client_addr),
        ):
            run(["ip", "-n", ns, "addr", "add", f"{addr}/{_PREFIX_LEN}", "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        deadline = time.monotonic() + 10
        while not self._veth_reachable():
            if time.monotonic() > deadline:
                raise RuntimeError("veth pair did not come up")
            time.sleep(0.1)

    def _veth_reachable(self) -> bool:
        proc = run(
            ["ip", "netns", "exec", self.client, "ping", "-c1", "-W1", "-n", self.server_addr],
            check=False,
        )
        return proc.returncode == 0

    def exec_argv(self, ns: str, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns, *argv]

    def run_in(
        self, ns: str, argv: Sequence[str], *, timeout: float = 30, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside namespace ``ns`` (see :func:`run`)."""
        return run(self.exec_argv(ns, argv), timeout=timeout, check=check)

    def links(self, ns: str) -> list[str]:
        """Interface names in namespace ``ns``."""
        out = run(["ip", "-n", ns, "-o", "link", "show"]).stdout
        names = []
        for line in out.splitlines():
            parts = line.split(":", 2)
            if len(parts) >= 2:
                names.append(parts[1].strip().split("@", 1)[0])
        return names

    def pids(self, ns: str) -> list[int]:
        """Processes whose network namespace is ``ns``."""
        if not (_NETNS_RUN_DIR / ns).exists():
            return []
        out = run(["ip", "netns", "pids", ns], check=False).stdout
        return [int(tok) for tok in out.split() if tok.isdigit()]

    def kill_in(self, ns: str, grace: float = 3.0) -> None:
        """Kill what still runs inside namespace ``ns`` (only our own processes can be there)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids(ns)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.pids(ns):
                time.sleep(0.05)

    def kill_all(self) -> None:
        """Kill what still runs inside either namespace."""
        self.kill_in(self.client)
        self.kill_in(self.server)

    def destroy(self) -> None:
        """Remove everything :meth:`create` made; safe to call on a half-built pair."""
        with contextlib.suppress(Exception):
            self.kill_all()
        for ns in (self.server, self.client):
            if (_NETNS_RUN_DIR / ns).exists():
                run(["ip", "netns", "del", ns], check=False)
            shutil.rmtree(_NETNS_ETC_DIR / ns, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class SideNetns:
    """A third namespace, joined to the pair's server namespace by a veth pair of its own.

        server ns  veth-x 198.18.1.1/30  <---->  veth-y 198.18.1.2/30  side ns

    For a second, independent client (an attacker beside the honest client, say). Leaves the
    host untouched like the pair does; :meth:`destroy` removes everything.
    """

    pair: NetnsPair
    name: str
    server_addr: str = "198.18.1.1"
    addr: str = "198.18.1.2"

    @classmethod
    def create(cls, pair: NetnsPair, tag: str = "x") -> SideNetns:
        side = cls(pair=pair, name=f"ocgx{tag}{os.getpid()}")
        side.destroy()
        try:
            run(["ip", "netns", "add", side.name])
            etc = _NETNS_ETC_DIR / side.name
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(
                "# ocgate interop test namespace\nnameserver 127.0.0.1\n"
            )
            run(["ip", "-n", side.name, "link", "set", "lo", "up"])
            run(["ip", "-n", pair.server, "link", "add", "veth-x", "type", "veth",
                 "peer", "name", "veth-y", "netns", side.name])  # fmt: skip
            for ns, dev, addr in ((pair.server, "veth-x", side.server_addr),
                                  (side.name, "veth-y", side.addr)):  # fmt: skip
                run(["ip", "-n", ns, "addr", "add", f"{addr}/{_PREFIX_LEN}", "dev", dev])
                run(["ip", "-n", ns, "link", "set", dev, "up"])
            deadline = time.monotonic() + 10
            while run(["ip", "netns", "exec", side.name, "ping", "-c1", "-W1", "-n",
                       side.server_addr], check=False).returncode != 0:  # fmt: skip
                if time.monotonic() > deadline:
                    raise RuntimeError("side veth pair did not come up")
                time.sleep(0.1)
        except BaseException:
            side.destroy()
            raise
        return side

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.pair.kill_in(self.name)
        if (_NETNS_RUN_DIR / self.name).exists():
            run(["ip", "netns", "del", self.name], check=False)
        shutil.rmtree(_NETNS_ETC_DIR / self.name, ignore_errors=True)
        run(["ip", "-n", self.pair.server, "link", "del", "veth-x"], check=False)
