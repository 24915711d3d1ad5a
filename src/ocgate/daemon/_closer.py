"""Closing TUN descriptors away from the event loop.

Closing a TUN device's last descriptor unregisters the device, and the kernel waits for RCU grace
periods before it returns (milliseconds, tens of them on a busy machine). A worker closes one per
tunnel it ends, so it hands them to a few threads of its own. A plain queue costs the event loop one
``put`` per descriptor, where ``run_in_executor`` cost a future, a work item, locks and a callback
back into the loop that nobody needed (the close has no result).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading

__all__ = ["close_later"]

_THREADS = 4  # Closes that may wait on the kernel at once.

_queue: queue.SimpleQueue[int] = queue.SimpleQueue()
_lock = threading.Lock()
_threads: list[threading.Thread] = []


def _run() -> None:
    while True:
        fd = _queue.get()
        with contextlib.suppress(OSError):
            os.close(fd)


def close_later(fd: int) -> None:
    """Close ``fd`` on a background thread (started on first use); returns at once."""
    if len(_threads) < _THREADS:
        with _lock:
            if len(_threads) < _THREADS:
                thread = threading.Thread(target=_run, name="tun-closer", daemon=True)
                thread.start()
                _threads.append(thread)
    _queue.put(fd)
