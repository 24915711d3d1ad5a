"""ctypes access to the few libc calls the sandbox needs and Python does not wrap: ``prctl(2)``,
``capget(2)`` and ``capset(2)``.

Every wrapper checks the return value and raises ``OSError`` with the kernel's ``errno``, so no
caller can forget to look at it. Only the calling *thread* is affected by most ``prctl`` options
and by ``capset``; the callers run right after ``fork()``, while the process has one thread.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

__all__ = [
    "PR_CAPBSET_DROP",
    "PR_CAPBSET_READ",
    "PR_CAP_AMBIENT",
    "PR_CAP_AMBIENT_CLEAR_ALL",
    "PR_GET_DUMPABLE",
    "PR_GET_NAME",
    "PR_GET_NO_NEW_PRIVS",
    "PR_GET_SECCOMP",
    "PR_SET_DUMPABLE",
    "PR_SET_KEEPCAPS",
    "PR_SET_NAME",
    "PR_SET_NO_NEW_PRIVS",
    "PR_SET_VMA",
    "CapSets",
    "capget",
    "capset",
    "prctl",
    "set_thread_name",
]

# <linux/prctl.h>
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_GET_NAME = 16
PR_GET_SECCOMP = 21
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_VMA = 0x53564D41

# <linux/capability.h>: version 3 carries 64 capability bits in two 32-bit words.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_LINUX_CAPABILITY_U32S_3 = 2


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_CapDataArray = _CapData * _LINUX_CAPABILITY_U32S_3

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_prctl.restype = ctypes.c_int
_capget = _libc.capget
_capget.argtypes = (ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))
_capget.restype = ctypes.c_int
_capset = _libc.capset
_capset.argtypes = (ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))
_capset.restype = ctypes.c_int


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """Call ``prctl(2)``; return its non-negative result or raise ``OSError``."""
    return _check(_prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def set_thread_name(name: bytes) -> None:
    """``prctl(PR_SET_NAME)``: the kernel copies at most 15 bytes and a NUL."""
    buffer = ctypes.create_string_buffer(name[:15])
    prctl(PR_SET_NAME, ctypes.addressof(buffer))


@dataclass(frozen=True, slots=True, kw_only=True)
class CapSets:
    """The three capability sets of the calling thread, as 64-bit masks (bit N = capability N)."""

    effective: int
    permitted: int
    inheritable: int


def capget() -> CapSets:
    """Read the calling thread's capability sets."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapDataArray()
    _check(_capget(ctypes.byref(header), data), "capget")
    return CapSets(
        effective=data[0].effective | data[1].effective << 32,
        permitted=data[0].permitted | data[1].permitted << 32,
        inheritable=data[0].inheritable | data[1].inheritable << 32,
    )


def capset(sets: CapSets) -> None:
    """Replace the calling thread's capability sets (they may only shrink without CAP_SETPCAP)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapDataArray()
    for word in range(_LINUX_CAPABILITY_U32S_3):
        shift = 32 * word
        data[word].effective = (sets.effective >> shift) & 0xFFFFFFFF
        data[word].permitted = (sets.permitted >> shift) & 0xFFFFFFFF
        data[word].inheritable = (sets.inheritable >> shift) & 0xFFFFFFFF
    _check(_capset(ctypes.byref(header), data), "capset")
