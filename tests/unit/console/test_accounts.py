"""The console's administrators (``admin-passwd`` + ``admin-otp``), its API token file, and
the configuration keys that switch it on (issue 16 §1)."""

from __future__ import annotations

import base64
from pathlib import Path

import pyotp
import pytest

from ocgate.config import load_config
from ocgate.console._accounts import AdminAccounts, check_admin_files
from ocgate.console._backend import AdminAuthError, AdminIdentity
from ocgate.console._tokens import load_admin_tokens, token_digest
from ocgate.errors import ConfigError
from ocgate.passwd import PasswdEntry, format_passwd, hash_password
from tests.unit.gateway.conftest import config_dir, make_config_text

SECRET = bytes(range(20))
B32 = base64.b32encode(SECRET).decode()
NOW = 1_800_000_000.0

__all__ = ["config_dir"]


def _admins(tmp_path: Path, *lines: tuple[str, str, str]) -> tuple[str, str]:
    entries = {
        name: PasswdEntry(username=name, groups=(role,) if role else (), hash=hash_password(pw))
        for name, role, pw in lines
    }
    passwd = tmp_path / "admin-passwd"
    passwd.write_text("# administrators\n" + format_passwd(entries))
    otp = tmp_path / "admin-otp"
    otp.write_text("".join(f"HOTP/T30\t{name}\t-\t{SECRET.hex()}\n" for name, _, _ in lines))
    return str(passwd), str(otp)


def _code(at: float = NOW) -> str:
    return pyotp.TOTP(B32).at(at)


def test_roles_come_from_the_group_field(tmp_path: Path) -> None:
    passwd, otp = _admins(tmp_path, ("root", "admin", "pw1"), ("viewer", "readonly", "pw2"))
    assert check_admin_files(passwd, otp) == {"root": "admin", "viewer": "readonly"}


@pytest.mark.parametrize("role", ["", "wheel", "admin,readonly"])
def test_an_account_without_one_known_role_names_its_line(tmp_path: Path, role: str) -> None:
    entries = {
        "root": PasswdEntry("root", ("admin",), hash_password("pw")),
        "bad": PasswdEntry("bad", tuple(g for g in role.split(",") if g), hash_password("pw")),
    }
    passwd = tmp_path / "admin-passwd"
    passwd.write_text(format_passwd(entries))
    otp = tmp_path / "admin-otp"
    otp.write_text(f"HOTP/T30 root - {SECRET.hex()}\nHOTP/T30 bad - {SECRET.hex()}\n")
    with pytest.raises(ConfigError) as raised:
        check_admin_files(str(passwd), str(otp))
    assert raised.value.file == str(passwd)
    assert raised.value.line == 2
    assert "admin" in str(raised.value.expected)


def test_an_account_without_a_totp_entry_is_refused(tmp_path: Path) -> None:
    passwd, otp = _admins(tmp_path, ("root", "admin", "pw"))
    Path(otp).write_text(f"HOTP root - {SECRET.hex()}\n")  # counter-based: not TOTP
    with pytest.raises(ConfigError, match="no TOTP entry") as raised:
        check_admin_files(passwd, otp)
    assert raised.value.file == otp


def test_password_and_code_are_both_needed_and_a_code_works_once(tmp_path: Path) -> None:
    passwd, otp = _admins(tmp_path, ("root", "admin", "right"), ("viewer", "readonly", "pw"))
    accounts = AdminAccounts(passwd, otp)
    with pytest.raises(AdminAuthError):
        accounts.verify("root", "wrong", _code(), now=NOW, source="192.0.2.1")
    with pytest.raises(AdminAuthError):
        accounts.verify("root", "right", "000000" if _code() != "000000" else "111111",
                        now=NOW, source="192.0.2.1")  # fmt: skip
    with pytest.raises(AdminAuthError):
        accounts.verify("nobody", "right", _code(), now=NOW, source="192.0.2.1")
    who = accounts.verify("root", "right", _code(), now=NOW, source="192.0.2.1")
    assert who == AdminIdentity(username="root", role="admin")
    with pytest.raises(AdminAuthError):  # the same code again: replayed
        accounts.verify("root", "right", _code(), now=NOW, source="192.0.2.1")
    viewer = accounts.verify("viewer", "pw", _code(NOW + 30), now=NOW + 30, source="192.0.2.1")
    assert viewer.role == "readonly"


def test_every_refusal_says_the_same(tmp_path: Path) -> None:
    passwd, otp = _admins(tmp_path, ("root", "admin", "right"))
    accounts = AdminAccounts(passwd, otp)
    messages = set()
    for user, password in (("root", "wrong"), ("ghost", "right")):
        with pytest.raises(AdminAuthError) as raised:
            accounts.verify(user, password, _code(), now=NOW, source="192.0.2.1")
        messages.add(str(raised.value))
    assert len(messages) == 1
    assert "right" not in repr(accounts)


def test_token_file_roles_and_errors(tmp_path: Path) -> None:
    good = "a" * 32
    path = tmp_path / "tokens"
    path.write_text(f"# tokens\n{good}\n{'b' * 20} admin\n\n{'c' * 16} readonly\n")
    tokens = load_admin_tokens(str(path))
    assert tokens == {
        token_digest(good): "readonly",
        token_digest("b" * 20): "admin",
        token_digest("c" * 16): "readonly",
    }
    path.write_text(f"{good}\nshort-secret-x\n")
    with pytest.raises(ConfigError) as raised:
        load_admin_tokens(str(path))
    assert (raised.value.line, raised.value.key) == (2, "admin-token-file")
    assert "short-secret-x" not in str(raised.value)
    path.write_text(f"{good} root\n")
    with pytest.raises(ConfigError, match="malformed") as raised:
        load_admin_tokens(str(path))
    assert raised.value.line == 1


def test_admin_listen_needs_both_files(config_dir: Path) -> None:
    config = config_dir / "ocserv.conf"
    config.write_text(make_config_text(config_dir, "admin-listen = 127.0.0.1:8443\n"))
    with pytest.raises(ConfigError, match="needs admin-passwd") as raised:
        load_config(str(config))
    assert (raised.value.key, raised.value.line) == ("admin-listen", 6)


def test_the_console_keys_load(config_dir: Path) -> None:
    passwd, otp = _admins(config_dir, ("root", "admin", "pw"))
    config = config_dir / "ocserv.conf"
    extra = (
        f"admin-listen = 127.0.0.1:8443\nadmin-passwd = {passwd}\nadmin-otp = {otp}\n"
        f"admin-audit-log = {config_dir}/audit.log\n"
    )
    config.write_text(make_config_text(config_dir, extra))
    loaded = load_config(str(config))
    assert loaded.admin_listen == "127.0.0.1:8443"
    assert (loaded.admin_passwd, loaded.admin_otp) == (passwd, otp)
    Path(passwd).write_text(Path(passwd).read_text().replace(":admin:", ":wheel:"))
    with pytest.raises(ConfigError) as raised:
        load_config(str(config))
    assert raised.value.file == passwd
