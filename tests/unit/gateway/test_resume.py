"""A login's next round on another gateway: a dialog's state as bytes (issue 14 §1).

The end-to-end path (the state kept in Redis under the ``webvpncontext`` token, taken by the other
node) is in ``tests/unit/daemon/test_shared_store.py``.
"""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

import pytest

from ocgate.gateway._resume import dialog_state, restore_dialog

from .test_login_flow import INIT, Dialog, Fake, _post, _reply


def test_a_login_waiting_for_its_otp_code_goes_on_in_another_dialog(config_dir: Path) -> None:
    first = Dialog(config_dir, Fake(otp_codes={"alice": "123456"}))
    first.send(_post(INIT.format(extra="")))
    assert dialog_state(first.dialog) is None  # No password accepted yet: nothing to move.
    first.send(_reply("<username>alice</username><password>alicepass</password>"))
    state = dialog_state(first.dialog)
    assert state is not None

    other = Dialog(config_dir, Fake(otp_codes={"alice": "123456"}))  # Another node's services.
    moved = restore_dialog(
        other.dialog._services, state, remote_addr="198.18.0.2", local_addr=None, peer_chain=tuple
    )
    done = asyncio.run(moved.handle(_reply("<secondary_password>123456</secondary_password>")))
    assert b"<session-token>" in done.body
    assert other.store.sessions()[0].username == "alice"
    assert first.store.sessions() == []


def test_a_wrong_code_after_the_move_counts_as_before(config_dir: Path) -> None:
    first = Dialog(config_dir, Fake(otp_codes={"alice": "123456"}))
    first.send(_post(INIT.format(extra="")))
    first.send(_reply("<username>alice</username><password>alicepass</password>"))
    first.send(_reply("<secondary_password>000000</secondary_password>"))  # One failure here.
    state = dialog_state(first.dialog)
    assert state is not None
    other = Dialog(config_dir, Fake(otp_codes={"alice": "123456"}))
    moved = restore_dialog(
        other.dialog._services, state, remote_addr="198.18.0.2", local_addr=None, peer_chain=tuple
    )
    assert moved._failures == 1
    again = asyncio.run(moved.handle(_reply("<secondary_password>111111</secondary_password>")))
    assert b'<auth id="challenge">' in again.body  # Still the OTP step, a second failure.
    assert moved._failures == 2


@pytest.mark.parametrize(
    "state",
    [
        b"",
        b"not a pickle",
        pickle.dumps(["a", "list"]),
        pickle.dumps(({"_no_such_attribute": 1}, {})),
    ],
)
def test_a_state_that_is_not_a_dialog_s_is_refused(config_dir: Path, state: bytes) -> None:
    services = Dialog(config_dir, Fake()).dialog._services
    with pytest.raises(ValueError, match="login's state"):
        restore_dialog(services, state, remote_addr="198.18.0.2", local_addr=None, peer_chain=tuple)
