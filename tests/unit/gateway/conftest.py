from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.tls.test_tls_endpoint import _write_pair


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A directory with a certificate, a key and a password file (alice/alicepass in group eng)."""
    from ocgate.passwd import PasswdEntry, format_passwd, hash_password

    _write_pair(tmp_path)
    entries = {
        "alice": PasswdEntry(username="alice", groups=("eng",), hash=hash_password("alicepass")),
        "carol": PasswdEntry(username="carol", groups=(), hash="!" + hash_password("carolpass")),
    }
    (tmp_path / "ocpasswd").write_text(format_passwd(entries))
    return tmp_path


def make_config_text(directory: Path, extra: str = "") -> str:
    return (
        f'auth = "plain[passwd={directory}/ocpasswd]"\n'
        f"server-cert = {directory}/cert.pem\n"
        f"server-key = {directory}/key.pem\n"
        "socket-file = /run/ocgate-test.socket\n"
        "device = vpns\n" + extra
    )
