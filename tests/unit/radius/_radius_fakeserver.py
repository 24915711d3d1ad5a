"""A scripted RADIUS server on a loopback UDP socket, built on pyrad's server-side packet code
(an implementation independent of ocgate's request encoding)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pyrad.packet  # type: ignore[import-untyped]

from ocgate.radius._dictionary import radius_dictionary

# What the server does with one decoded request: return reply bytes (or several), or None to drop.
Behaviour = Callable[[Any, int], bytes | list[bytes] | None]


class FakeRadius(asyncio.DatagramProtocol):
    def __init__(self, secret: bytes, behaviour: Behaviour) -> None:
        self.secret = secret
        self.behaviour = behaviour
        self.requests: list[Any] = []
        self.raw: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        cls = pyrad.packet.AuthPacket if data[0] in (1, 12) else pyrad.packet.AcctPacket
        request = cls(packet=data, secret=self.secret, dict=radius_dictionary())
        self.requests.append(request)
        self.raw.append(data)
        out = self.behaviour(request, len(self.requests))
        assert self.transport is not None
        for reply in [out] if isinstance(out, bytes) else out or []:
            self.transport.sendto(reply, addr)


@contextlib.asynccontextmanager
async def start_fake(secret: bytes, behaviour: Behaviour) -> AsyncIterator[tuple[FakeRadius, int]]:
    """Run a fake server on a free loopback port for the ``async with`` block."""
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: FakeRadius(secret, behaviour), local_addr=("127.0.0.1", 0)
    )
    try:
        yield server, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def reply(request: Any, code: int, **attributes: Any) -> bytes:
    """A correctly signed reply to ``request`` (with a Message-Authenticator for Access)."""
    pkt = request.CreateReply(**attributes)
    pkt.code = code
    raw: bytes = pkt.ReplyPacket()
    return raw
