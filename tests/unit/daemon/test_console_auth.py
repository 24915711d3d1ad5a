"""sec-mod's side of the web console: administrators' logins and edits of the VPN password and
OTP files, through the typed messages the console sends (issue 16 §2 users and OTP pages)."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path

import pyotp
import pytest

from ocgate.config import Config, load_config
from ocgate.daemon._console_auth import ConsoleRequests
from ocgate.ipc import messages as m
from ocgate.otp._usersfile import load_users_file
from ocgate.otp._verify import OtpVerifier
from ocgate.passwd import PasswdEntry, format_passwd, hash_password, load_passwd
from ocgate.passwd._hash import verify_password
from tests.unit.gateway.conftest import make_config_text

SECRET = bytes(range(20))


def _config(directory: Path, *, otp: bool = True, per_user: bool = False) -> Config:
    from tests.unit.tls.test_tls_endpoint import _write_pair

    _write_pair(directory)
    (directory / "ocpasswd").write_text(
        format_passwd({"alice": PasswdEntry("alice", ("eng",), hash_password("alicepass"))})
    )
    admins = directory / "admin-passwd"
    admins.write_text(format_passwd({"root": PasswdEntry("root", ("admin",), hash_password("pw"))}))
    (directory / "admin-otp").write_text(f"HOTP/T30 root - {SECRET.hex()}\n")
    text = make_config_text(directory)
    if otp:
        (directory / "otp").write_text("")
        text = text.replace("ocpasswd]", f"ocpasswd,otp={directory}/otp]")
    text += (
        f"admin-listen = 127.0.0.1:8443\nadmin-passwd = {admins}\n"
        f"admin-otp = {directory}/admin-otp\n"
    )
    if per_user:
        (directory / "users").mkdir()
        (directory / "users" / "alice").write_text("route = 10.1.0.0/16\n")
        text += f"config-per-user = {directory}/users\n"
    path = directory / "ocserv.conf"
    path.write_text(text)
    return load_config(str(path))


def _ask(requests: ConsoleRequests, message: m.Message) -> m.Message | None:
    return asyncio.run(requests.handle(message, []))


def _edit(requests: ConsoleRequests, action: str, name: str, **kw: object) -> m.Message | None:
    return _ask(requests, m.VpnUserEdit(action=action, username=name, **kw))  # type: ignore[arg-type]


def test_admin_login_answers_a_verdict_or_a_failure(tmp_path: Path) -> None:
    requests = ConsoleRequests(_config(tmp_path))
    code = pyotp.TOTP(base64.b32encode(SECRET).decode()).now()
    bad = _ask(requests, m.AdminLogin(username="root", password="no", code=code, source="::1"))
    assert isinstance(bad, m.Failed)
    good = _ask(requests, m.AdminLogin(username="root", password="pw", code=code, source="::1"))
    assert good == m.AdminVerdict(username="root", role="admin")
    assert "pw" not in repr(m.AdminLogin(username="root", password="pw", code="1", source="s"))


def test_add_lock_unlock_password_groups_delete(tmp_path: Path) -> None:
    requests = ConsoleRequests(_config(tmp_path))
    passwd = tmp_path / "ocpasswd"
    assert _edit(requests, "add", "bob", password="bobpass", groups=["eng", " ops "]) == m.Ok()
    entry = load_passwd(passwd)["bob"]
    assert entry.groups == ("eng", "ops")
    verify_password("bobpass", entry.hash)
    again = _edit(requests, "add", "bob", password="x")
    assert isinstance(again, m.Failed)
    assert "exists" in again.message
    assert _edit(requests, "lock", "bob") == m.Ok()
    assert load_passwd(passwd)["bob"].locked
    assert _edit(requests, "password", "bob", password="newpass") == m.Ok()
    assert load_passwd(passwd)["bob"].locked, "a new password keeps the lock"
    assert _edit(requests, "unlock", "bob") == m.Ok()
    verify_password("newpass", load_passwd(passwd)["bob"].hash)
    assert _edit(requests, "groups", "bob", groups=["ops"]) == m.Ok()
    assert load_passwd(passwd)["bob"].groups == ("ops",)
    listed = _ask(requests, m.VpnUsersQuery())
    assert isinstance(listed, m.VpnUsersList)
    assert listed.editable
    assert listed.otp_available
    assert [(row.username, row.locked) for row in listed.users] == [
        ("alice", False),
        ("bob", False),
    ]
    assert _edit(requests, "delete", "bob") == m.Ok()
    assert "bob" not in load_passwd(passwd)
    assert isinstance(_edit(requests, "delete", "bob"), m.Failed)


@pytest.mark.parametrize("name", ["", "..", "a/b", "a:b", "a b", "x" * 65])
def test_bad_user_names_are_refused(tmp_path: Path, name: str) -> None:
    requests = ConsoleRequests(_config(tmp_path, per_user=True))
    for action in ("add", "config"):
        reply = _edit(requests, action, name, password="pw")
        assert isinstance(reply, m.Failed), (action, name)


def test_empty_or_long_passwords_are_refused(tmp_path: Path) -> None:
    requests = ConsoleRequests(_config(tmp_path))
    for password in ("", "p" * 65):
        assert isinstance(_edit(requests, "add", "bob", password=password), m.Failed)
    assert "bob" not in load_passwd(tmp_path / "ocpasswd")


def test_enrolled_secret_logs_in_once_and_reset_removes_it(tmp_path: Path) -> None:
    requests = ConsoleRequests(_config(tmp_path))
    enrolled = _ask(requests, m.OtpEnroll(username="alice"))
    assert isinstance(enrolled, m.OtpSecret)
    assert enrolled.uri.startswith("otpauth://totp/")
    assert "alice" in enrolled.uri
    assert enrolled.secret not in repr(enrolled)
    verifier = OtpVerifier(str(tmp_path / "otp"))
    now = time.time()
    verifier.verify("alice", pyotp.TOTP(enrolled.secret).at(now), now)
    listed = _ask(requests, m.VpnUsersQuery())
    assert isinstance(listed, m.VpnUsersList)
    assert listed.users[0].otp
    assert _edit(requests, "otp-reset", "alice") == m.Ok()
    assert not load_users_file(str(tmp_path / "otp")).entries_for("alice")
    assert isinstance(_ask(requests, m.OtpEnroll(username="ghost")), m.Failed)


def test_no_otp_file_no_enrollment(tmp_path: Path) -> None:
    requests = ConsoleRequests(_config(tmp_path, otp=False))
    reply = _ask(requests, m.OtpEnroll(username="alice"))
    assert isinstance(reply, m.Failed)
    assert "OTP file" in reply.message


def test_per_user_config_is_shown(tmp_path: Path) -> None:
    requests = ConsoleRequests(_config(tmp_path, per_user=True))
    assert _edit(requests, "config", "alice") == m.UserConfigText(text="route = 10.1.0.0/16\n")
    assert _edit(requests, "config", "bob") == m.UserConfigText(text="")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files another owner")
def test_an_edit_keeps_the_files_owner(tmp_path: Path) -> None:
    # sec-mod (nobody + CAP_CHOWN) edits a root-owned file; here root edits a file owned by
    # someone else: either way the new file must keep the old owner, not take the writer's.
    requests = ConsoleRequests(_config(tmp_path))
    passwd = tmp_path / "ocpasswd"
    os.chown(passwd, 65534, 65534)
    os.chmod(passwd, 0o640)
    assert _edit(requests, "lock", "alice") == m.Ok()
    st = os.stat(passwd)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o640)
    assert load_passwd(passwd)["alice"].locked
