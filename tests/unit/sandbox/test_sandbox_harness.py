"""The fork harness itself must report a failing check; otherwise every test here proves nothing."""

from __future__ import annotations

import os
import signal

import pytest

from tests.unit.sandbox._forked import run_forked


def test_a_failing_check_fails_the_test() -> None:
    def check() -> None:
        raise AssertionError("expected failure")

    with pytest.raises(AssertionError, match="expected failure"):
        run_forked(check)


def test_a_killed_child_fails_the_test() -> None:
    def check() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(pytest.fail.Exception, match="signal 9"):
        run_forked(check)


def test_a_hanging_child_is_stopped() -> None:
    def check() -> None:
        signal.pause()

    with pytest.raises(pytest.fail.Exception, match=f"signal {int(signal.SIGALRM)}"):
        run_forked(check, timeout=1)
