"""The public surface of ocgate.dtls (STYLE rule 10)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

import ocgate.dtls
from ocgate.dtls import TRANSITIONS, DtlsState, HandshakeCompleted


def test_all_is_exact_and_importable() -> None:
    exported = set(ocgate.dtls.__all__)
    assert len(exported) == len(ocgate.dtls.__all__)
    public = {n for n in vars(ocgate.dtls) if not n.startswith("_")} - {"annotations", "events"}
    assert public == exported
    assert {
        "DtlsAssociation",
        "LegacyMode",
        "PskMode",
        "CookieJar",
        "peek_client_hello_untrusted",
        "negotiate_dtls",
        "DtlsOffer",
        "HandshakeCompleted",
        "DataReceived",
        "AssociationClosed",
        "HandshakeFailed",
    } <= exported


def test_events_are_frozen_and_slotted() -> None:
    event = HandshakeCompleted("x")
    assert not hasattr(event, "__dict__")
    with pytest.raises(FrozenInstanceError):
        event.cipher_description = "y"  # type: ignore[misc]


def test_transition_table_reaches_established_in_both_kinds() -> None:
    for kind in ("legacy", "psk"):
        state, steps = DtlsState.SERVER_EXPECT_CLIENT_HELLO, 0
        while state is not DtlsState.ESTABLISHED:
            (state,) = [nxt for (k, s, _), nxt in TRANSITIONS.items() if k == kind and s is state]
            steps += 1
        assert steps == (2 if kind == "legacy" else 3)
