"""A real Redis server (Debian's ``redis-server``) for the cluster tests, started by the test.

Theory of operation: the test starts its own ``redis-server`` in the foreground, inside a network
namespace it created (or in the test's own namespace when ``ns`` is ``None``), bound to one
address and port, with no persistence at all (``save ""``, ``appendonly no``) and its working
directory in the test's temporary directory. The password (``requirepass``) is written into a
configuration file readable by root only, never onto a command line. With ``tls`` (a certificate
and its key) it serves TLS only (``tls-port``, no plain port), and :meth:`RedisServer.url` is a
``rediss://`` URL that names the certificate as the CA to trust (``ssl_ca_certs``).
:meth:`RedisServer.stop` ends it (SIGTERM; its data is gone, as after a crash of a Redis without
persistence) and :meth:`RedisServer.start` starts a fresh one on the same address and port, so a
test can take the store away for a while and give it back empty. :meth:`RedisServer.command`
speaks RESP over a socket in the same namespace, for a test that wants to look at the keys.

The Debian package's own service is never used (and is not started by the package install in the
test environment: ``policy-rc.d``); the test instances run on their own port, so a system Redis on
6379 does not disturb them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
from pathlib import Path

from ._netns import netns_socket

__all__ = ["REDIS_PORT", "RedisError", "RedisServer", "redis_missing"]

REDIS_PORT = 6390
REDIS_SERVER = "redis-server"


def redis_missing() -> bool:
    """Whether ``redis-server`` is not installed (Debian package ``redis-server``)."""
    return shutil.which(REDIS_SERVER) is None


class RedisError(RuntimeError):
    """Redis answered a command with an error reply (``-ERR …``)."""


class RedisServer:
    """One ``redis-server`` process (restartable on the same address and port)."""

    def __init__(
        self,
        workdir: Path,
        *,
        host: str,
        port: int = REDIS_PORT,
        ns: str | None = None,
        password: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port
        self.ns = ns
        self.password = password
        self.tls = tls
        """(certificate, key) PEM files: TLS only, the certificate being its own CA."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "redis.log"
        self.config_path = workdir / "redis.conf"
        self.starts = 0

    def url(self, db: int = 0) -> str:
        """``redis://[:PASSWORD@]HOST:PORT/DB`` (the gateway's ``session-store``), or
        ``rediss://…?ssl_ca_certs=CERT`` with TLS."""
        auth = f":{urllib.parse.quote(self.password, safe='')}@" if self.password else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.tls is None:
            return f"redis://{auth}{host}:{self.port}/{db}"
        query = urllib.parse.urlencode({"ssl_ca_certs": str(self.tls[0])}, safe="/")
        return f"rediss://{auth}{host}:{self.port}/{db}?{query}"

    def _write_config(self) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            f"bind {self.host}",
            f"port {0 if self.tls else self.port}",
            'save ""',
            "appendonly no",
            f"dir {data}",
            "daemonize no",
            'logfile ""',  # stdout, which goes to redis.log
            "databases 16",
            "protected-mode no" if not self.password else "protected-mode yes",
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        if self.tls is not None:
            cert, key = self.tls
            lines += [
                f"tls-port {self.port}",
                f"tls-cert-file {cert}",
                f"tls-key-file {key}",
                f"tls-ca-cert-file {cert}",
                "tls-auth-clients no",
            ]
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def start(self, timeout: float = 15) -> None:
        """Start ``redis-server`` and wait until it answers PING (with AUTH if a password)."""
        if self.running:
            raise AssertionError("redis-server is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        argv = [REDIS_SERVER, str(self.config_path)]
        if self.ns is not None:
            argv = ["ip", "netns", "exec", self.ns, *argv]
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited at start\n{self.describe()}")
            with contextlib.suppress(OSError, RedisError):
                if self.command("PING", timeout=1) == "PONG":
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"redis-server does not answer\n{self.describe()}")
            time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """End the server (SIGTERM, then SIGKILL); with no persistence its data is gone."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def describe(self) -> str:
        """A diagnostic block for assertion messages (the log tail; never the password)."""
        state = "not started"
        if self.proc is not None:
            state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        try:
            log = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            log = ""
        tail = "\n".join(log.splitlines()[-30:])
        return f"--- redis-server {self.host}:{self.port} ({state}) ---\n{tail}"

    def _socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        if self.ns is None:
            return socket.socket(family, socket.SOCK_STREAM)
        return netns_socket(self.ns, family)

    def command(self, *args: str, timeout: float = 5) -> object:
        """Run one command (after AUTH when there is a password) on a new connection.

        :returns: the decoded reply: ``str`` (simple or bulk string), ``int``, ``None`` or a list.
        :raises RedisError: on an error reply; ``OSError`` if the server cannot be reached.
        """
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(self._socket())
            sock.settimeout(timeout)
            sock.connect((self.host, self.port))
            if self.tls is not None:
                context = ssl.create_default_context(cafile=str(self.tls[0]))
                sock = stack.enter_context(context.wrap_socket(sock, server_hostname=self.host))
            reader = _Reader(sock)
            if self.password:
                sock.sendall(_encode(("AUTH", self.password)))
                reader.reply()
            sock.sendall(_encode(args))
            return reader.reply()

    def keys(self, pattern: str) -> list[str]:
        """``SCAN`` every key matching ``pattern`` (``KEYS`` without blocking the server)."""
        cursor = "0"
        found: list[str] = []
        while True:
            reply = self.command("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
            assert isinstance(reply, list), reply
            assert len(reply) == 2, reply
            cursor = str(reply[0])
            found += [str(k) for k in reply[1]]
            if cursor == "0":
                return sorted(set(found))


def _encode(args: tuple[str, ...]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(out)


class _Reader:
    """A minimal RESP2 reply reader (simple strings, errors, integers, bulk strings, arrays)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("redis closed the connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buffer) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("redis closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n + 2 :]
        return data

    def reply(self) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:].decode(errors="replace")
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exact(size).decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.reply() for _ in range(count)]
        raise OSError(f"not a RESP reply: {line[:60]!r}")
