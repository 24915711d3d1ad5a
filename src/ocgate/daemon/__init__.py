"""The processes and their asyncio adapters: supervisor, authentication service, workers.

Everything here is I/O plumbing around the sans-IO cores; protocol decisions live in the cores.
``serve`` loads on first use, so a child process (``python -m ocgate.daemon._child``) does not
import the supervisor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocgate.daemon._main import serve

__all__ = ["serve"]


def __getattr__(name: str) -> object:
    if name == "serve":
        from ocgate.daemon._main import serve

        return serve
    raise AttributeError(f"module 'ocgate.daemon' has no attribute {name!r}")
