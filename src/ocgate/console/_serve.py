"""Serving the console: uvicorn over TLS on a socket the supervisor bound and passed down.

The console process gets an already-bound, already-listening socket (it may not bind a
privileged port itself) and an :class:`ssl.SSLContext` built from the certificate it was given.
uvicorn runs inside the caller's event loop, without its signal handlers (the process owns the
signals), without its logging configuration and without an access log. The modules uvicorn
would otherwise import when it starts serving (its h11 protocol and the "off" lifespan) are
imported with this module, so a process that has dropped its privileges can still start it.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- serving is an adapter, not a sans-IO core.
import contextlib
import logging
import socket  # noqa: TID251 -- the listening socket is handed in.
import ssl
from collections.abc import Generator
from typing import Final

import uvicorn
import uvicorn.lifespan.off
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConsoleServer", "serve_console"]

log = logging.getLogger("ocgate.console")
_STARTUP_TIMEOUT: Final = 10.0


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def install_signal_handlers(self) -> None:
        """Older uvicorn versions call this instead of :meth:`capture_signals`."""


class _Config(uvicorn.Config):
    """A config whose TLS context is the one given, not one built from file names."""

    def __init__(self, app: ASGIApp, ssl_context: ssl.SSLContext) -> None:
        super().__init__(
            app,
            lifespan="off",
            http=H11Protocol,
            ws="none",
            log_config=None,
            log_level=None,
            access_log=False,
            server_header=False,
            date_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=5,
            limit_concurrency=256,
        )
        self._given_context = ssl_context

    def load(self) -> None:
        super().load()
        self.ssl = self._given_context


class ConsoleServer:
    """A running console server; :meth:`close` stops it."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], sock: socket.socket):
        self._server = server
        self._task = task
        name = sock.getsockname()
        self.host: str = str(name[0])
        self.port: int = int(name[1])

    @property
    def running(self) -> bool:
        """True until the server has stopped."""
        return not self._task.done()

    async def close(self) -> None:
        """Stop accepting, finish the requests in flight (up to 5 s) and wait."""
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def serve_console(
    app: ASGIApp, sock: socket.socket, ssl_context: ssl.SSLContext
) -> ConsoleServer:
    """Serve ``app`` over TLS on ``sock`` (bound and listening) in the running event loop.

    :raises OSError: the server stopped or did not start.
    """
    sock.setblocking(False)
    server = _Server(_Config(app, ssl_context))
    task = asyncio.create_task(server.serve(sockets=[sock]), name="console")
    handle = ConsoleServer(server, task, sock)
    deadline = asyncio.get_running_loop().time() + _STARTUP_TIMEOUT
    while not server.started:
        if task.done():
            task.result()  # Raises what stopped the server.
            raise OSError("console server stopped during startup")
        if asyncio.get_running_loop().time() > deadline:
            await handle.close()
            raise OSError("console server did not start in time")
        await asyncio.sleep(0.01)
    log.info("console listening on %s:%d", handle.host, handle.port)
    return handle
