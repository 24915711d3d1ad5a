"""The DTLS port: one UDP socket per address family serves every session.

Demultiplexing (anyconnect-protocol.md §9.4, ocserv ``src/main.c`` ``forward_udp_to_owner``):

* a datagram from an address that already has an association goes to that tunnel;
* otherwise only a ClientHello is looked at: its session id (legacy mode) or App-ID (PSK mode, the
  ClientHello session_id or extension 48018) names the session the CONNECT reply offered; unknown
  ids, all-zero randoms and anything that is not a ClientHello are dropped without a reply;
* in PSK mode a ClientHello without a valid cookie gets a stateless HelloVerifyRequest, which is
  smaller than the hello that caused it, so the port cannot be used as an amplifier and keeps no
  state for spoofed sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from ocgate.dtls import Address, CookieJar, PskMode, peek_client_hello_untrusted
from ocgate.errors import BadRecord

if TYPE_CHECKING:
    from ocgate.daemon._dtls import DtlsChannel

__all__ = ["DtlsPort"]

log = logging.getLogger("ocgate.dtls")

_HANDSHAKE = 22
_ZERO_RANDOM = bytes(32)


class DtlsPort(asyncio.DatagramProtocol):
    """Receives every DTLS datagram and hands it to the tunnel it belongs to."""

    def __init__(self) -> None:
        self._by_id: dict[bytes, DtlsChannel] = {}
        self._by_addr: dict[Address, DtlsChannel] = {}
        self._cookies = CookieJar(random_bytes=os.urandom)
        self._transports: list[asyncio.DatagramTransport] = []
        self.dropped = 0

    async def start(self, host: str | None, port: int) -> None:
        loop = asyncio.get_running_loop()
        families = [socket.AF_INET, socket.AF_INET6] if host is None else [0]
        for family in families:
            bind = host if host is not None else ("0.0.0.0" if family == socket.AF_INET else "::")
            sock = _udp_socket(bind, port, family)
            transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
            self._transports.append(transport)
            log.info("event=listening proto=udp address=%s", sock.getsockname()[:2])

    def close(self) -> None:
        for transport in self._transports:
            transport.close()

    # Registration by the tunnels ------------------------------------------------------------------

    def offer(self, lookup_id: bytes, channel: DtlsChannel) -> None:
        """The CONNECT reply announced ``lookup_id`` (Session-ID or App-ID) for ``channel``."""
        self._by_id[lookup_id] = channel

    def bind(self, addr: Address, channel: DtlsChannel) -> None:
        self._by_addr[addr] = channel

    def forget(self, channel: DtlsChannel) -> None:
        for lookup_id in [k for k, v in self._by_id.items() if v is channel]:
            del self._by_id[lookup_id]
        for addr in [k for k, v in self._by_addr.items() if v is channel]:
            del self._by_addr[addr]

    # Datagrams ------------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        addr = (str(addr[0]), int(addr[1]))
        channel = self._by_addr.get(addr)
        if channel is not None and (not data or data[0] != _HANDSHAKE):
            channel.datagram_received(data, addr)
            return
        if not data or data[0] != _HANDSHAKE:
            self.dropped += 1
            return
        try:
            info = peek_client_hello_untrusted(data)
        except BadRecord:
            info = None
        if info is None:
            if channel is not None:  # A handshake record of a handshake under way.
                channel.datagram_received(data, addr)
            else:
                self.dropped += 1
            return
        target = self._by_id.get(info.lookup_id)
        if target is None or info.random == _ZERO_RANDOM:  # ocserv #277
            self.dropped += 1
            return
        now = time.monotonic()
        if isinstance(target.mode, PskMode):
            try:
                self._cookies.check(info, addr, now)
            except BadRecord:
                reply = self._cookies.hello_verify_request(info, addr, now)
                self._transport_for(addr).sendto(reply, addr)
                return
        target.client_hello(data, info, addr, self._transport_for(addr), self.bind)

    def error_received(self, exc: Exception) -> None:
        log.debug("event=udp-error reason=%r", exc)

    def _transport_for(self, addr: Address) -> asyncio.DatagramTransport:
        want = socket.AF_INET6 if ":" in str(addr[0]) else socket.AF_INET
        for transport in self._transports:
            if transport.get_extra_info("socket").family == want:
                return transport
        return self._transports[0]


def _udp_socket(host: str, port: int, family: int) -> socket.socket:
    if family == 0:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):  # Best effort: the kernel caps it at rmem_max.
            sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock
