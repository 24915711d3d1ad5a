"""One end of a typed message channel between two ocgate processes.

Theory of operation
-------------------
* The transport is a ``SOCK_SEQPACKET`` Unix socket pair made by the supervisor before it starts a
  child: each ``sendmsg`` is one message (no framing to get wrong), file descriptors travel as
  ``SCM_RIGHTS`` ancillary data, and the kernel reports the peer's death as end of file.
* A message is one msgspec Struct encoded as MessagePack. The receiving end decodes with a
  :class:`msgspec.msgpack.Decoder` typed to the union of the messages it accepts, so a message from
  a less privileged process is validated (types, sizes, tags) before any code looks at it. A message
  that does not decode is counted and dropped; the channel stays up.
* Requests carry ``rid`` > 0; the answer to a request is any :class:`Reply` with the same ``rid``.
  Notifications have ``rid`` 0 and get no answer. :meth:`Channel.call` waits for the reply;
  :meth:`Channel.send` does not. The reply to a call whose caller stopped waiting (timed out,
  cancelled) is let go quietly, its descriptors closed: the last ``_ABANDONED_MAX`` such requests
  are remembered for that. Any other reply that answers nothing is counted and logged as a
  dropped message.
* Writes never block the event loop: a full socket buffer queues the message and an asyncio writer
  callback drains the queue in order.
"""

from __future__ import annotations

import array
import asyncio  # noqa: TID251 - this is an I/O adapter.
import collections
import contextlib
import itertools
import logging
import os
import socket  # noqa: TID251 - this is an I/O adapter.
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from ocgate.ipc._messages import Failed, Message, Reply

__all__ = ["MAX_FDS", "MAX_MESSAGE", "Channel", "ChannelClosed", "RemoteFailure", "socket_pair"]

log = logging.getLogger("ocgate.ipc")

MAX_MESSAGE = 4 << 20
"""Largest message either end sends or accepts (a snapshot of thousands of tunnels fits)."""
MAX_FDS = 200
"""Most descriptors one message carries: a worker's ``Configure`` holds the certificate, key and CA
of the default host and of each vhost (at most ``config.MAX_VHOSTS``, 64: 195 files); Linux caps
one message at 253 (``SCM_MAX_FD``)."""
_BUFFER = 8 << 20
_ABANDONED_MAX = 1024

Outgoing = Message | tuple[Message, list[int]] | None
"""What a handler returns: a reply, a reply with descriptors (sent, then closed), or nothing."""
Handler = Callable[[Any, list[int]], Awaitable[Outgoing]]


class ChannelClosed(ConnectionError):
    """The other process is gone (or the channel was closed here)."""


class RemoteFailure(Exception):
    """The other end answered a request with :class:`Failed`."""


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """A ``SOCK_SEQPACKET`` pair with buffers large enough for :data:`MAX_MESSAGE`.

    Made by the privileged supervisor, which may force buffer sizes past ``wmem_max``.
    """
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in (a, b):
        for force, plain in ((33, socket.SO_SNDBUF), (32, socket.SO_RCVBUF)):  # *BUFFORCE
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, _BUFFER)
            except OSError:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, plain, _BUFFER)
    return a, b


class Channel:
    """A typed, bidirectional message channel over one end of :func:`socket_pair`.

    :param sock: this end.
    :param accepts: the union of message types this end accepts (replies included).
    :param handler: called with each request or notification and the descriptors that came with
        it; what it returns is sent back as the reply (requests only). Descriptors it does not keep
        it must close.
    :param on_closed: called once when the peer goes away.
    :param name: for logs.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        accepts: Any,
        handler: Handler,
        on_closed: Callable[[], None] = lambda: None,
        name: str = "peer",
    ) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._decoder = msgspec.msgpack.Decoder(accepts)
        self._encoder = msgspec.msgpack.Encoder()
        self._handler = handler
        self._on_closed = on_closed
        self.name = name
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[Any, list[int]]]] = {}
        self._abandoned: collections.OrderedDict[int, None] = collections.OrderedDict()
        """Requests whose caller stopped waiting, oldest first: their replies are expected."""
        self._queue: collections.deque[tuple[bytes, Sequence[int]]] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writing = False
        self.closed = False
        self.dropped = 0
        self._loop.add_reader(sock.fileno(), self._on_readable)

    def __repr__(self) -> str:
        return f"Channel({self.name!r}, closed={self.closed})"

    # Sending --------------------------------------------------------------------------------------

    def send(self, message: Message, fds: Sequence[int] = ()) -> None:
        """Queue ``message`` (and duplicates of ``fds``, which stay the caller's to close)."""
        if self.closed:
            raise ChannelClosed(f"channel to {self.name} is closed")
        data = self._encoder.encode(message)
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"message of {len(data)} bytes exceeds the channel's limit")
        self._queue.append((data, tuple(os.dup(fd) for fd in fds)))
        if not self._writing:
            self._flush()

    async def call(
        self,
        message: Message,
        fds: Sequence[int] = (),
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - a deadline per request is this API's point.
    ) -> Any:
        """Send a request and return its reply (its descriptors are closed: see :meth:`call_fds`).

        :raises RemoteFailure: the other end answered :class:`Failed`.
        :raises ChannelClosed: the other end went away.
        :raises TimeoutError: no answer within ``timeout`` seconds.
        """
        reply, got = await self.call_fds(message, fds, timeout=timeout)
        for fd in got:
            os.close(fd)
        return reply

    async def call_fds(
        self,
        message: Message,
        fds: Sequence[int] = (),
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - a deadline per request is this API's point.
    ) -> tuple[Any, list[int]]:
        """Like :meth:`call`, returning the reply's descriptors too (the caller owns them)."""
        rid = next(self._ids)
        message.rid = rid
        future: asyncio.Future[tuple[Any, list[int]]] = self._loop.create_future()
        self._pending[rid] = future
        try:
            self.send(message, fds)
            async with asyncio.timeout(timeout):
                reply, got = await future
        except (asyncio.CancelledError, TimeoutError):
            self._abandoned[rid] = None
            if len(self._abandoned) > _ABANDONED_MAX:
                self._abandoned.popitem(last=False)
            raise
        finally:
            self._pending.pop(rid, None)
        if isinstance(reply, Failed):
            for fd in got:
                os.close(fd)
            raise RemoteFailure(reply.message)
        return reply, got

    def _flush(self) -> None:
        while self._queue:
            data, fds = self._queue[0]
            ancillary = []
            if fds:
                ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            try:
                self._sock.sendmsg([data], ancillary)
            except BlockingIOError:
                if not self._writing:
                    self._loop.add_writer(self._sock.fileno(), self._flush)
                    self._writing = True
                return
            except OSError:
                self._peer_gone()
                return
            self._queue.popleft()
            for fd in fds:
                os.close(fd)
        if self._writing:
            self._loop.remove_writer(self._sock.fileno())
            self._writing = False

    # Receiving ------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        for _ in range(64):
            try:
                data, ancdata, flags, _addr = self._sock.recvmsg(
                    MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * 4)
                )
            except BlockingIOError:
                return
            except OSError:
                self._peer_gone()
                return
            fds = _take_fds(ancdata)
            if not data:
                for fd in fds:
                    os.close(fd)
                self._peer_gone()
                return
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                self._drop(fds, "truncated message")
                continue
            try:
                message = self._decoder.decode(data)
            except msgspec.DecodeError as exc:
                self._drop(fds, str(exc))
                continue
            self._deliver(message, fds)

    def _drop(self, fds: list[int], why: str) -> None:
        self.dropped += 1
        for fd in fds:
            os.close(fd)
        log.warning("event=ipc-message-dropped peer=%s reason=%r", self.name, why[:200])

    def _deliver(self, message: Any, fds: list[int]) -> None:
        if isinstance(message, Reply):
            future = self._pending.get(message.rid)
            if future is None or future.done():
                if message.rid in self._abandoned:  # Its caller stopped waiting.
                    del self._abandoned[message.rid]
                    for fd in fds:
                        os.close(fd)
                    log.debug("event=ipc-late-reply peer=%s rid=%d", self.name, message.rid)
                else:
                    self._drop(fds, "reply to no request")
                return
            future.set_result((message, fds))
            return
        task = self._loop.create_task(self._serve(message, fds))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, message: Any, fds: list[int]) -> None:
        out_fds: list[int] = []
        reply: Message | None
        try:
            outgoing = await self._handler(message, fds)
            if isinstance(outgoing, tuple):
                reply, out_fds = outgoing
            else:
                reply = outgoing
        except Exception as exc:  # A handler bug must not take the channel down.
            log.exception("event=ipc-handler-failed peer=%s message=%s", self.name, type(message))
            reply = Failed(message=f"{type(exc).__name__}: {exc}"[:500]) if message.rid else None
        try:
            if message.rid and not self.closed:
                if reply is None:
                    reply = Failed(message="no answer")
                reply.rid = message.rid
                with contextlib.suppress(ChannelClosed):
                    self.send(reply, out_fds)
        finally:
            for fd in out_fds:
                os.close(fd)

    # Closing --------------------------------------------------------------------------------------

    def _peer_gone(self) -> None:
        if self.closed:
            return
        self.close()
        self._on_closed()

    def close(self) -> None:
        """Close this end; pending calls fail with :class:`ChannelClosed`."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())
            if self._writing:
                self._loop.remove_writer(self._sock.fileno())
        for _data, fds in self._queue:
            for fd in fds:
                os.close(fd)
        self._queue.clear()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelClosed(f"{self.name} went away"))
        self._pending.clear()
        for task in self._tasks:
            task.cancel()
        self._sock.close()


def _take_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds.extend(array.array("i", data[:usable]))
    return fds
