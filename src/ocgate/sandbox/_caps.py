"""Linux capabilities (``capabilities(7)``): the numbers ocgate keeps, and set arithmetic.

A thread has a *permitted* set (what it may use), an *effective* set (what the kernel checks
now), an *inheritable* and an *ambient* set (what survives ``execve``), and the per-process
*bounding* set, the ceiling on what any later ``execve`` of a privileged file could grant.
:func:`~ocgate.sandbox.drop_privileges` leaves exactly the kept capabilities in the permitted
and effective sets and nothing in the others, and removes everything else from the bounding set.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from ocgate.sandbox._libc import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    prctl,
)

__all__ = [
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "bounding_set",
    "cap_mask",
    "clear_ambient",
    "drop_bounding_set",
    "keep_across_exec",
]

# <linux/capability.h>
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_NET_BIND_SERVICE = 10
CAP_NET_ADMIN = 12
_CAP_MAX = 63


def cap_mask(caps: Iterable[int]) -> int:
    """Turn capability numbers into a 64-bit mask; reject numbers outside 0..63."""
    mask = 0
    for cap in caps:
        if not 0 <= cap <= _CAP_MAX:
            raise ValueError(f"not a capability number: {cap!r}")
        mask |= 1 << cap
    return mask


def bounding_set() -> int:
    """The process's capability bounding set as a mask (``PR_CAPBSET_READ`` for each number)."""
    mask = 0
    for cap in range(_CAP_MAX + 1):
        try:
            if prctl(PR_CAPBSET_READ, cap):
                mask |= 1 << cap
        except OSError as exc:
            # The kernel answers EINVAL past its last capability (/proc/sys/kernel/cap_last_cap).
            if exc.errno != errno.EINVAL:
                raise
            break
    return mask


def drop_bounding_set(keep: int) -> None:
    """Remove every capability outside ``keep`` from the bounding set (needs CAP_SETPCAP)."""
    present = bounding_set()
    for cap in range(_CAP_MAX + 1):
        if present & ~keep & (1 << cap):
            prctl(PR_CAPBSET_DROP, cap)


def clear_ambient() -> None:
    """Empty the ambient set, which would otherwise be re-granted across ``execve``."""
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def keep_across_exec(caps: Iterable[int]) -> None:
    """Let ``caps`` (already permitted) survive ``execve`` as ambient capabilities.

    For a role that starts helper interpreters of its own after dropping root (the NVM collector's
    SQLite writer): they get exactly these capabilities, never more than the role holds.
    """
    from ocgate.sandbox._libc import capget, capset

    mask = cap_mask(caps)
    sets = capget()
    if mask & ~sets.permitted:
        raise ValueError("only permitted capabilities can be kept across exec")
    capset(type(sets)(effective=sets.effective, permitted=sets.permitted,
                      inheritable=sets.inheritable | mask))  # fmt: skip
    for cap in caps:
        prctl(PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap)


_PR_CAP_AMBIENT_RAISE = 2
