"""Batches of packets through descriptors (ocgate.tun._batch), in Python and in C.

Datagram socket pairs stand in for a TUN device and for a connected UDP socket: both carry one
packet per system call. The C functions take the socket path (recvmmsg/sendmmsg) on a socket and
the read/write path on anything else (a pipe, /dev/null), and must behave like the Python ones.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterator, Sequence

import pytest

from ocgate.tun import _batch

try:
    from ocgate import _fastpath  # type: ignore[attr-defined]
except ImportError:
    _fastpath = None

ReadMany = Callable[[int, int], list[bytes]]
WriteMany = Callable[[int, Sequence[bytes]], int]
IMPLS = [
    pytest.param((_batch._py_read_many, _batch._py_write_many), id="python"),
    pytest.param(
        (getattr(_fastpath, "read_many", None), getattr(_fastpath, "write_many", None)),
        id="c",
        marks=pytest.mark.skipif(_fastpath is None, reason="ocgate._fastpath is not built"),
    ),
]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("impl", IMPLS)
def test_read_many_takes_what_is_queued_up_to_the_limit(
    impl: tuple[ReadMany, WriteMany], pair: tuple[socket.socket, socket.socket]
) -> None:
    read_many, _ = impl
    a, b = pair
    assert read_many(b.fileno(), 64) == []
    packets = [bytes([i]) * i for i in range(1, 100)] + [b"", bytes(9000)]
    for packet in packets:
        a.send(packet)
    assert read_many(b.fileno(), 70) == packets[:70]
    assert read_many(b.fileno(), 70) == packets[70:]
    assert read_many(b.fileno(), 70) == []


@pytest.mark.parametrize("impl", IMPLS)
def test_write_many_sends_each_packet(
    impl: tuple[ReadMany, WriteMany], pair: tuple[socket.socket, socket.socket]
) -> None:
    _, write_many = impl
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    packets = [bytes([i]) * (i * 10) for i in range(150)]
    assert write_many(a.fileno(), packets) == len(packets)
    assert [b.recv(65536) for _ in packets] == packets
    assert write_many(a.fileno(), []) == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_write_many_drops_what_a_full_queue_refuses(
    impl: tuple[ReadMany, WriteMany], pair: tuple[socket.socket, socket.socket]
) -> None:
    _, write_many = impl
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sent = write_many(a.fileno(), [bytes(1000)] * 2000)
    assert 0 < sent < 2000
    received = 0
    while True:
        try:
            b.recv(65536)
        except BlockingIOError:
            break
        received += 1
    assert received == sent


@pytest.mark.parametrize("impl", IMPLS)
def test_icmp_errors_of_a_connected_udp_socket_drop_one_packet(
    impl: tuple[ReadMany, WriteMany],
) -> None:
    read_many, write_many = impl
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # Nobody listens there once the probe is closed.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", closed_port))
        write_many(sock.fileno(), [b"x"])  # Answered by ICMP port unreachable...
        # ...which the next call meets: reading raises it...
        with pytest.raises(ConnectionRefusedError):
            _read_until_error(read_many, sock.fileno())
        # ...and writing drops the packet that meets it (the first or, with sendmmsg, maybe
        # none), and never raises.
        for _ in range(3):
            assert write_many(sock.fileno(), [b"a", b"b"]) in (1, 2)


def _read_until_error(read_many: ReadMany, fd: int) -> None:
    for _ in range(100):
        read_many(fd, 8)
        os.sched_yield()


@pytest.mark.parametrize("impl", IMPLS)
def test_descriptors_that_are_not_sockets(impl: tuple[ReadMany, WriteMany]) -> None:
    read_many, write_many = impl
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        assert write_many(null, [b"a", b"bc", bytes(3000)]) == 3
    finally:
        os.close(null)
    r, w = os.pipe2(os.O_NONBLOCK)
    try:
        assert read_many(r, 8) == []
        os.write(w, b"one packet")
        assert read_many(r, 8) == [b"one packet"]
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_closed_descriptor_raises(impl: tuple[ReadMany, WriteMany]) -> None:
    read_many, write_many = impl
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError, match="Bad file descriptor") as info:
        read_many(r, 4)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError, match="Bad file descriptor") as info:
        write_many(w, [b"x"])
    assert info.value.errno == errno.EBADF


def test_the_module_uses_the_compiled_functions_when_built() -> None:
    if _fastpath is None or os.environ.get("OCGATE_FASTPATH", "").lower() == "python":
        assert _batch.read_many is _batch._py_read_many
        assert _batch.write_many is _batch._py_write_many
    else:
        assert _batch.read_many is _fastpath.read_many
        assert _batch.write_many is _fastpath.write_many
