"""Closing TUN descriptors away from the event loop.

Closing a TUN device's last descriptor unregisters the device, and the kernel waits for RCU grace
periods before it returns (milliseconds, tens of them on a busy machine). A worker closes one per
tunnel it ends, so it hands them to threads of its own, and starts another (up to 64) whenever
every one is busy: the grace periods of several closes overlap, so the closes a worker finishes
per second grow with its threads. Four threads made about 125 per second on the 2-core
benchmark machine, fewer than a busy gateway retires (``bench_gateway.py logins``); the rest
stayed as live devices, and every later device creation and removal walked their routes.

With the compiled ``ocgate._fastpath`` those are C threads fed through a pipe: they never hold the
GIL. The fallback here uses Python threads and a plain queue (one ``put`` per descriptor, where
``run_in_executor`` cost a future, a work item, locks and a callback nobody needed); each of them
takes the GIL back after its close, and on a machine whose cores are all busy a thread that is
descheduled while holding it stalls the event loop behind it (``bench_gateway.py logins`` with one
worker: the loop waited on the GIL after most of its ``send`` calls).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable

__all__ = ["close_later"]

_MAX_THREADS = 64  # Closes that may wait on the kernel at once; threads start as closes wait.

_queue: queue.SimpleQueue[int] = queue.SimpleQueue()
_lock = threading.Lock()
_threads: list[threading.Thread] = []
_idle = 0  # Threads waiting for a descriptor (under _lock).


def _run() -> None:
    global _idle
    while True:
        with _lock:
            _idle += 1
        fd = _queue.get()
        with _lock:
            _idle -= 1
        with contextlib.suppress(OSError):
            os.close(fd)


def _py_close_later(fd: int) -> None:
    """Close ``fd`` on a background thread (one more starts when all are busy); returns at once."""
    _queue.put(fd)
    with _lock:
        if _queue.qsize() <= _idle or len(_threads) >= _MAX_THREADS:
            return
        thread = threading.Thread(target=_run, name="tun-closer", daemon=True)
        thread.start()
        _threads.append(thread)


close_later: Callable[[int], None] = _py_close_later
"""Close ``fd`` on a background thread (started on first use); returns at once."""
if os.environ.get("OCGATE_FASTPATH", "").strip().lower() != "python":  # As ocgate.tun._batch.
    try:
        from ocgate import _fastpath  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - depends on how the package was built
        pass
    else:
        close_later = _fastpath.close_later
