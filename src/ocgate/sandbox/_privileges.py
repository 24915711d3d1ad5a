"""Dropping root: from the supervisor's identity to ``run-as-user``, keeping what a role needs.

Theory of operation
-------------------

Each process of the gateway gives up, right after ``fork()``, everything its job does not need:

* The **supervisor** stays root. It creates TUN devices, configures addresses and routes over
  netlink, binds port 443, runs connect/disconnect scripts and forks the others. It is small
  and never parses client bytes.
* **sec-mod** (authentication) runs as ``run-as-user`` and keeps ``CAP_DAC_READ_SEARCH`` and
  ``CAP_DAC_OVERRIDE``: the password and OTP files are root-owned mode 0600, it must read them,
  and it writes OTP state (HOTP counters, replay marks) back. Nothing else: no setuid, no
  network administration, no raw sockets.
* **Workers** and the **NVM collector** keep nothing. They parse untrusted bytes from the
  Internet; their sockets and TUN file descriptors come from the supervisor over a Unix socket.

The order of the steps matters and is fixed here:

1. The bounding set loses everything not kept (``PR_CAPBSET_DROP`` needs ``CAP_SETPCAP``, so
   this comes first), and the ambient set is emptied.
2. ``PR_SET_KEEPCAPS`` (only when capabilities are kept), or the uid change below would
   empty the permitted set.
3. ``setgroups``, then ``setresgid`` (both need ``CAP_SETGID``, which goes with the uid), then
   ``setresuid`` with the same id for real, effective and saved: there is no saved root uid
   left to switch back to.
4. ``capset``: permitted = effective = the kept capabilities, inheritable empty.
5. Verification: the ids, groups and capability sets are read back, and ``setuid(0)`` must
   fail. Any surprise raises :class:`SandboxError` and the process must exit.

``capset`` and ``PR_SET_KEEPCAPS`` act on the calling thread only, so the process must have one
thread when it drops; :func:`drop_privileges` checks ``Threads:`` in ``/proc/self/status``.
ocserv also sets ``RLIMIT_NPROC`` to 0 in its workers; ocgate cannot (Python threads count
against it), and the seccomp filter refuses ``fork`` instead (see ``_seccomp.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from ocgate.sandbox._account import Account
from ocgate.sandbox._caps import (
    CAP_SETGID,
    CAP_SETPCAP,
    CAP_SETUID,
    bounding_set,
    cap_mask,
    clear_ambient,
    drop_bounding_set,
)
from ocgate.sandbox._errors import SandboxError
from ocgate.sandbox._libc import (
    PR_GET_DUMPABLE,
    PR_GET_NO_NEW_PRIVS,
    PR_SET_DUMPABLE,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
    CapSets,
    capget,
    capset,
    prctl,
)
from ocgate.sandbox._report import sandbox_report

__all__ = ["drop_privileges", "set_no_new_privs", "set_not_dumpable"]


def drop_privileges(account: Account, *, keep_caps: Iterable[int] = ()) -> None:
    """Become ``account`` for good, keeping only ``keep_caps``.

    :param account: from :func:`~ocgate.sandbox.resolve_account`, resolved before ``fork()``.
    :param keep_caps: capability numbers to keep in the permitted and effective sets, e.g.
        ``(CAP_DAC_READ_SEARCH, CAP_DAC_OVERRIDE)`` for sec-mod; empty for workers.
    :raises SandboxError: the process has more than one thread, or the result differs from
        what was asked (the process must not go on).
    :raises OSError: the kernel refused a step (typically ``EPERM`` when not root).
    """
    keep = cap_mask(keep_caps)
    threads = sandbox_report().get("Threads", "1")
    if threads != "1":
        raise SandboxError(f"drop_privileges needs a single-threaded process, found {threads}")
    # Without CAP_SETPCAP (not root) the bounding set cannot shrink; such a process holds no
    # capabilities, and NO_NEW_PRIVS keeps execve from granting any.
    shrink_bounding = bool(capget().effective & (1 << CAP_SETPCAP))
    if shrink_bounding:
        drop_bounding_set(keep)
    clear_ambient()
    if keep:
        prctl(PR_SET_KEEPCAPS, 1)
    try:
        if set(os.getgroups()) != set(account.groups):
            os.setgroups(list(account.groups))
        os.setresgid(account.gid, account.gid, account.gid)
        os.setresuid(account.uid, account.uid, account.uid)
    finally:
        if keep:
            prctl(PR_SET_KEEPCAPS, 0)
    capset(CapSets(effective=keep, permitted=keep, inheritable=0))
    _verify(account, keep, shrink_bounding)


def _verify(account: Account, keep: int, shrink_bounding: bool) -> None:
    """Read everything back; a drop that did not fully happen must not go unnoticed."""
    if os.getresuid() != (account.uid,) * 3 or os.getresgid() != (account.gid,) * 3:
        raise SandboxError(
            f"ids after drop: uid {os.getresuid()}, gid {os.getresgid()}; "
            f"wanted {account.uid}/{account.gid}"
        )
    if set(os.getgroups()) != set(account.groups):
        raise SandboxError(f"groups after drop: {os.getgroups()}; wanted {list(account.groups)}")
    caps = capget()
    if (caps.effective, caps.permitted, caps.inheritable) != (keep, keep, 0):
        raise SandboxError(f"capabilities after drop: {caps}; wanted {keep:#x}")
    if account.uid != 0 and not keep & (1 << CAP_SETUID):
        _must_fail(os.setuid, 0, "setuid(0)")
    if account.gid != 0 and not keep & (1 << CAP_SETGID):
        _must_fail(os.setgid, 0, "setgid(0)")
    if shrink_bounding and bounding_set() & ~keep:
        raise SandboxError(f"bounding set after drop: {bounding_set():#x}; wanted {keep:#x}")


def _must_fail(call: Callable[[int], None], arg: int, what: str) -> None:
    try:
        call(arg)
    except PermissionError:
        return
    raise SandboxError(f"{what} succeeded after dropping privileges")


def set_no_new_privs() -> None:
    """Set ``PR_SET_NO_NEW_PRIVS``: no ``execve`` can grant privileges again (setuid bits and
    file capabilities are ignored), and an unprivileged process may install a seccomp filter.
    It cannot be unset, and it is inherited by threads and children.
    """
    if prctl(PR_GET_NO_NEW_PRIVS) == 1:
        return
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if prctl(PR_GET_NO_NEW_PRIVS) != 1:
        raise SandboxError("PR_SET_NO_NEW_PRIVS did not take effect")


def set_not_dumpable() -> None:
    """Set ``PR_SET_DUMPABLE`` to 0: no core dump (which would hold keys and session cookies)
    and no ``ptrace`` attach or ``/proc/PID/mem`` read by other processes of the same user.
    """
    prctl(PR_SET_DUMPABLE, 0)
    if prctl(PR_GET_DUMPABLE) != 0:
        raise SandboxError("PR_SET_DUMPABLE 0 did not take effect")
