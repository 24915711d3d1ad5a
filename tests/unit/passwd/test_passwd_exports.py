from __future__ import annotations

import ocgate.passwd


def test_public_api() -> None:
    assert set(ocgate.passwd.__all__) == {
        "CRYPT_ALPHABET",
        "DEFAULT_PASSWD_FILE",
        "LOCK_PREFIX",
        "NO_GROUP",
        "PasswdEntry",
        "format_passwd",
        "hash_password",
        "load_passwd",
        "main",
        "parse_groups",
        "parse_passwd",
        "update_passwd_file",
        "verify_password",
    }
    for name in ocgate.passwd.__all__:
        assert hasattr(ocgate.passwd, name)
