"""install_seccomp: the workload of a confined process still runs; the dangerous calls fail with
EPERM instead of killing the process."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import socket
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyseccomp
import pytest

from ocgate.errors import ConfigError
from ocgate.sandbox import (
    AUTH_CAPS,
    SECCOMP_PROFILES,
    Account,
    SandboxError,
    drop_privileges,
    install_seccomp,
    resolve_account,
    sandbox_report,
    set_no_new_privs,
    set_not_dumpable,
    set_role,
)
from ocgate.sandbox._filter import syscall_known
from ocgate.sandbox._seccomp import ALLOWED, NEVER_ALLOWED, TUNSETIFF
from tests.unit.sandbox._forked import needs_root, proc_status, run_forked
from tests.unit.sandbox._workload import TlsIdentity, make_tls_identity, run_workload

IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
PTRACE_ATTACH = 16
NO_SUCH_PID = 2**22 + 1  # above the default and the maximum pid_max: ESRCH if it got through

MUST_BE_DENIED = {
    *("execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "personality"),
    *("mount", "umount2", "chroot", "pivot_root", "unshare", "setns"),
    *("setuid", "setgid", "setresuid", "setresgid", "setgroups"),
    *("init_module", "finit_module", "kexec_load", "bpf", "perf_event_open"),
    *("keyctl", "add_key", "request_key"),
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _raw_syscall(name: str, *args: int) -> int:
    """Call ``name`` by number with integer arguments; return ``errno`` (0 on success)."""
    number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    ctypes.set_errno(0)
    result = _libc.syscall(ctypes.c_long(number), *(ctypes.c_ulong(a) for a in args))
    return ctypes.get_errno() if result == -1 else 0


@pytest.fixture(scope="module")
def identity() -> TlsIdentity:
    return make_tls_identity()


def _assert_confined() -> None:
    status = proc_status()
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == "1"
    assert sandbox_report()["Seccomp"] == "2"


def _assert_denials() -> None:
    with pytest.raises(PermissionError):
        os.execv("/bin/true", ["true"])
    with pytest.raises(PermissionError):
        os.fork()
    with pytest.raises(PermissionError):
        os.kill(os.getppid(), 0)
    with pytest.raises(PermissionError):
        os.chroot("/")
    with pytest.raises(PermissionError):
        socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0)
    # Harmless arguments: without the filter these would succeed or fail with another errno.
    assert _raw_syscall("ptrace", PTRACE_ATTACH, NO_SUCH_PID, 0, 0) == errno.EPERM
    assert _raw_syscall("unshare", 0) == errno.EPERM
    assert _raw_syscall("personality", 0xFFFFFFFF) == errno.EPERM  # a query
    assert _raw_syscall("setresuid", 2**32 - 1, 2**32 - 1, 2**32 - 1) == errno.EPERM  # no-op
    assert _raw_syscall("setgroups", 0, 0) == errno.EPERM
    assert _raw_syscall("keyctl", 0, 0) == errno.EPERM
    assert _raw_syscall("bpf", 0, 0, 0) == errno.EPERM
    assert _raw_syscall("clone3", 0, 0) == errno.ENOSYS  # glibc falls back to clone


def test_profiles_exclude_the_dangerous_calls() -> None:
    assert set(SECCOMP_PROFILES) == {"worker", "auth", "nvm"}
    for allowed in SECCOMP_PROFILES.values():
        assert not allowed & MUST_BE_DENIED
        assert not allowed & NEVER_ALLOWED
    assert MUST_BE_DENIED <= NEVER_ALLOWED
    for name in ("ioctl", "clone", "clone3", "socket", "kill", "prctl"):
        assert name not in ALLOWED  # conditional rules only


def test_the_core_calls_resolve_here() -> None:
    for name in ("read", "openat", "epoll_wait", "futex", "rseq", "getrandom", "recvmsg"):
        assert syscall_known(name), name


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="unknown seccomp profile 'browser'"):
        install_seccomp("browser")


@pytest.mark.parametrize("profile", sorted(SECCOMP_PROFILES))
def test_workload_runs_and_dangerous_calls_fail(
    profile: str, tmp_path: Path, identity: TlsIdentity
) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()

    def check() -> None:
        install_seccomp(profile)
        _assert_confined()
        run_workload(tmp_path / "first", identity)
        _assert_denials()
        # Refused calls left the process intact: the same work runs again.
        run_workload(tmp_path / "second", identity)

    run_forked(check)


def test_installing_a_second_filter_is_refused() -> None:
    def check() -> None:
        install_seccomp("worker")
        with pytest.raises(SandboxError, match="refused"):
            install_seccomp("auth")  # the seccomp() call itself is not allowed
        _assert_confined()

    run_forked(check)


@needs_root
@pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun")
def test_tunsetiff_is_refused_even_with_cap_net_admin() -> None:
    request = struct.pack("16sH22x", b"", IFF_TUN | IFF_NO_PI)

    def check() -> None:
        with open("/dev/net/tun", "r+b", buffering=0) as control:
            fcntl.ioctl(control, TUNSETIFF, request)  # works before the filter: root
        install_seccomp("worker")
        with open("/dev/net/tun", "r+b", buffering=0) as tun:
            with pytest.raises(PermissionError) as info:
                fcntl.ioctl(tun, TUNSETIFF, request)
            assert info.value.errno == errno.EPERM
            # The kernel reads the request as 32 bits: high bits set must not get past the filter.
            buffer = ctypes.create_string_buffer(request)
            for high in (1 << 32, 0xFFFFFFFF << 32):
                request_64 = high | TUNSETIFF
                result = _raw_syscall("ioctl", tun.fileno(), request_64, ctypes.addressof(buffer))
                assert result == errno.EPERM, hex(request_64)
        assert proc_status()["Seccomp"] == "2"

    run_forked(check)


@pytest.fixture
def worker_dir() -> Iterator[Path]:
    """A directory the worker account owns, outside pytest's root-only 0700 tree."""
    account = _nobody()
    with tempfile.TemporaryDirectory(prefix="ocgate-sandbox-") as name:
        os.chown(name, account.uid, account.gid)
        yield Path(name)


@needs_root
def test_worker_sequence(worker_dir: Path, identity: TlsIdentity) -> None:
    account = _nobody()

    def check() -> None:
        set_role("worker 2")
        drop_privileges(account)
        set_not_dumpable()
        set_no_new_privs()
        install_seccomp("worker")
        status = proc_status()
        assert status["Uid"] == "\t".join([str(account.uid)] * 4)
        assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0" * 16
        assert (status["Seccomp"], status["NoNewPrivs"]) == ("2", "1")
        assert status["Name"] == "ocgate-worker"
        run_workload(worker_dir, identity)
        _assert_denials()

    run_forked(check)


@needs_root
def test_auth_sequence_reads_and_writes_root_only_files(tmp_path: Path) -> None:
    account = _nobody()
    secret = tmp_path / "otp-users"
    secret.write_text("HOTP/T30 alice - 3132333435363738393031323334353637383930\n")
    secret.chmod(0o600)
    tmp_path.chmod(0o700)

    def check() -> None:
        set_role("sec-mod", comm="ocgate-sm")
        drop_privileges(account, keep_caps=AUTH_CAPS)
        set_not_dumpable()
        install_seccomp("auth")
        assert proc_status()["CapEff"] == f"{0b110:016x}"
        assert secret.read_text().startswith("HOTP/T30 alice")
        new = tmp_path / "otp-users.new"  # write-and-rename, as OTP state is saved
        new.write_text("HOTP/T30 alice - 31323334 1 123456\n")
        new.replace(secret)
        with pytest.raises(PermissionError):
            os.setuid(0)
        _assert_denials()

    run_forked(check)
    assert secret.read_text().endswith("123456\n")


def _nobody() -> Account:
    try:
        return resolve_account("nobody", None)
    except ConfigError:  # pragma: no cover - every common distribution has it
        pytest.skip("no 'nobody' account")


def test_signals_to_self_still_work() -> None:
    def check() -> None:
        install_seccomp("worker")
        received: list[int] = []
        signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))
        signal.raise_signal(signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR2)
        assert received == [signal.SIGUSR2, signal.SIGUSR2]

    run_forked(check)
