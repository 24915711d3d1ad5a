"""Serving the console: uvicorn over TLS on a socket the supervisor bound and passed down.

The console process gets an already-bound, already-listening socket (it may not bind a
privileged port itself) and an :class:`ssl.SSLContext` built from the certificate it was given.
uvicorn runs inside the caller's event loop, without its signal handlers (the process owns the
signals), without its logging configuration and without an access log. The modules uvicorn
would otherwise import when it starts serving (its h11 protocol and the "off" lifespan) are
imported with this module, so a process that has dropped its privileges can still start it.
"""

from __future__ import annotations

import logging
import socket  # noqa: TID251 -- the listening socket is handed in.
import ssl
from typing import Final

import uvicorn
import uvicorn.lifespan.off
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from ocgate.daemon._asgi import AsgiServer, start_asgi

__all__ = ["ConsoleServer", "serve_console"]

log = logging.getLogger("ocgate.console")
_STARTUP_TIMEOUT: Final = 10.0


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


ConsoleServer = AsgiServer
"""A running console server: ``host``, ``port``, ``running``, and an awaitable ``close()``."""


async def serve_console(
    app: ASGIApp, sock: socket.socket, ssl_context: ssl.SSLContext
) -> ConsoleServer:
    """Serve ``app`` over TLS on ``sock`` (bound and listening) in the running event loop.

    :raises OSError: the server stopped or did not start.
    """
    config = _Config(app, ssl_context)
    handle = await start_asgi(config, sock, name="console", startup_timeout=_STARTUP_TIMEOUT)
    log.info("console listening on %s:%d", handle.host, handle.port)
    return handle
