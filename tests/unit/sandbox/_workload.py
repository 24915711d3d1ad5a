"""A representative day of a confined ocgate process, to run under a seccomp filter.

Every step is something a worker, sec-mod or the NVM collector does: an asyncio loop with TCP,
UDP and Unix sockets, file descriptor passing, threads (``asyncio.to_thread``, the default
executor, a ``ThreadPoolExecutor``), sqlite3 in WAL and rollback-journal mode, a TLS handshake
with pyOpenSSL, msgspec, randomness, clocks, timers, signals to itself. Any system call missing
from the allow-list makes one of these raise ``PermissionError``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.thread
import contextlib
import ctypes
import datetime
import encodings.idna
import errno
import fcntl
import hashlib
import os
import select
import signal
import socket
import sqlite3
import termios
import threading
import time
from pathlib import Path

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

__all__ = ["TlsIdentity", "make_tls_identity", "run_workload"]

TlsIdentity = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]

# Modules the standard library imports on first use. After the drop to run-as-user the interpreter
# may not be readable any more (here it lives under /root), so they are imported up front, as a
# real role must do with whatever it imports lazily.
_PRELOADED = (concurrent.futures.thread, encodings.idna)


def make_tls_identity() -> TlsIdentity:
    """A throwaway self-signed P-256 certificate for ``vpn.example.test``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vpn.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("vpn.example.test")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def run_workload(workdir: Path, identity: TlsIdentity) -> None:
    """Run every step; raise on the first failure."""
    assert len(os.urandom(32)) == 32
    assert hashlib.sha256(b"ocgate").hexdigest()
    time.sleep(0.001)
    assert time.monotonic() > 0
    assert time.time() > 1_700_000_000
    _sqlite(workdir / "wal.db", "WAL")
    _sqlite(workdir / "journal.db", "DELETE")
    _fd_passing()
    _pipes_events_and_polls()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        assert sorted(pool.map(lambda n: n * n, range(8))) == [n * n for n in range(8)]
    _tls_over_memory_bios(identity)
    asyncio.run(_async_part(workdir, identity))
    encoded = msgspec.msgpack.encode({"user": "alice", "bytes": 1234})
    assert msgspec.msgpack.decode(encoded) == {"user": "alice", "bytes": 1234}
    assert msgspec.json.decode(msgspec.json.encode([1, "two"])) == [1, "two"]


def _sqlite(path: Path, journal_mode: str) -> None:
    db = sqlite3.connect(path)
    assert db.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0].upper() == journal_mode
    db.execute("CREATE TABLE flows (id INTEGER PRIMARY KEY, user TEXT, bytes INTEGER)")
    with db:
        db.executemany("INSERT INTO flows (user, bytes) VALUES (?, ?)", [("alice", 10)] * 100)
    with db:
        db.execute("UPDATE flows SET bytes = bytes + 1")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)" if journal_mode == "WAL" else "VACUUM")
    assert db.execute("SELECT count(*), sum(bytes) FROM flows").fetchone() == (100, 1100)
    db.close()
    assert not Path(f"{path}-wal").exists()
    assert not Path(f"{path}-journal").exists()


def _fd_passing() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_end, write_end = os.pipe()
    with left, right:
        socket.send_fds(left, [b"tun"], [write_end])
        message, fds, _, _ = socket.recv_fds(right, 16, 1)
        assert message == b"tun"
        assert len(fds) == 1
        os.write(fds[0], b"via SCM_RIGHTS")
        assert os.read(read_end, 64) == b"via SCM_RIGHTS"
        left.send(b"12345")
        # FIONREAD and TCGETS are ioctls too: allowed (TCGETS answers ENOTTY, not EPERM).
        count = fcntl.ioctl(right.fileno(), termios.FIONREAD, b"\0\0\0\0")
        assert int.from_bytes(count, "little") == 5
        with pytest.raises(OSError, match=os.strerror(errno.ENOTTY)) as info:
            fcntl.ioctl(right.fileno(), termios.TCGETS, bytes(64))
        assert info.value.errno == errno.ENOTTY
    for fd in (read_end, write_end, fds[0]):
        os.close(fd)


def _pipes_events_and_polls() -> None:
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    event = os.eventfd(0)
    libc = ctypes.CDLL(None, use_errno=True)
    timer = libc.timerfd_create(time.CLOCK_MONOTONIC, os.O_CLOEXEC)
    assert timer >= 0, os.strerror(ctypes.get_errno())
    spec = (ctypes.c_long * 4)(0, 0, 0, 1_000_000)  # it_interval 0, it_value 1 ms
    assert libc.timerfd_settime(timer, 0, spec, None) == 0
    os.write(write_end, b"x")
    os.eventfd_write(event, 3)
    epoll = select.epoll()
    for fd in (read_end, event, timer):
        epoll.register(fd, select.EPOLLIN)
    ready: set[int] = set()
    deadline = time.monotonic() + 5
    while len(ready) < 3 and time.monotonic() < deadline:
        ready.update(fd for fd, _ in epoll.poll(1))
    assert ready == {read_end, event, timer}
    assert select.select([read_end], [], [], 0)[0] == [read_end]
    poller = select.poll()
    poller.register(event, select.POLLIN)
    assert poller.poll(0)
    assert os.eventfd_read(event) == 3
    duplicate = os.dup(read_end)
    os.dup2(duplicate, read_end)
    for fd in (duplicate, read_end, write_end, event, timer):
        os.close(fd)
    epoll.close()


def _tls_contexts(identity: TlsIdentity) -> tuple[SSL.Context, SSL.Context]:
    cert, key = identity
    server = SSL.Context(SSL.TLS_METHOD)
    server.use_certificate(cert)
    server.use_privatekey(key)
    client = SSL.Context(SSL.TLS_METHOD)
    store = client.get_cert_store()
    assert store is not None
    store.add_cert(crypto.X509.from_cryptography(cert))
    client.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errnum, depth, ok: bool(ok))
    return server, client


def _tls_over_memory_bios(identity: TlsIdentity) -> None:
    server_ctx, client_ctx = _tls_contexts(identity)
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    client = SSL.Connection(client_ctx, None)
    client.set_tlsext_host_name(b"vpn.example.test")
    client.set_connect_state()
    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(SSL.WantReadError):
                side.do_handshake()
        _shuttle(client, server)
        _shuttle(server, client)
    client.sendall(b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n\r\n")
    _shuttle(client, server)
    assert server.recv(1024).startswith(b"CONNECT")
    assert client.get_peer_certificate() is not None


def _shuttle(source: SSL.Connection, sink: SSL.Connection) -> None:
    try:
        data = source.bio_read(65536)
    except SSL.WantReadError:
        return
    sink.bio_write(data)


async def _async_part(workdir: Path, identity: TlsIdentity) -> None:
    loop = asyncio.get_running_loop()
    got_signal = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, got_signal.set)
    os.kill(os.getpid(), signal.SIGUSR1)
    await asyncio.wait_for(got_signal.wait(), 5)
    loop.remove_signal_handler(signal.SIGUSR1)
    threading.current_thread()
    assert await asyncio.to_thread(sum, range(10)) == 45
    assert await loop.run_in_executor(None, pow, 2, 10) == 1024
    await _echo_over_socketpair()
    await _tcp_with_tls(identity)
    await _unix_stream(workdir / "ctl.sock")
    await _udp_echo()
    infos = await loop.getaddrinfo("127.0.0.1", 443, type=socket.SOCK_STREAM)
    assert infos[0][4][0] == "127.0.0.1"


async def _echo_over_socketpair() -> None:
    left, right = socket.socketpair()
    server_reader, server_writer = await asyncio.open_connection(sock=left)
    client_reader, client_writer = await asyncio.open_connection(sock=right)
    client_writer.write(b"ping\n")
    line = await server_reader.readline()
    server_writer.write(line.upper())
    assert await client_reader.readline() == b"PING\n"
    for writer in (client_writer, server_writer):
        writer.close()
        await writer.wait_closed()


async def _tcp_with_tls(identity: TlsIdentity) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello")
    assert await reader.read(100) == b"hello"
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    # The TLS handshake again, in a thread of the default executor.
    await asyncio.to_thread(_tls_over_memory_bios, identity)


async def _unix_stream(path: Path) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok " + await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(answer, path=str(path))
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b"show users\n")
    assert await reader.read(100) == b"ok show users\n"
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    await asyncio.to_thread(path.unlink)


async def _udp_echo() -> None:
    loop = asyncio.get_running_loop()
    received: asyncio.Future[bytes] = loop.create_future()

    class Echo(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not received.done():
                received.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    address = transport.get_extra_info("sockname")
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(b"ipfix", address)
    assert await asyncio.wait_for(received, 5) == b"ipfix"
    sender.close()
    transport.close()
