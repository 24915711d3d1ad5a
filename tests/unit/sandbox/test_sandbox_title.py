from __future__ import annotations

import shutil
import subprocess

import pytest

from ocgate.sandbox import set_role
from tests.unit.sandbox._forked import run_forked


def _comm() -> str:
    with open("/proc/self/comm", encoding="utf-8") as comm:
        return comm.read().rstrip("\n")


def _cmdline() -> bytes:
    with open("/proc/self/cmdline", "rb") as cmdline:
        return cmdline.read()


def test_title_and_comm() -> None:
    def check() -> None:
        set_role("worker 2")
        assert _comm() == "ocgate-worker"
        assert _cmdline().startswith(b"ocgate: worker 2")

    run_forked(check)


def test_comm_is_cut_to_fifteen_bytes_and_can_be_given() -> None:
    def check() -> None:
        set_role("supervisor")
        assert _comm() == "ocgate-supervis"
        set_role("sec-mod", comm="ocgate-sm")
        assert _comm() == "ocgate-sm"
        assert _cmdline().startswith(b"ocgate: sec-mod")

    run_forked(check)


@pytest.mark.skipif(shutil.which("ps") is None, reason="needs ps (procps)")
def test_ps_shows_the_role() -> None:
    def check() -> None:
        import os

        set_role("nvm collector")
        pid = str(os.getpid())
        # ps runs in a grandchild; this child is not sandboxed, so it may fork.
        comm = subprocess.run(["ps", "-o", "comm=", "-p", pid], capture_output=True, text=True)
        args = subprocess.run(["ps", "-o", "args=", "-p", pid], capture_output=True, text=True)
        assert comm.stdout.strip() == "ocgate-nvm"
        assert args.stdout.strip() == "ocgate: nvm collector"

    run_forked(check)


@pytest.mark.parametrize("title", ["", "   ", "bad\x1btitle", "nul\x00"])
def test_bad_titles_are_refused_before_anything_changes(title: str) -> None:
    with pytest.raises(ValueError, match="printable"):
        set_role(title)
