"""Process titles: let ``ps`` and ``top`` tell the supervisor, sec-mod, workers and collector apart.

Two names are set. The *title* (``setproctitle``) rewrites the argument area, so ``ps -ef``
and ``/proc/PID/cmdline`` show ``ocgate: worker 2``. The kernel's *comm* name
(``prctl(PR_SET_NAME)``, 15 bytes) is what ``ps -o comm``, ``top``, ``pgrep``, ``/proc/PID/comm``
and kernel messages (OOM killer, seccomp audit records) show: ``ocgate-worker``. ocserv does the
same with ``ocserv-main``, ``ocserv-sm`` and ``ocserv-worker``.

``PR_SET_NAME`` names the calling thread; called from the main thread, as the roles do right
after ``fork()``, it names the process.
"""

from __future__ import annotations

import setproctitle

from ocgate.sandbox._libc import set_thread_name

__all__ = ["COMM_MAX", "set_role"]

#: The kernel keeps 16 bytes of comm, including the terminating NUL (``TASK_COMM_LEN``).
COMM_MAX = 15


def set_role(title: str, *, comm: str | None = None) -> None:
    """Name this process after its role.

    :param title: the role, e.g. ``"worker 2"``; ``ps`` shows ``ocgate: worker 2``.
    :param comm: the kernel comm name; by default ``ocgate-`` and the first word of the title
        (``ocgate-worker``). Longer names are cut to 15 bytes.
    """
    title = " ".join(title.split())
    if not title or not title.isprintable():
        raise ValueError(f"process title must be printable and non-empty: {title!r}")
    if comm is None:
        comm = f"ocgate-{title.split()[0]}"
    setproctitle.setproctitle(f"ocgate: {title}")
    set_thread_name(comm.encode("utf-8", "replace")[:COMM_MAX])
