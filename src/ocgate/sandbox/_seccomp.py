"""seccomp-bpf allow-lists for the confined roles (worker, sec-mod, NVM collector).

Theory of operation
-------------------

A filter is an allow-list: every system call not named here fails with ``EPERM``. The default
is an error, not ``KILL``: a library that makes a call nobody foresaw (a new glibc, an OpenSSL
engine probing the system) gets an error it can handle, while one ``SIGSYS`` would end a worker
and every tunnel it serves. A call from a foreign ABI (i386 ``int 0x80``, x32) kills the
process: no legitimate code in a 64-bit Python process makes one, and exploits do.

The list covers what an asyncio Python process with OpenSSL, sqlite3 and msgspec does: memory
management, threads, futexes, signals to itself, clocks, ``getrandom``, file I/O including
sqlite's journal and WAL files (``rename``, ``unlink``, ``fsync``, ``ftruncate``, ``fallocate``),
pipes, ``eventfd``, ``timerfd``, ``epoll``/``poll``/``select``, Unix, INET and netlink sockets
with ``sendmsg``/``recvmsg`` (file descriptor passing with ``SCM_RIGHTS``). It was checked by
running such a workload under the filter (``tests/unit/sandbox``) and with ``strace -f``; the
only calls it saw refused were ``clone3`` (below) and sqlite's ``fchown`` of its journal files,
which sqlite makes only as root and ignores when it fails.

Some calls are allowed only with particular arguments. A rule may compare an argument once, so
each is written as one or more ``ALLOW`` rules over single comparisons:

* ``clone`` only with ``CLONE_THREAD`` and no namespace flag: threads yes, processes no (no
  ``fork``, ``vfork``, ``posix_spawn``). ``clone3`` passes its flags in memory, which a filter
  cannot read, so it fails with ``ENOSYS``; glibc then falls back to ``clone``.
* ``ioctl`` with any request but ``TUNSETIFF``. The kernel reads the request as a 32-bit
  ``unsigned int``, so a plain ``arg1 != TUNSETIFF`` rule could be bypassed with high bits set.
  Instead there is one rule per low bit, allowing requests whose bit *i* differs from
  ``TUNSETIFF``'s bit *i*: together they allow exactly the requests whose low 32 bits differ.
* ``kill`` and ``tgkill`` only towards this process (``asyncio``, ``raise()``, ``abort()``).
* ``socket`` only for ``AF_UNIX``, ``AF_INET``, ``AF_INET6`` and ``AF_NETLINK`` (glibc's
  ``getaddrinfo`` asks rtnetlink for the local addresses); ``socketpair`` only ``AF_UNIX``.
  ``AF_ALG``, ``AF_PACKET``, ``AF_VSOCK`` and the rest stay out, with their kernel attack surface.
* ``prctl`` only for reading state, naming threads and naming memory mappings.
* ``prlimit64`` only on this process.

Never allowed (:data:`NEVER_ALLOWED`, checked at import): ``execve``,
``ptrace`` and ``process_vm_*``, mounting and namespaces, identity changes (``setuid`` and
friends, ``capset``), module and kexec loading, ``bpf``, keyrings, ``perf_event_open``,
``personality``, ``io_uring`` and ``open_by_handle_at`` (which ``CAP_DAC_READ_SEARCH``, kept by
sec-mod, would otherwise turn into a way out of any directory tree).

The filter goes last, after :func:`~ocgate.sandbox.drop_privileges`; it also sets
``NO_NEW_PRIVS`` and is applied to all threads (``SECCOMP_FILTER_FLAG_TSYNC``).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from types import MappingProxyType

from ocgate.sandbox._errors import SandboxError
from ocgate.sandbox._libc import (
    PR_CAPBSET_READ,
    PR_GET_DUMPABLE,
    PR_GET_NAME,
    PR_GET_NO_NEW_PRIVS,
    PR_GET_SECCOMP,
    PR_SET_NAME,
    PR_SET_VMA,
)
from ocgate.sandbox._privileges import set_no_new_privs
from ocgate.sandbox._report import sandbox_report

__all__ = [
    "ALLOWED",
    "CLONE_NAMESPACES",
    "CLONE_THREAD",
    "NEVER_ALLOWED",
    "PRCTL_OPTIONS",
    "SECCOMP_PROFILES",
    "SOCKET_FAMILIES",
    "TUNSETIFF",
    "install_seccomp",
]

#: ``_IOW('T', 202, int)`` from ``<linux/if_tun.h>``: attach to or create a TUN/TAP device.
TUNSETIFF = 0x400454CA

#: ``<linux/sched.h>``: the flag that makes ``clone`` create a thread rather than a process.
CLONE_THREAD = 0x00010000
#: ``CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
#: CLONE_NEWNET``.
CLONE_NAMESPACES = 0x7E020000


def _names(*groups: str) -> frozenset[str]:
    return frozenset(" ".join(groups).split())


#: Allowed unconditionally, in every profile. Names this architecture lacks (``open`` on
#: arm64, say) or this libseccomp does not know are skipped.
ALLOWED = _names(
    # Memory.
    "brk mmap munmap mremap mprotect madvise msync mincore mlock munlock "
    # Threads, futexes, scheduling, process facts.
    "futex futex_waitv set_robust_list get_robust_list rseq set_tid_address arch_prctl "
    "exit exit_group gettid getpid getppid getpgrp getpgid getsid sched_yield "
    "sched_getaffinity sched_getparam sched_getscheduler getcpu getpriority restart_syscall "
    "getrusage times uname sysinfo getrlimit "
    "getuid geteuid getgid getegid getresuid getresgid getgroups "
    # Signals.
    "rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigtimedwait rt_sigsuspend "
    "sigaltstack pause alarm setitimer getitimer "
    # Time and randomness.
    "clock_gettime clock_getres clock_nanosleep nanosleep gettimeofday time getrandom "
    # File descriptors and files.
    "read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 sendfile "
    "close close_range dup dup2 dup3 fcntl lseek fsync fdatasync ftruncate fallocate "
    "fadvise64 flock open openat fstat stat lstat newfstatat statx fstatfs statfs "
    "access faccessat faccessat2 readlink readlinkat getcwd getdents64 umask fchmod "
    "unlink unlinkat rename renameat renameat2 mkdir mkdirat rmdir "
    # Pipes, events and polling.
    "pipe pipe2 eventfd eventfd2 timerfd_create timerfd_settime timerfd_gettime "
    "epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2 "
    "poll ppoll select pselect6 "
    # Sockets (socket and socketpair themselves are conditional, below).
    "bind listen accept accept4 connect shutdown getsockname getpeername "
    "sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg getsockopt setsockopt",
)

#: Must stay out of every profile; building the profiles checks it.
NEVER_ALLOWED = _names(
    "execve execveat fork vfork ptrace process_vm_readv process_vm_writev "
    "mount umount2 chroot pivot_root unshare setns open_tree move_mount fsopen fsmount "
    "setuid setgid setreuid setregid setresuid setresgid setgroups setfsuid setfsgid capset "
    "init_module finit_module delete_module kexec_load kexec_file_load bpf "
    "keyctl add_key request_key perf_event_open personality userfaultfd "
    "io_uring_setup io_uring_enter io_uring_register open_by_handle_at name_to_handle_at "
    "pidfd_open pidfd_getfd kcmp process_madvise tkill rt_sigqueueinfo rt_tgsigqueueinfo "
    "mknod mknodat chown fchown lchown fchownat reboot swapon swapoff syslog acct "
    "clock_settime settimeofday adjtimex clock_adjtime sethostname setdomainname "
    "iopl ioperm seccomp",
)

#: ``prctl`` options allowed: reading state, naming threads and anonymous mappings.
PRCTL_OPTIONS = (
    PR_GET_DUMPABLE,
    PR_SET_NAME,
    PR_GET_NAME,
    PR_GET_SECCOMP,
    PR_CAPBSET_READ,
    PR_GET_NO_NEW_PRIVS,
    PR_SET_VMA,
)
#: Address families ``socket`` may create.
SOCKET_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK)

if ALLOWED & NEVER_ALLOWED:  # pragma: no cover - a packaging mistake, caught at import
    raise AssertionError(f"allowed and forbidden at once: {sorted(ALLOWED & NEVER_ALLOWED)}")

#: Profile name -> unconditional allow-list. sec-mod ("auth") and the NVM collector ("nvm") do
#: the same kinds of I/O as a worker; they differ in capabilities, not in system calls.
SECCOMP_PROFILES: Mapping[str, frozenset[str]] = MappingProxyType(
    {"worker": ALLOWED, "auth": ALLOWED, "nvm": ALLOWED}
)


def install_seccomp(profile: str) -> None:
    """Confine the calling process (all its threads) to the system calls of ``profile``.

    Irreversible; call it last, after :func:`~ocgate.sandbox.drop_privileges`.

    :param profile: ``"worker"``, ``"auth"`` or ``"nvm"``.
    :raises ValueError: unknown profile.
    :raises SandboxError: libseccomp is missing or the kernel refused the filter.
    """
    try:
        allowed = SECCOMP_PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown seccomp profile {profile!r} (known: {', '.join(sorted(SECCOMP_PROFILES))})"
        ) from None
    try:
        from ocgate.sandbox._filter import load_filter
    except (ImportError, RuntimeError) as exc:  # pragma: no cover - libseccomp is a dependency
        raise SandboxError(f"seccomp unavailable: {exc} (install libseccomp2)") from exc
    set_no_new_privs()
    try:
        load_filter(allowed)
    except OSError as exc:
        raise SandboxError(f"seccomp filter {profile!r} refused: {exc}") from exc
    if sandbox_report().get("Seccomp") != "2":
        raise SandboxError(f"seccomp filter {profile!r} did not take effect")
