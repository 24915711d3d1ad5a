from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from ocgate.auth import AuthResult, PasswordBackend, PlainBackend, _plain
from ocgate.errors import AuthFailed, ConfigError
from ocgate.passwd import (
    PasswdEntry,
    hash_password,
    load_passwd,
    update_passwd_file,
    verify_password,
)

PW_ALICE = "wonderland"
H_ALICE = hash_password(PW_ALICE)
H_BOB = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"  # noqa: E501 - "Hello world!" (Drepper)


@pytest.fixture
def passwd(tmp_path: Path) -> Path:
    path = tmp_path / "ocpasswd"
    path.write_text(
        f"alice:admins,users:{H_ALICE}\n"
        f"bob:*:{H_BOB}\n"
        f"locked:ops:!{H_ALICE}\n"
        "otponly:*:\n"
        f"badhash:*:abJnggxhB/yWI\n"
    )
    return path


@pytest.fixture
def backend(passwd: Path) -> PlainBackend:
    return PlainBackend(str(passwd))


@pytest.fixture
def dummy_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every hash verification the backend performs."""
    calls: list[str] = []
    real = verify_password

    def spy(password: str, hashed: str) -> None:
        calls.append(hashed)
        real(password, hashed)

    monkeypatch.setattr(_plain, "verify_password", spy)
    return calls


def test_success(backend: PlainBackend) -> None:
    assert backend.authenticate("alice", PW_ALICE) == AuthResult("alice", ("admins", "users"))
    assert backend.authenticate("bob", "Hello world!") == AuthResult("bob", ())


def test_satisfies_protocol(backend: PlainBackend) -> None:
    as_protocol: PasswordBackend = backend
    assert as_protocol.authenticate("bob", "Hello world!").username == "bob"


def test_repr_names_file_only(backend: PlainBackend, passwd: Path) -> None:
    assert repr(backend) == f"PlainBackend({str(passwd)!r})"


def test_wrong_password(backend: PlainBackend, dummy_calls: list[str]) -> None:
    with pytest.raises(AuthFailed, match="wrong password"):
        backend.authenticate("alice", "wrong")
    assert dummy_calls == [H_ALICE]


def test_wrong_then_right(backend: PlainBackend) -> None:
    # ocserv #323: a correct password must work after a wrong one.
    with pytest.raises(AuthFailed):
        backend.authenticate("alice", "wrong")
    assert backend.authenticate("alice", PW_ALICE).username == "alice"


@pytest.mark.parametrize(
    ("username", "reason"),
    [("nobody", "unknown user"), ("locked", "locked"), ("otponly", "no password set")],
)
def test_user_dependent_refusals_still_hash(
    backend: PlainBackend, dummy_calls: list[str], username: str, reason: str
) -> None:
    with pytest.raises(AuthFailed, match=reason):
        backend.authenticate(username, PW_ALICE)
    assert dummy_calls == [_plain._DUMMY_HASH]


def test_dummy_hash_is_a_working_ocpasswd_hash() -> None:
    assert _plain._DUMMY_HASH.startswith("$5$")
    assert "rounds=" not in _plain._DUMMY_HASH
    with pytest.raises(AuthFailed, match="wrong password"):
        verify_password("anything", _plain._DUMMY_HASH)


def test_unsupported_hash(backend: PlainBackend) -> None:
    with pytest.raises(AuthFailed, match="unsupported"):
        backend.authenticate("badhash", "pw")


@pytest.mark.parametrize(
    ("username", "password", "reason"),
    [
        ("alice", "", "empty password"),
        ("", "pw", "empty username"),
        ("a" * 65, "pw", "username too long"),
        ("é" * 33, "pw", "username too long"),
        ("alice", "p" * 65, "password too long"),
        ("alice", "é" * 33, "password too long"),
        ("\udcff", "pw", "username is not valid Unicode"),
        ("alice", "\udcff", "password is not valid Unicode"),
    ],
)
def test_input_checks_refuse_without_hashing(
    backend: PlainBackend, dummy_calls: list[str], username: str, password: str, reason: str
) -> None:
    with pytest.raises(AuthFailed, match=reason):
        backend.authenticate(username, password)
    assert dummy_calls == []


def test_64_bytes_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    name, password = "u" * 64, "p" * 64
    path.write_text(f"{name}:*:{hash_password(password)}\n")
    assert PlainBackend(str(path)).authenticate(name, password).username == name


def test_groups_of(backend: PlainBackend) -> None:
    assert backend.groups_of("alice") == ("admins", "users")
    assert backend.groups_of("bob") == ()
    assert backend.groups_of("locked") == ("ops",)
    with pytest.raises(AuthFailed, match="unknown user"):
        backend.groups_of("nobody")


def test_entry(backend: PlainBackend) -> None:
    assert backend.entry("otponly") == PasswdEntry("otponly", (), "")
    assert backend.entry("nobody") is None


def test_missing_file_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        PlainBackend(str(tmp_path / "missing"))
    assert info.value.file == str(tmp_path / "missing")


def test_malformed_file_at_start(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("junk\n")
    with pytest.raises(ConfigError) as info:
        PlainBackend(str(path))
    assert info.value.line == 1


def test_picks_up_ocpasswd_changes(backend: PlainBackend, passwd: Path) -> None:
    update_passwd_file(passwd, "carol", lambda old: PasswdEntry("carol", ("gg",), H_BOB))
    assert backend.authenticate("carol", "Hello world!") == AuthResult("carol", ("gg",))
    update_passwd_file(passwd, "alice", lambda old: None)
    with pytest.raises(AuthFailed, match="unknown user"):
        backend.authenticate("alice", PW_ALICE)


def test_lock_takes_effect(backend: PlainBackend, passwd: Path) -> None:
    assert backend.authenticate("bob", "Hello world!")
    update_passwd_file(passwd, "bob", lambda old: PasswdEntry("bob", (), "!" + H_BOB))
    with pytest.raises(AuthFailed, match="locked"):
        backend.authenticate("bob", "Hello world!")


def test_unchanged_file_is_not_reread(
    backend: PlainBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real = load_passwd

    def counting(path: str) -> dict[str, PasswdEntry]:
        loads.append(path)
        return real(path)

    monkeypatch.setattr(_plain, "load_passwd", counting)
    backend.authenticate("bob", "Hello world!")
    backend.authenticate("bob", "Hello world!")
    assert loads == []


def test_same_size_change_detected_by_mtime(backend: PlainBackend, passwd: Path) -> None:
    # Rewrite in place (same inode, same size): only the modification time differs.
    text = passwd.read_text().replace("alice:admins,users:", "alice:admins,usera:")
    stamp = passwd.stat()
    with open(passwd, "r+") as f:
        f.write(text)
    os.utime(passwd, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
    assert passwd.stat().st_ino == stamp.st_ino
    assert passwd.stat().st_size == stamp.st_size
    assert backend.groups_of("alice") == ("admins", "usera")


def test_broken_file_fails_closed_then_recovers(backend: PlainBackend, passwd: Path) -> None:
    good = passwd.read_text()
    passwd.write_text(good + "junk\n")
    with pytest.raises(AuthFailed, match="password file unusable"):
        backend.authenticate("alice", PW_ALICE)
    with pytest.raises(AuthFailed, match="password file unusable"):
        backend.authenticate("alice", PW_ALICE)
    passwd.write_text(good)
    assert backend.authenticate("alice", PW_ALICE).username == "alice"


def test_deleted_file_fails_closed(backend: PlainBackend, passwd: Path) -> None:
    good = passwd.read_text()
    passwd.unlink()
    with pytest.raises(AuthFailed, match="password file unusable"):
        backend.authenticate("alice", PW_ALICE)
    with pytest.raises(AuthFailed, match="password file unusable"):
        backend.groups_of("alice")
    passwd.write_text(good)
    assert backend.groups_of("alice") == ("admins", "users")


def test_concurrent_authentications(backend: PlainBackend, passwd: Path) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                assert backend.authenticate("bob", "Hello world!").username == "bob"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    update_passwd_file(passwd, "carol", lambda old: PasswdEntry("carol", (), H_BOB))
    for t in threads:
        t.join()
    assert errors == []
