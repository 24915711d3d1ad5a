"""The processes and their asyncio adapters: supervisor, authentication service, workers.

Everything here is I/O plumbing around the sans-IO cores; protocol decisions live in the cores.
"""

from __future__ import annotations

from ocgate.daemon._main import serve

__all__ = ["serve"]
