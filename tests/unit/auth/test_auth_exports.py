from __future__ import annotations

import ocgate.auth


def test_public_api() -> None:
    assert set(ocgate.auth.__all__) == {
        "MAX_PASSWORD_BYTES",
        "MAX_USERNAME_BYTES",
        "AuthResult",
        "PasswordBackend",
        "PlainBackend",
        "select_group",
    }
    for name in ocgate.auth.__all__:
        assert hasattr(ocgate.auth, name)
