from __future__ import annotations

import ocgate.otp


def test_public_api() -> None:
    assert set(ocgate.otp.__all__) == {
        "DEFAULT_HOTP_LOOKAHEAD",
        "DEFAULT_OTP_FILE",
        "OtpEntry",
        "OtpKind",
        "OtpVerifier",
        "UsersFile",
        "generate_otp",
        "load_users_file",
        "main",
        "parse_users_file",
    }
    for name in ocgate.otp.__all__:
        assert hasattr(ocgate.otp, name)
