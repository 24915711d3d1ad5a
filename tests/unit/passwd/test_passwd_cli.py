from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from ocgate.errors import AuthFailed
from ocgate.passwd import PasswdEntry, _cli, load_passwd, main, verify_password


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(argv: list[str], stdin: str | io.StringIO = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    source = stdin if isinstance(stdin, io.StringIO) else io.StringIO(stdin)
    code = main(argv, stdin=source, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def passwd(tmp_path: Path) -> Path:
    return tmp_path / "ocpasswd"


def test_set_password_from_stdin_round_trip(passwd: Path) -> None:
    code, out, err = run(["-c", str(passwd), "alice"], "s3cret\n")
    assert (code, out, err) == (0, "", "")
    entries = load_passwd(passwd)
    assert entries["alice"].groups == ()
    assert entries["alice"].hash.startswith("$5$")
    verify_password("s3cret", entries["alice"].hash)
    with pytest.raises(AuthFailed):
        verify_password("s3cret\n", entries["alice"].hash)
    assert passwd.read_text().startswith("alice:*:$5$")
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600


def test_long_options_and_groups(passwd: Path) -> None:
    code, _, _ = run(["--passwd", str(passwd), "--groupname", "admins, users", "bob"], "pw\r\n")
    assert code == 0
    entry = load_passwd(passwd)["bob"]
    assert entry.groups == ("admins", "users")
    verify_password("pw", entry.hash)


def test_setting_password_without_g_resets_groups(passwd: Path) -> None:
    assert run(["-c", str(passwd), "-g", "admins", "alice"], "one\n")[0] == 0
    assert run(["-c", str(passwd), "alice"], "two\n")[0] == 0
    entry = load_passwd(passwd)["alice"]
    assert entry.groups == ()
    verify_password("two", entry.hash)


def test_existing_user_replaced_in_place(passwd: Path) -> None:
    for user in ("a", "b", "c"):
        assert run(["-c", str(passwd), user], f"{user}-pw\n")[0] == 0
    assert run(["-c", str(passwd), "-g", "ops", "b"], "new\n")[0] == 0
    entries = load_passwd(passwd)
    assert list(entries) == ["a", "b", "c"]
    assert entries["b"].groups == ("ops",)
    verify_password("new", entries["b"].hash)
    verify_password("a-pw", entries["a"].hash)


def test_stdin_without_newline(passwd: Path) -> None:
    assert run(["-c", str(passwd), "a"], "pw")[0] == 0
    verify_password("pw", load_passwd(passwd)["a"].hash)


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n"])
def test_empty_password(passwd: Path, stdin: str) -> None:
    code, _, err = run(["-c", str(passwd), "a"], stdin)
    assert code == 1
    assert "Please specify a password" in err
    assert not passwd.exists()


def test_password_too_long(passwd: Path) -> None:
    code, _, err = run(["-c", str(passwd), "a"], "x" * 65 + "\n")
    assert code == 1
    assert "longer than 64 bytes" in err
    assert run(["-c", str(passwd), "a"], "x" * 64 + "\n")[0] == 0


def test_password_with_nul(passwd: Path) -> None:
    code, _, err = run(["-c", str(passwd), "a"], "a\x00b\n")
    assert code == 1
    assert "NUL" in err


def test_tty_prompts_twice(passwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []
    answers = iter(["tty-pw", "tty-pw"])

    def fake_getpass(prompt: str, stream: object = None) -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(_cli, "_getpass", fake_getpass)
    code, _, _ = run(["-c", str(passwd), "a"], FakeTty())
    assert code == 0
    assert prompts == ["Enter password: ", "Re-enter password: "]
    verify_password("tty-pw", load_passwd(passwd)["a"].hash)


def test_tty_mismatch(passwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["one", "two"])
    monkeypatch.setattr(_cli, "_getpass", lambda prompt, stream=None: next(answers))
    code, _, err = run(["-c", str(passwd), "a"], FakeTty())
    assert code == 1
    assert "Passwords do not match" in err
    assert not passwd.exists()


def test_tty_empty(passwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cli, "_getpass", lambda prompt, stream=None: "")
    code, _, err = run(["-c", str(passwd), "a"], FakeTty())
    assert code == 1
    assert "Please specify a password" in err


def test_tty_interrupted(passwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(prompt: str, stream: object = None) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli, "_getpass", interrupted)
    assert run(["-c", str(passwd), "a"], FakeTty())[0] == 1
    assert not passwd.exists()


def test_lock_and_unlock(passwd: Path) -> None:
    assert run(["-c", str(passwd), "-g", "gg", "a"], "pw\n")[0] == 0
    original = load_passwd(passwd)["a"]

    assert run(["-c", str(passwd), "-l", "a"]) == (0, "", "")
    locked = load_passwd(passwd)["a"]
    assert locked.locked
    assert locked.hash == "!" + original.hash
    assert locked.groups == ("gg",)
    with pytest.raises(AuthFailed, match="locked"):
        verify_password("pw", locked.hash)

    assert run(["-c", str(passwd), "--lock", "a"])[0] == 0  # idempotent
    assert load_passwd(passwd)["a"] == locked

    assert run(["-c", str(passwd), "-u", "a"])[0] == 0
    assert load_passwd(passwd)["a"] == original
    assert run(["-c", str(passwd), "--unlock", "a"])[0] == 0  # idempotent
    assert load_passwd(passwd)["a"] == original
    verify_password("pw", original.hash)


def test_delete(passwd: Path) -> None:
    run(["-c", str(passwd), "a"], "pw\n")
    run(["-c", str(passwd), "b"], "pw\n")
    assert run(["-c", str(passwd), "-d", "a"]) == (0, "", "")
    assert list(load_passwd(passwd)) == ["b"]
    assert run(["-c", str(passwd), "--delete", "b"])[0] == 0
    assert passwd.read_text() == ""


@pytest.mark.parametrize("flag", ["-d", "-l", "-u"])
def test_unknown_user(passwd: Path, flag: str) -> None:
    passwd.write_text("x:*:h\n")
    code, _, err = run(["-c", str(passwd), flag, "nobody"])
    assert code == 1
    assert "'nobody' was not found" in err
    assert passwd.read_text() == "x:*:h\n"


@pytest.mark.parametrize("flag", ["-d", "-l", "-u"])
def test_unknown_user_missing_file(passwd: Path, flag: str) -> None:
    assert run(["-c", str(passwd), flag, "nobody"])[0] == 1
    assert not passwd.exists()


def test_locked_file(passwd: Path) -> None:
    Path(f"{passwd}.tmp").write_text("")
    code, _, err = run(["-c", str(passwd), "a"], "pw\n")
    assert code == 1
    assert err == f"file '{passwd}' is locked.\n"


def test_missing_directory(tmp_path: Path) -> None:
    code, _, err = run(["-c", str(tmp_path / "nodir" / "ocpasswd"), "a"], "pw\n")
    assert code == 1
    assert "No such file or directory" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["a:b"], "must not contain"),
        (["-g", "g:h", "a"], "must not contain"),
        (["u" * 65], "longer than 64 bytes"),
    ],
)
def test_bad_username_or_group(passwd: Path, argv: list[str], message: str) -> None:
    code, _, err = run(["-c", str(passwd), *argv], "pw\n")
    assert code == 1
    assert message in err
    assert not passwd.exists()


def test_one_character_groups_mean_none(passwd: Path) -> None:
    assert run(["-c", str(passwd), "-g", "*", "a"], "pw\n")[0] == 0
    assert passwd.read_text().startswith("a:*:$5$")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-c"],
        ["-d", "-l", "a"],
        ["--bogus", "a"],
        ["a", "b"],
    ],
)
def test_usage_errors(argv: list[str]) -> None:
    code, out, err = run(argv)
    assert code == 1
    assert out == ""
    assert err.startswith("usage: ocgate passwd")
    assert "ocgate passwd: error:" in err


def test_help() -> None:
    code, out, err = run(["-h"])
    assert code == 0
    assert out.startswith("usage: ocgate passwd")
    assert "--groupname" in out
    assert err == ""
    assert run(["--help"])[:2] == (0, out)


def test_version() -> None:
    from ocgate import __version__

    code, out, _ = run(["-v"])
    assert code == 0
    assert out == f"ocgate passwd (ocgate) {__version__}\n"
    assert run(["--version"])[1] == out


def test_default_file_is_ocserv_path() -> None:
    assert _cli.DEFAULT_PASSWD_FILE == "/etc/ocserv/ocpasswd"


def test_defaults_to_sys_streams(
    passwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    monkeypatch.setattr("sys.argv", ["ocgate-passwd", "-c", str(passwd), "z"])
    assert main() == 0
    assert load_passwd(passwd)["z"] == PasswdEntry("z", (), load_passwd(passwd)["z"].hash)
    assert main(["-v"]) == 0
    assert capsys.readouterr().out.startswith("ocgate passwd")


def test_real_process_with_piped_stdin(passwd: Path) -> None:
    import subprocess
    import sys

    code = "import sys; from ocgate.passwd import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, "-c", str(passwd), "-g", "vpn", "piped"],
        input="from a pipe\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    entry = load_passwd(passwd)["piped"]
    assert entry.groups == ("vpn",)
    verify_password("from a pipe", entry.hash)
