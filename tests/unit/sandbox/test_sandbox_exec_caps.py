"""A role's helper interpreters keep exactly the capabilities the role passes on across exec."""

from __future__ import annotations

import subprocess

from ocgate.sandbox import CAP_DAC_READ_SEARCH, Account, drop_privileges, set_no_new_privs
from ocgate.sandbox._caps import keep_across_exec

from ._forked import needs_root, run_forked

NOBODY = Account(name="nobody", uid=65534, gid=65534, groups=(65534,))


def _child_caps() -> dict[str, int]:
    out = subprocess.run(
        ["grep", "^Cap", "/proc/self/status"], capture_output=True, text=True, check=True
    ).stdout
    return {k: int(v, 16) for k, v in (line.split(":\t") for line in out.splitlines())}


@needs_root
def test_an_exec_keeps_only_the_passed_capability() -> None:
    def check() -> None:
        drop_privileges(NOBODY, keep_caps=[CAP_DAC_READ_SEARCH])
        set_no_new_privs()
        before = _child_caps()
        assert before["CapEff"] == 0, before  # A fresh exec without ambient: nothing.
        keep_across_exec([CAP_DAC_READ_SEARCH])
        after = _child_caps()
        assert after["CapEff"] == 1 << CAP_DAC_READ_SEARCH, after
        assert after["CapAmb"] == 1 << CAP_DAC_READ_SEARCH, after

    run_forked(check)


@needs_root
def test_a_capability_not_held_cannot_be_passed_on() -> None:
    def check() -> None:
        drop_privileges(NOBODY)
        try:
            keep_across_exec([CAP_DAC_READ_SEARCH])
        except ValueError:
            return
        raise AssertionError("an unheld capability was passed on")

    run_forked(check)
