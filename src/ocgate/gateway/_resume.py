"""A login under way, moved to another gateway: the state of a :class:`LoginDialog` as bytes.

With several gateways behind a balancer (a shared session store), the next round of a login —
the OTP code after the password, the answer to a RADIUS challenge — may reach another node: a
Cisco client that loses its connection between two rounds connects again, and the balancer
chooses anew. The ``webvpncontext`` cookie then names a dialog the new node does not hold; the
authentication service fetches its state from the shared store and goes on from it.

Only a dialog whose password was accepted (or answered with a RADIUS challenge) and that waits
for a further step is exported (:func:`dialog_state` returns ``None`` otherwise; an OTP-only
user's OTP step is not), so a peer that has not passed a first check cannot make the shared store
hold anything. The state is everything the dialog and its flow hold
but their links to this process (the services, the backends, the connection's certificate
callback), pickled: it is read back only from the store the nodes share, which is private to them
(as the session rows are).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence

from ocgate.gateway._authflow import Step
from ocgate.gateway._login import LoginDialog, LoginServices

__all__ = ["dialog_state", "restore_dialog"]

_DIALOG_LINKS = frozenset({"_services", "_peer_chain", "_flow"})
_FLOW_LINKS = frozenset({"_backends", "_peer_chain"})
_RESUMABLE = (Step.OTP, Step.CHALLENGE)


def dialog_state(dialog: LoginDialog) -> bytes | None:
    """The state of ``dialog`` if another node may continue it, else ``None``."""
    flow = dialog._flow
    pending = flow._pending
    if flow.step not in _RESUMABLE or pending is None:
        return None
    if flow.step is Step.OTP and (pending.ok is None or pending.ok.otp_only):
        return None  # An OTP-only user's first step proves nothing yet: nothing to keep.
    own = {k: v for k, v in vars(dialog).items() if k not in _DIALOG_LINKS}
    steps = {k: v for k, v in vars(flow).items() if k not in _FLOW_LINKS}
    return pickle.dumps((own, steps), protocol=pickle.HIGHEST_PROTOCOL)


def restore_dialog(
    services: LoginServices,
    state: bytes,
    *,
    remote_addr: str,
    local_addr: str | None,
    peer_chain: Callable[[], Sequence[bytes]],
) -> LoginDialog:
    """A dialog of this node that goes on where :func:`dialog_state` left it.

    :raises ValueError: ``state`` is not a dialog's state of this version.
    """
    try:
        own, steps = pickle.loads(state)  # The nodes' private store (module docstring).
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError,
            ImportError) as exc:  # fmt: skip
        raise ValueError(f"not a login's state: {exc}") from None
    if not isinstance(own, dict) or not isinstance(steps, dict):
        raise ValueError("not a login's state")
    dialog = LoginDialog(
        services, remote_addr=remote_addr, local_addr=local_addr, peer_chain=peer_chain
    )
    fresh = vars(dialog)
    if set(own) - set(fresh) or set(steps) - set(vars(dialog._flow)):
        raise ValueError("a login's state from another version")
    fresh.update(own)
    vars(dialog._flow).update(steps)
    return dialog
