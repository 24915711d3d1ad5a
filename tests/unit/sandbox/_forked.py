"""Run a check in a forked child: sandboxing is irreversible, so the test process never does it.

The child runs the function, then leaves with ``os._exit`` (0 when it returned, 1 when it raised);
its traceback comes back over a pipe and becomes the assertion message. A child that returned
also writes a marker, so one that was replaced by ``execve`` (a filter that failed to stop it)
cannot pass for a success. ``SIGALRM`` ends a child
that hangs (a system call blocked by a filter could make an event loop wait forever).
"""

from __future__ import annotations

import contextlib
import os
import signal
import traceback
import warnings
from collections.abc import Callable

__all__ = ["needs_root", "proc_status", "run_forked"]

import pytest

_DONE = b"check returned"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs these as root)")


def run_forked(check: Callable[[], None], *, timeout: int = 60) -> None:
    """Run ``check`` in a child process and fail the test with its traceback if it raises."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns when forking a process with threads (pytest's faulthandler watchdog);
        # the child only runs ``check`` and exits, so the warning does not apply.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - measured in the child, which never reports coverage
        code = 1
        try:
            os.close(read_end)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)  # Not the parent's (pytest-timeout).
            signal.alarm(timeout)
            check()
            os.write(write_end, _DONE)
            code = 0
        except BaseException:
            with contextlib.suppress(BaseException):
                os.write(write_end, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        pytest.fail(f"child killed by signal {os.WTERMSIG(status)}\n{report}")
    assert os.WEXITSTATUS(status) == 0, f"check failed in the child:\n{report}"
    assert report == _DONE.decode(), f"the child did not finish its check:\n{report}"


def proc_status() -> dict[str, str]:
    """Every line of ``/proc/self/status``, independently of the code under test."""
    with open("/proc/self/status", encoding="utf-8") as status:
        pairs = (line.split(":", 1) for line in status if ":" in line)
        return {key: value.strip() for key, value in pairs}
