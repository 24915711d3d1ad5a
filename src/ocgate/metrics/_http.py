"""A minimal HTTP endpoint for Prometheus scrapes (``GET /metrics`` on ``metrics-listen``) and
for a balancer's health checks (``GET /health``, there and on ``health-listen``).

It runs on the gateway's event loop (h11 parses the request), so collectors read gateway state
without locks. One request per connection, small limits: it is meant for a scraper or a
balancer, not for browsers. ``/health`` answers ``200 ready`` or ``503 draining`` / ``503
stopping`` (text bodies), without authentication: HAProxy's ``option httpchk GET /health`` with
``http-check expect status 200`` takes a draining node out of rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

import h11

__all__ = ["answer_http", "parse_listen_address", "serve_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MAX_REQUEST = 8192
_DEADLINE = 10.0


def parse_listen_address(value: str) -> tuple[str, int]:
    """``127.0.0.1:9099`` or ``[::1]:9099`` → (host, port).

    :raises ValueError: not ``HOST:PORT`` with a port 1-65535.
    """
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"not HOST:PORT: {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


async def serve_metrics(host: str, port: int, render: Callable[[], bytes]) -> asyncio.Server:
    """Start the endpoint; the returned server is closed by the caller."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, TimeoutError, h11.RemoteProtocolError):
            await asyncio.wait_for(_answer(reader, writer, render), _DEADLINE)
        writer.close()

    return await asyncio.start_server(handle, host, port, reuse_address=True)


async def answer_http(
    sock: socket.socket,
    *,
    scrape: Callable[[], Awaitable[bytes]] | None,
    health: str | None,
) -> None:
    """Answer one request on an accepted connection (a worker serves the supervisor's
    ``metrics-listen`` and ``health-listen`` sockets): ``/metrics`` with ``scrape()`` (404 when
    ``None``: ``health-listen``), ``/health`` with ``health`` (``ready`` → 200, anything else →
    503; 404 when ``None``). The scrape is asked for only once the request names it."""
    with contextlib.suppress(OSError, TimeoutError, h11.RemoteProtocolError):
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            await asyncio.wait_for(_respond(reader, writer, scrape, health), _DEADLINE)
        finally:
            writer.close()


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, render: Callable[[], bytes]
) -> None:
    async def scrape() -> bytes:
        return render()

    await _respond(reader, writer, scrape, None)


async def _respond(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    scrape: Callable[[], Awaitable[bytes]] | None,
    health: str | None,
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_MAX_REQUEST)
            conn.receive_data(data)
            if not data:
                return
            continue
        if isinstance(event, h11.Request):
            break
        return
    target = event.target.split(b"?", 1)[0]
    if event.method not in (b"GET", b"HEAD"):
        status, body, ctype = 405, b"method not allowed\n", "text/plain"
    elif target == b"/health" and health is not None:
        status = 200 if health == "ready" else 503
        body, ctype = f"{health}\n".encode(), "text/plain"
    elif target in (b"/metrics", b"/") and scrape is not None:
        status, body, ctype = 200, await scrape(), CONTENT_TYPE
    else:
        status, body, ctype = 404, b"not found\n", "text/plain"
    headers = [
        ("Content-Type", ctype),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
    if event.method != b"HEAD":
        writer.write(conn.send(h11.Data(data=body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()
