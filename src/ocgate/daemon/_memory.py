"""Handing freed heap memory back to the kernel (glibc's ``malloc_trim``).

Theory of operation
-------------------
Python objects up to 512 bytes live in pymalloc's arenas, which go back to the kernel when empty.
Everything else — larger objects, and every allocation of the C libraries (OpenSSL's connection
state, cffi, msgspec) — goes through the C library's ``malloc``. glibc returns memory at the top
of its heap on its own, but not free pages in the middle of it, which is where start-up garbage
(configuration parsing, imports, the TLS context build) and the buffers of connections that have
closed end up once long-lived objects sit above them. ``malloc_trim(0)`` gives those pages back
(``madvise(MADV_DONTNEED)``), without moving anything, in about a millisecond for a heap of tens of
megabytes.

Each process calls :func:`trim` once it is serving (the start-up garbage is then all free) and
then every :data:`TRIM_INTERVAL` seconds (:func:`trim_periodically`), which returns what a burst
of logins or a wave of closed tunnels left behind. With another C library (musl has no
``malloc_trim``) both do nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

__all__ = ["TRIM_INTERVAL", "trim", "trim_periodically"]

TRIM_INTERVAL = 60.0
"""Seconds between two trims of a serving process."""


def _load() -> Callable[[int], int] | None:
    try:
        function = ctypes.CDLL(None).malloc_trim  # The C library the interpreter runs on.
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


_malloc_trim = _load()


def trim() -> None:
    """Return the free pages of the C heap to the kernel (nothing without glibc)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


async def trim_periodically(interval: float = TRIM_INTERVAL) -> None:
    """:func:`trim` every ``interval`` seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        trim()
