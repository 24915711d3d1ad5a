from __future__ import annotations

import ocgate.bans


def test_public_api() -> None:
    assert set(ocgate.bans.__all__) == {
        "MAX_BANS",
        "Admission",
        "AdmissionGate",
        "AdmissionRefused",
        "GatePolicy",
        "BanEntry",
        "BanPolicy",
        "BanTable",
        "SavedBan",
        "ban_key",
        "is_exempt",
    }
    for name in ocgate.bans.__all__:
        assert hasattr(ocgate.bans, name)
