"""Building and loading the BPF program with libseccomp (through ``pyseccomp``).

Kept apart from ``_seccomp.py`` so that importing :mod:`ocgate.sandbox` does not need
libseccomp; only :func:`~ocgate.sandbox.install_seccomp` does. The rules and the reasons for
them are described in ``_seccomp.py``.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable

import pyseccomp

from ocgate.sandbox._seccomp import (
    CLONE_NAMESPACES,
    CLONE_THREAD,
    PRCTL_OPTIONS,
    SOCKET_FAMILIES,
    TUNSETIFF,
)

__all__ = ["build_filter", "load_filter", "syscall_known"]


def syscall_known(name: str) -> bool:
    """True when libseccomp has a number for ``name`` on this architecture."""
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) >= 0


def build_filter(allowed: Iterable[str], pid: int) -> pyseccomp.SyscallFilter:
    """The filter for ``allowed`` plus the conditional rules, for the process ``pid``."""
    flt = pyseccomp.SyscallFilter(pyseccomp.ERRNO(errno.EPERM))
    flt.set_attr(pyseccomp.Attr.CTL_TSYNC, 1)
    flt.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    for name in sorted(allowed):
        if syscall_known(name):
            flt.add_rule(pyseccomp.ALLOW, name)
    _add_conditional_rules(flt, pid)
    return flt


def load_filter(allowed: Iterable[str]) -> None:
    """Build the filter for the calling process and load it (irreversible)."""
    build_filter(allowed, os.getpid()).load()


def _allow_if(flt: pyseccomp.SyscallFilter, name: str, arg: int, op: int, *data: int) -> None:
    flt.add_rule(pyseccomp.ALLOW, name, pyseccomp.Arg(arg, op, *data))


def _add_conditional_rules(flt: pyseccomp.SyscallFilter, pid: int) -> None:
    eq, masked_eq = pyseccomp.EQ, pyseccomp.MASKED_EQ
    _allow_if(flt, "clone", 0, masked_eq, CLONE_THREAD | CLONE_NAMESPACES, CLONE_THREAD)
    if syscall_known("clone3"):
        flt.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    for bit in range(32):
        mask = 1 << bit
        _allow_if(flt, "ioctl", 1, masked_eq, mask, ~TUNSETIFF & mask)
    _allow_if(flt, "kill", 0, eq, pid)
    _allow_if(flt, "tgkill", 0, eq, pid)
    for family in SOCKET_FAMILIES:
        _allow_if(flt, "socket", 0, eq, family)
    _allow_if(flt, "socketpair", 0, eq, socket.AF_UNIX)
    for option in PRCTL_OPTIONS:
        _allow_if(flt, "prctl", 0, eq, option)
    _allow_if(flt, "prlimit64", 0, eq, 0)
