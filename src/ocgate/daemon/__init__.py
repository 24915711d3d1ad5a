"""The asyncio adapters: listeners, connections, tunnels and the process around them.

Everything here is I/O plumbing around the sans-IO cores; protocol decisions live in the cores.
"""

from __future__ import annotations

from ocgate.daemon._gateway import Gateway
from ocgate.daemon._main import serve

__all__ = ["Gateway", "serve"]
