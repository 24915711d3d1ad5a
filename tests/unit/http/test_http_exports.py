"""The public surface of ocgate.http (STYLE rule 10)."""

from __future__ import annotations

import ocgate.http


def test_exports() -> None:
    assert sorted(ocgate.http.__all__) == [
        "CamouflageGate",
        "ConnectionClosed",
        "FrontDoor",
        "HttpEvent",
        "HttpLimits",
        "ProtocolViolation",
        "Request",
        "Response",
        "TimedOut",
        "with_headers",
    ]
    for name in ocgate.http.__all__:
        assert getattr(ocgate.http, name) is not None
