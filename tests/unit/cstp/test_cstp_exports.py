"""The public surface of ocgate.cstp (STYLE rule 10)."""

from __future__ import annotations

import ocgate.cstp


def test_all_is_exact_and_importable() -> None:
    exported = set(ocgate.cstp.__all__)
    assert len(exported) == len(ocgate.cstp.__all__)
    for name in exported:
        assert getattr(ocgate.cstp, name) is not None
    public = {n for n in vars(ocgate.cstp) if not n.startswith("_")} - {"annotations", "events"}
    assert public == exported
    assert {
        "PacketType",
        "Frame",
        "FRAME_HEADER",
        "encode_frame",
        "FrameDecoder",
        "CstpConnection",
        "PacketsReceived",
        "ByeReceived",
        "PeerDead",
        "IdleTimeout",
        "SessionTimeout",
        "ProtocolFailed",
        "MtuResult",
        "compute_mtu",
        "parse_mtu_headers_untrusted",
    } <= exported


def test_events_are_frozen_and_slotted() -> None:
    from dataclasses import FrozenInstanceError

    import pytest

    event = ocgate.cstp.PeerDead()
    assert not hasattr(event, "__dict__")
    with pytest.raises(FrozenInstanceError):
        ocgate.cstp.ByeReceived(code=None, message="").message = "x"  # type: ignore[misc]
