"""The UDP exchange with a list of RADIUS servers: retransmission, timeouts, failover.

Theory of operation: the servers are tried in order, starting at a preferred one (the server that
sent a challenge must get the answer). Each server gets its own request (its own secret) on its
own connected UDP socket, sent ``retries`` times and awaited ``wait`` seconds each time. A
reply that fails :func:`decode_reply_untrusted` is dropped and the wait goes on (RFC 2865 section
3: invalid replies are silently discarded); an ICMP error ends the current wait early. Name
resolution is bounded by ``wait`` too, so one request takes at most about
``wait * retries * len(servers)`` seconds, after which :class:`ServersUnreachable` is raised.
All protocol decisions are in ``_codec``; this module only moves bytes.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - the one I/O adapter of ocgate.radius.
import logging
import socket  # noqa: TID251 - the one I/O adapter of ocgate.radius.
from collections.abc import Callable, Sequence

from ocgate.errors import RemoteProtocolError
from ocgate.radius._codec import EncodedRequest, RadiusReply, decode_reply_untrusted
from ocgate.radius._config import RadiusServer

__all__ = ["ServersUnreachable", "exchange"]

logger = logging.getLogger("ocgate.radius")
_MAX_DATAGRAM = 4096


class ServersUnreachable(Exception):
    """No server gave a valid reply in time (internal; mapped by the callers)."""


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data[:_MAX_DATAGRAM])

    def error_received(self, exc: Exception) -> None:
        self.queue.put_nowait(exc)


async def _resolve(server: RadiusServer, wait: float) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(server.host, server.port, type=socket.SOCK_DGRAM), wait
    )
    address = infos[0][4]
    return str(address[0]), int(address[1])


async def _await_reply(
    endpoint: _Endpoint, request: EncodedRequest, deadline: float
) -> RadiusReply | None:
    loop = asyncio.get_running_loop()
    while (remaining := deadline - loop.time()) > 0:
        try:
            item = await asyncio.wait_for(endpoint.queue.get(), remaining)
        except TimeoutError:
            return None
        if isinstance(item, Exception):
            logger.debug("radius: transmission failed: %s", item)
            return None
        try:
            return decode_reply_untrusted(request, item)
        except RemoteProtocolError as exc:
            logger.warning("radius: dropped an invalid reply: %s", exc)
    return None


async def _exchange_one(
    server: RadiusServer, request: EncodedRequest, wait: float, retries: int
) -> RadiusReply | None:
    loop = asyncio.get_running_loop()
    try:
        remote = await _resolve(server, wait)
        transport, endpoint = await loop.create_datagram_endpoint(_Endpoint, remote_addr=remote)
    except (OSError, TimeoutError) as exc:
        logger.warning("radius: server %s:%d: %s", server.host, server.port, exc)
        return None
    try:
        for _ in range(max(retries, 1)):
            transport.sendto(request.data)
            reply = await _await_reply(endpoint, request, loop.time() + wait)
            if reply is not None:
                return reply
        return None
    finally:
        transport.close()


async def exchange(
    servers: Sequence[RadiusServer],
    build: Callable[[RadiusServer], EncodedRequest],
    *,
    wait: float,
    retries: int,
    first: int = 0,
) -> tuple[int, RadiusReply]:
    """Send a request to the servers in failover order and return the first valid reply.

    :param wait: seconds to wait for a reply to one transmission.
    :param retries: transmissions per server.
    :param build: makes the request for one server.
    :param first: index of the server to try first; the others follow in their order.
    :returns: the index of the server that answered, and its reply.
    :raises ServersUnreachable: no server answered validly in time.
    """
    first = first if 0 <= first < len(servers) else 0
    order = [first, *(i for i in range(len(servers)) if i != first)] if servers else []
    for index in order:
        server = servers[index]
        reply = await _exchange_one(server, build(server), wait, retries)
        if reply is not None:
            return index, reply
        logger.warning("radius: no reply from %s:%d", server.host, server.port)
    raise ServersUnreachable(f"no reply from {len(servers)} RADIUS server(s)")
