from __future__ import annotations

import ocgate.auth


def test_public_api() -> None:
    assert set(ocgate.auth.__all__) == {
        "MAX_PASSWORD_BYTES",
        "MAX_USERNAME_BYTES",
        "OTP_WINDOW",
        "AuthAlternatives",
        "AuthBackends",
        "AuthResult",
        "Counters",
        "LoginContext",
        "PasswordBackend",
        "PasswordOk",
        "PlainBackend",
        "SessionAccounting",
        "build_accounting",
        "build_auth_backends",
        "select_group",
        "terminate_cause",
    }
    for name in ocgate.auth.__all__:
        assert hasattr(ocgate.auth, name)
