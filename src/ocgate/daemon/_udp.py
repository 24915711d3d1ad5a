"""The DTLS port of one worker: shared UDP sockets in, one connected UDP socket per association.

Demultiplexing across processes (anyconnect-protocol.md §9.4; ocserv ``src/main.c``
``forward_udp_to_owner`` does the same job in its main process):

* Every worker reads the shared, unconnected UDP socket(s) the supervisor bound. A datagram there
  is only looked at if it is a ClientHello; anything else is dropped without a reply.
* The Session-ID (legacy mode) or App-ID (PSK mode) that a CONNECT reply offered starts with two
  bytes the offering worker chose: its worker index and the mode. So any worker can tell which
  worker owns a hello, and answer a PSK hello without a valid cookie with a stateless
  HelloVerifyRequest (the cookie key is shared by all workers), which is smaller than the hello, so
  the port cannot be used as an amplifier and keeps no state for spoofed sources.
* A hello that passes is *steered*: the worker hands it to the supervisor, which creates a UDP
  socket bound to the DTLS port and connected to the client's address, and passes it with the hello
  to the owning worker. The kernel delivers a connected socket's datagrams to it in preference to
  the shared socket, so from then on that client's records reach the owner directly: no hop, no
  lookup, whichever worker the first datagram hit.
* The owner checks the id against the offers of its own tunnels; an unknown id, or an all-zero
  random (ocserv #277), closes the steered socket at once. A tunnel holds at most two steered
  sockets (its active and its pending association).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ocgate.dtls import Address, CookieJar, peek_client_hello_untrusted
from ocgate.dtls._epoch import IMPLEMENTATION as FASTPATH
from ocgate.errors import BadRecord
from ocgate.tun._batch import read_many, write_many

if TYPE_CHECKING:
    from ocgate.daemon._dtls import DtlsChannel

__all__ = ["MODE_LEGACY", "MODE_PSK", "DtlsPort", "SteeredSocket", "tag_id"]

log = logging.getLogger("ocgate.dtls")

_HANDSHAKE = 22
_ZERO_RANDOM = bytes(32)
MODE_LEGACY = 1
MODE_PSK = 2
_READ_BATCH = 64
"""Datagrams a steered socket reads per wake-up at most (then the loop serves others)."""
MAX_STEERED = 4096
"""Steered sockets one worker keeps at most (two per tunnel are needed)."""

Steer = Callable[[int, tuple[str, int], bytes], None]


def tag_id(worker: int, mode: int, random_bytes: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """A ``random_bytes`` for :func:`ocgate.dtls.negotiate_dtls` whose ids name worker and mode."""

    def make(n: int) -> bytes:
        return bytes((worker & 0xFF, mode)) + random_bytes(n - 2)

    return make


class DtlsPort(asyncio.DatagramProtocol):
    """Reads the shared UDP sockets, steers hellos, and owns this worker's steered sockets.

    :param worker: this worker's index (the first byte of the ids it offers).
    :param cookie_key: the HelloVerifyRequest key every worker shares.
    :param steer: hands ``(owner, client address, hello)`` to the supervisor.
    """

    def __init__(self, *, worker: int, cookie_key: bytes, steer: Steer) -> None:
        self._worker = worker
        self._steer = steer
        self._by_id: dict[bytes, DtlsChannel] = {}
        self._cookies = CookieJar(random_bytes=lambda _n: cookie_key)
        self._transports: list[asyncio.DatagramTransport] = []
        self._steered: dict[Address, SteeredSocket] = {}
        self.dropped = 0
        log.info("event=dtls-port worker=%d fastpath=%s", worker, FASTPATH)

    async def adopt(self, sockets: list[socket.socket]) -> None:
        """Read the shared sockets the supervisor bound."""
        loop = asyncio.get_running_loop()
        for sock in sockets:
            sock.setblocking(False)
            transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
            self._transports.append(transport)

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        for steered in list(self._steered.values()):
            steered.close()

    # Registration by the tunnels ------------------------------------------------------------------

    def offer(self, lookup_id: bytes, channel: DtlsChannel) -> None:
        """The CONNECT reply announced ``lookup_id`` (Session-ID or App-ID) for ``channel``."""
        self._by_id[lookup_id] = channel

    def forget(self, channel: DtlsChannel) -> None:
        for lookup_id in [k for k, v in self._by_id.items() if v is channel]:
            del self._by_id[lookup_id]
        for steered in [s for s in self._steered.values() if s.channel is channel]:
            steered.close()

    # The shared sockets ---------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if not data or data[0] != _HANDSHAKE:
            self.dropped += 1
            return
        client = (str(addr[0]), int(addr[1]))
        try:
            info = peek_client_hello_untrusted(data)
        except BadRecord:
            info = None
        if info is None or len(info.session_id) < 2 or info.random == _ZERO_RANDOM:
            self.dropped += 1
            return
        lookup = info.session_id
        if lookup[1] == MODE_PSK:
            now = time.monotonic()
            try:
                self._cookies.check(info, client, now)
            except BadRecord:
                reply = self._cookies.hello_verify_request(info, client, now)
                self._transport_for(client).sendto(reply, client)
                return
        elif lookup[1] != MODE_LEGACY:
            self.dropped += 1
            return
        self._steer(lookup[0], client, data)

    def error_received(self, exc: Exception) -> None:
        log.debug("event=udp-error reason=%r", exc)

    def _transport_for(self, addr: Address) -> asyncio.DatagramTransport:
        want = socket.AF_INET6 if ":" in str(addr[0]) else socket.AF_INET
        for transport in self._transports:
            if transport.get_extra_info("socket").family == want:
                return transport
        return self._transports[0]

    # Steered sockets ------------------------------------------------------------------------------

    async def steered(self, client: Address, data: bytes, sock: socket.socket) -> None:
        """The supervisor passed a hello for one of our ids and a socket connected to ``client``."""
        try:
            info = peek_client_hello_untrusted(data)
        except BadRecord:
            info = None
        if info is None:
            sock.close()
            return
        target = self._by_id.get(info.session_id)
        if target is None or len(self._steered) >= MAX_STEERED:
            self.dropped += 1
            sock.close()
            return
        old = self._steered.pop(client, None)
        if old is not None:
            old.close()
        for stale in [s for s in self._steered.values() if s.channel is target][1:]:
            stale.close()
        steered = SteeredSocket(self, client, target, sock)
        self._steered[client] = steered
        target.client_hello(
            data, info, client, cast("asyncio.DatagramTransport", steered), _no_bind
        )

    def _steered_closed(self, steered: SteeredSocket) -> None:
        if self._steered.get(steered.client) is steered:
            del self._steered[steered.client]

    def _rehello(self, steered: SteeredSocket, data: bytes) -> None:
        """A ClientHello on a steered socket: a retransmission or a new handshake of that tunnel."""
        try:
            info = peek_client_hello_untrusted(data)
        except BadRecord:
            info = None
        if info is None:
            steered.channel.datagram_received(data, steered.client)
            return
        if self._by_id.get(info.session_id) is not steered.channel:
            self.dropped += 1
            return
        sender = cast("asyncio.DatagramTransport", steered)
        steered.channel.client_hello(data, info, steered.client, sender, _no_bind)


class SteeredSocket:
    """One UDP socket connected to one client: its datagrams all belong to ``channel``.

    It reads its socket itself (``loop.add_reader``), up to ``_READ_BATCH`` datagrams per wake-up
    in one call (:func:`ocgate.tun._batch.read_many`: ``recvmmsg(2)`` with the compiled fast path),
    offers them to the channel's fast path, and passes the rest one by one, in order, to the
    reference path. It is also the channel's sender: ``sendto`` ignores the address (the socket is
    connected) and ``send_many`` sends a batch in one call; a datagram the kernel refuses (full
    buffer, an ICMP error reported for an earlier one) is dropped, as by a congested link.
    While the channel's data path runs on the worker's thread (:mod:`ocgate.daemon._offload`),
    the socket is *lent*: the thread reads it, and hands back what the reference path must see.
    """

    def __init__(
        self, port: DtlsPort, client: Address, channel: DtlsChannel, sock: socket.socket
    ) -> None:
        self._port = port
        self.client = client
        self.channel = channel
        self._sock = sock
        self._fd = sock.fileno()
        self._closed = False
        sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)
        self._reading = True

    def fileno(self) -> int:
        return self._fd

    def lend(self) -> None:
        """The data-path thread reads this socket until :meth:`take_back`."""
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def take_back(self) -> None:
        if not self._reading and not self._closed:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _on_readable(self) -> None:
        try:
            datagrams = read_many(self._fd, _READ_BATCH)
        except OSError as exc:  # An ICMP error for an earlier datagram, reported once.
            log.debug("event=udp-error remote=%s reason=%r", self.client[0], exc)
            return
        channel, client = self.channel, self.client
        count = len(datagrams)
        index = channel.receive_fast(datagrams, 0, client)
        while index < count and not self._closed:
            self.datagram_received(datagrams[index], client)
            index = channel.receive_fast(datagrams, index + 1, client)

    def datagram_received(self, data: bytes, addr: object) -> None:
        """The reference path for one datagram: hellos to the port, the rest to the channel."""
        if data and data[0] == _HANDSHAKE and len(data) > 13 and data[13] == 1:  # ClientHello
            self._port._rehello(self, data)
            return
        self.channel.datagram_received(data, self.client)

    def sendto(self, data: bytes, addr: object = None) -> None:
        if not self._closed:
            self.channel.send_dropped += 1 - write_many(self._fd, (data,))

    def send_many(self, datagrams: list[bytes]) -> None:
        if not self._closed:
            self.channel.send_dropped += len(datagrams) - write_many(self._fd, datagrams)

    def close(self) -> None:
        if not self._closed:
            self.channel.socket_closing(self)  # The thread lets go of the socket first.
            self._closed = True
            if self._reading:
                self._loop.remove_reader(self._fd)
                self._reading = False
            self._sock.close()
        self._port._steered_closed(self)


def _no_bind(_addr: Address, _channel: DtlsChannel) -> None:
    """Steered sockets need no address map: the socket is the association's own."""
