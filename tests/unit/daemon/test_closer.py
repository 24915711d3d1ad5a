"""close_later: descriptors closed off the event loop, by C threads or the Python fallback."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable

import pytest

from ocgate.daemon import _closer

IMPLS: dict[str, Callable[[int], None]] = {"python": _closer._py_close_later}
if _closer.close_later is not _closer._py_close_later:
    IMPLS["c"] = _closer.close_later


def _wait_for_eof(fd: int, timeout: float = 5.0) -> bool:
    """The read end of a pipe sees EOF once its write end is closed everywhere."""
    os.set_blocking(fd, False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.read(fd, 1) == b"":
                return True
        except BlockingIOError:
            time.sleep(0.005)
    return False


@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_every_descriptor_is_closed_soon(impl: str) -> None:
    pipes = [os.pipe() for _ in range(50)]
    for _read, write in pipes:
        IMPLS[impl](write)
    try:
        assert all(_wait_for_eof(read) for read, _write in pipes)
    finally:
        for read, _write in pipes:
            os.close(read)


def _stuck_sender(listener: socket.socket) -> tuple[int, socket.socket]:
    """A TCP socket (as a bare descriptor) whose close blocks, and the peer that holds it up.

    The peer reads nothing, so the sender's queued data is never all acknowledged, and with
    ``SO_LINGER`` its ``close`` waits (FIN_WAIT1) until the linger time runs out or the peer
    resets the connection by closing with that data unread — as a TUN device's close waits on
    the kernel's grace periods.
    """
    sender = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    sender.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            sender.send(bytes(65536))
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 60))
    return sender.detach(), peer


@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_closes_that_wait_do_not_hold_up_the_others(impl: str) -> None:
    """Eight closes stuck for a minute do not delay fifty others (four threads once did)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck = [_stuck_sender(listener) for _ in range(8)]
        pipes = [os.pipe() for _ in range(50)]
        try:
            for fd, _peer in stuck:
                IMPLS[impl](fd)
            for _read, write in pipes:
                IMPLS[impl](write)
            assert all(_wait_for_eof(read) for read, _write in pipes)
        finally:
            for read, _write in pipes:
                os.close(read)
            for _fd, peer in stuck:
                peer.close()  # Unread data: a reset, which ends the stuck closes.


@pytest.mark.skipif("c" not in IMPLS, reason="ocgate._fastpath is not built")
def test_the_compiled_closer_refuses_what_is_not_a_descriptor() -> None:
    with pytest.raises(ValueError, match="descriptor"):
        IMPLS["c"](-1)
    with pytest.raises(TypeError):
        IMPLS["c"]("3")  # type: ignore[arg-type]
