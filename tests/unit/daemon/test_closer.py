"""close_later: descriptors closed off the event loop, by C threads or the Python fallback."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from ocgate.daemon import _closer

IMPLS: dict[str, Callable[[int], None]] = {"python": _closer._py_close_later}
if _closer.close_later is not _closer._py_close_later:
    IMPLS["c"] = _closer.close_later


def _wait_for_eof(fd: int, timeout: float = 5.0) -> bool:
    """The read end of a pipe sees EOF once its write end is closed everywhere."""
    os.set_blocking(fd, False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.read(fd, 1) == b"":
                return True
        except BlockingIOError:
            time.sleep(0.005)
    return False


@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_every_descriptor_is_closed_soon(impl: str) -> None:
    pipes = [os.pipe() for _ in range(50)]
    for _read, write in pipes:
        IMPLS[impl](write)
    try:
        assert all(_wait_for_eof(read) for read, _write in pipes)
    finally:
        for read, _write in pipes:
            os.close(read)


@pytest.mark.skipif("c" not in IMPLS, reason="ocgate._fastpath is not built")
def test_the_compiled_closer_refuses_what_is_not_a_descriptor() -> None:
    with pytest.raises(ValueError, match="descriptor"):
        IMPLS["c"](-1)
    with pytest.raises(TypeError):
        IMPLS["c"]("3")  # type: ignore[arg-type]
