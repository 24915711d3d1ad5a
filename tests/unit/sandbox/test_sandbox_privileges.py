"""drop_privileges, set_no_new_privs and set_not_dumpable, each checked in a forked child
against /proc/self/status (read by the test itself, not by the code under test)."""

from __future__ import annotations

import ctypes
import os
import pwd
import threading
from pathlib import Path

import pytest

from ocgate.sandbox import (
    AUTH_CAPS,
    CAP_NET_ADMIN,
    Account,
    SandboxError,
    drop_privileges,
    resolve_account,
    sandbox_report,
    set_no_new_privs,
    set_not_dumpable,
)
from tests.unit.sandbox._forked import needs_root, proc_status, run_forked

PR_GET_DUMPABLE = 3
NO_CAPS = "0000000000000000"
DAC_CAPS = f"{(1 << 1) | (1 << 2):016x}"


@pytest.fixture
def nobody() -> Account:
    try:
        pwd.getpwnam("nobody")
    except KeyError:  # pragma: no cover - every common distribution has it
        pytest.skip("no 'nobody' account")
    return resolve_account("nobody", None)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A root-owned 0600 file in a 0700 directory, like /etc/ocserv/ocpasswd."""
    tmp_path.chmod(0o711)
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    path = secrets / "ocpasswd"
    path.write_text("alice:$5$hash\n")
    path.chmod(0o600)
    return path


def _ids(value: int) -> str:
    return "\t".join([str(value)] * 4)


@needs_root
def test_worker_keeps_nothing(nobody: Account, secret_file: Path) -> None:
    def check() -> None:
        drop_privileges(nobody)
        status = proc_status()
        assert status["Uid"] == _ids(nobody.uid)
        assert status["Gid"] == _ids(nobody.gid)
        assert status["Groups"] == str(nobody.gid)
        assert status["CapEff"] == status["CapPrm"] == status["CapInh"] == NO_CAPS
        assert status["CapBnd"] == NO_CAPS
        assert status["CapAmb"] == NO_CAPS
        with pytest.raises(PermissionError):
            os.setuid(0)
        with pytest.raises(PermissionError):
            os.setresgid(0, 0, 0)
        with pytest.raises(PermissionError):
            secret_file.read_text()

    run_forked(check)


@needs_root
def test_auth_keeps_the_dac_capabilities(nobody: Account, secret_file: Path) -> None:
    def check() -> None:
        drop_privileges(nobody, keep_caps=AUTH_CAPS)
        status = proc_status()
        assert status["Uid"] == _ids(nobody.uid)
        assert status["CapEff"] == status["CapPrm"] == DAC_CAPS
        assert status["CapBnd"] == DAC_CAPS
        assert status["CapInh"] == status["CapAmb"] == NO_CAPS
        # CAP_DAC_READ_SEARCH and CAP_DAC_OVERRIDE: read and rewrite the root-owned secret.
        assert secret_file.read_text() == "alice:$5$hash\n"
        secret_file.write_text("alice:$5$other\n")
        assert (secret_file.parent / "ocpasswd").stat().st_uid == 0
        with pytest.raises(PermissionError):
            os.setuid(0)
        with pytest.raises(PermissionError):
            os.chown(secret_file, nobody.uid, nobody.gid)  # CAP_CHOWN was not kept

    run_forked(check)
    assert secret_file.read_text() == "alice:$5$other\n"


@needs_root
def test_keeping_a_capability_while_staying_root() -> None:
    root = Account(name="root", uid=0, gid=0, groups=(0,))

    def check() -> None:
        drop_privileges(root, keep_caps=[CAP_NET_ADMIN])
        status = proc_status()
        assert status["Uid"] == _ids(0)
        assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == f"{1 << 12:016x}"

    run_forked(check)


@needs_root
def test_a_second_drop_back_to_root_is_refused(nobody: Account) -> None:
    root = Account(name="root", uid=0, gid=0, groups=(0,))

    def check() -> None:
        drop_privileges(nobody)
        with pytest.raises(PermissionError):
            drop_privileges(root)
        assert proc_status()["Uid"] == _ids(nobody.uid)

    run_forked(check)


def test_threads_must_not_exist_yet(nobody: Account) -> None:
    def check() -> None:
        stop = threading.Event()
        thread = threading.Thread(target=stop.wait)
        thread.start()
        try:
            with pytest.raises(SandboxError, match="single-threaded"):
                drop_privileges(nobody)
        finally:
            stop.set()
            thread.join()
        assert proc_status()["Uid"] == _ids(os.getuid())

    run_forked(check)


@pytest.mark.parametrize("cap", [-1, 64])
def test_bad_capability_numbers(cap: int) -> None:
    with pytest.raises(ValueError, match="capability"):
        drop_privileges(resolve_account(None, None), keep_caps=[cap])


def test_no_new_privs() -> None:
    def check() -> None:
        assert proc_status()["NoNewPrivs"] == "0"
        set_no_new_privs()
        assert proc_status()["NoNewPrivs"] == "1"

    run_forked(check)


def test_not_dumpable() -> None:
    def check() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1
        set_not_dumpable()
        assert libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0

    run_forked(check)


def test_report_matches_proc_status() -> None:
    report = sandbox_report()
    status = proc_status()
    for key in ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp"):
        assert report[key] == status[key]
    other = sandbox_report(os.getpid())
    assert other.keys() == report.keys()
    assert other["Uid"] == report["Uid"]
