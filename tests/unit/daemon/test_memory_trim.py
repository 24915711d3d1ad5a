"""``daemon/_memory.py``: free pages inside the C heap go back to the kernel on :func:`trim`."""

from __future__ import annotations

import asyncio
import ctypes
import platform
from pathlib import Path

import pytest

from ocgate.daemon import _memory


def _anonymous_kib() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1])
    raise AssertionError("no Anonymous line in smaps_rollup")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_returns_the_free_middle_of_the_heap() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # 64 MiB in 64 KiB blocks (below the mmap threshold: on the heap), touched, then all freed
    # but the last one, which pins the top of the heap so that glibc cannot shrink it by itself.
    blocks = [libc.malloc(65536) for _ in range(1024)]
    assert all(blocks)
    for block in blocks:
        ctypes.memset(block, 1, 65536)
    for block in blocks[:-1]:
        libc.free(block)
    before = _anonymous_kib()
    _memory.trim()
    after = _anonymous_kib()
    libc.free(blocks[-1])
    assert before - after > 32 * 1024, (before, after)


def test_trim_periodically_runs_until_cancelled() -> None:
    calls = 0
    real = _memory.trim

    def counting() -> None:
        nonlocal calls
        calls += 1
        real()

    async def scenario() -> None:
        _memory.trim = counting
        try:
            task = asyncio.get_running_loop().create_task(_memory.trim_periodically(0.01))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            _memory.trim = real

    asyncio.run(scenario())
    assert calls >= 3
