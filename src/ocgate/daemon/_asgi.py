"""uvicorn inside an ocgate event loop: what the NVM API and the web console serve through.

uvicorn runs in the caller's loop on a socket the caller already bound and made listen, without
its own signal handling (the process owns the signals) and without its logging configuration.
:func:`start_asgi` returns once uvicorn accepts connections, or raises what stopped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn

__all__ = ["AsgiServer", "start_asgi"]


class _QuietServer(uvicorn.Server):
    """uvicorn's server without its signal handling."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def install_signal_handlers(self) -> None:
        """Older uvicorn versions call this instead of :meth:`capture_signals`."""


class AsgiServer:
    """A running server; :meth:`close` stops it (requests in flight get the config's
    ``timeout_graceful_shutdown``)."""

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
        """Stop accepting, finish or close the connections, and wait."""
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def start_asgi(
    config: uvicorn.Config, sock: socket.socket, *, name: str, startup_timeout: float = 10.0
) -> AsgiServer:
    """Serve ``config.app`` on ``sock`` (bound and listening) in the running event loop.

    :raises OSError: the server stopped during start-up or did not start within ``startup_timeout``.
    """
    sock.setblocking(False)
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=name)
    handle = AsgiServer(server, task, sock)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + startup_timeout
    while not server.started:
        if task.done():
            task.result()  # Raises what stopped the server.
            raise OSError(f"{name} server stopped during start-up")
        if loop.time() > deadline:
            await handle.close()
            raise OSError(f"{name} server did not start in time")
        await asyncio.sleep(0.01)
    return handle
