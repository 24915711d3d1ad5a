from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.errors import ConfigError
from ocgate.otp import OtpEntry, OtpKind, load_users_file, parse_users_file
from ocgate.otp._usersfile import (
    LOCK_SUFFIX,
    format_time,
    locked_users_file,
    make_type,
    write_users_file,
)

OCSERV_EXAMPLE = (
    "HOTP/T30 test - 8a2d55707a9084982649dadc04b426a06df19ab2 1 691245 2015-09-25T13:18:42L\n"
)


@pytest.mark.parametrize(
    ("token", "kind", "digits", "period"),
    [
        ("HOTP", OtpKind.HOTP, 6, None),
        ("HOTP/E", OtpKind.HOTP, 6, None),
        ("HOTP/E/6", OtpKind.HOTP, 6, None),
        ("HOTP/E/7", OtpKind.HOTP, 7, None),
        ("HOTP/E/8", OtpKind.HOTP, 8, None),
        ("HOTP/T30", OtpKind.TOTP, 6, 30),
        ("HOTP/T30/6", OtpKind.TOTP, 6, 30),
        ("HOTP/T30/8", OtpKind.TOTP, 8, 30),
        ("HOTP/T60", OtpKind.TOTP, 6, 60),
        ("HOTP/T60/7", OtpKind.TOTP, 7, 60),
    ],
)
def test_liboath_types(token: str, kind: OtpKind, digits: int, period: int | None) -> None:
    entry = parse_users_file(f"{token} alice - 00\n").entries[0]
    assert (entry.kind, entry.digits, entry.period) == (kind, digits, period)
    assert entry.type == token


@pytest.mark.parametrize(
    "token", ["HOTP/T31", "HOTP/T30/9", "HOTP/E/", "HOTP/E/5", "HOTP/T300", "HOTPX", "HOTP/T30/"]
)
def test_bad_type_is_an_error_with_file_and_line(token: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_users_file(f"# users\nHOTP bob - 00\n{token} alice - 00\n", source="users.oath")
    assert (info.value.file, info.value.line) == ("users.oath", 3)
    assert str(info.value).startswith("users.oath:3: TYPE: ")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("HOTP alice", None),
        ("HOTP alice -", None),
        ("HOTP alice - 0", "HEXKEY"),
        ("HOTP alice - zz", "HEXKEY"),
        ("HOTP alice - " + "00" * 65, "HEXKEY"),
        ("HOTP alice - 00 -1", "COUNTER"),
        ("HOTP alice - 00 x", "COUNTER"),
        ("HOTP alice - 00 18446744073709551616", "COUNTER"),
        ("HOTP alice - 00 1 123456 yesterday", "TIME"),
    ],
)
def test_malformed_lines(line: str, key: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        parse_users_file(line + "\n", source="f")
    assert info.value.line == 1
    assert info.value.key == key


def test_ocserv_examples() -> None:
    users = parse_users_file("HOTP test - 00\n" + OCSERV_EXAMPLE)
    hotp, totp = users.entries
    assert (hotp.username, hotp.pin, hotp.secret, hotp.counter, hotp.last_otp) == (
        "test",
        "-",
        b"\x00",
        None,
        None,
    )
    assert totp.secret.hex() == "8a2d55707a9084982649dadc04b426a06df19ab2"
    assert (totp.counter, totp.last_otp, totp.last_time) == (1, "691245", "2015-09-25T13:18:42L")
    assert users.users() == ("test",)
    assert [index for index, _ in users.entries_for("test")] == [0, 1]


def test_unknown_lines_comments_and_fields_are_preserved() -> None:
    text = (
        "# OTP users\r\n"
        "\n"
        "MOTP carol 1234 abcdef\n"
        "HOTP   alice\t-  00  \n"
        "HOTP/T30 bob + 3132 7 123456 2020-01-01T00:00:00L extra1 extra2\n"
        "  \n"
        "HOTP/E/8 dave 99 ABCDEF"
    )
    users = parse_users_file(text)
    assert users.render() == text
    assert users.users() == ("alice", "bob", "dave")
    bob = users.entries_for("bob")[0][1]
    assert bob.extra == ("extra1", "extra2")
    # Rewriting bob changes only bob's line and keeps his extra fields.
    index = users.entries_for("bob")[0][0]
    updated = users.replaced(
        index, bob.with_use(counter=9, otp="654321", time="2021-02-03T04:05:06L")
    )
    lines = updated.render().split("\n")
    assert lines[4] == "HOTP/T30\tbob\t+\t3132\t9\t654321\t2021-02-03T04:05:06L\textra1\textra2"
    assert lines[:4] + lines[5:] == text.split("\n")[:4] + text.split("\n")[5:]
    with pytest.raises(ValueError, match="entry lines"):
        users.replaced(0, bob)


def test_with_user_and_without_user() -> None:
    users = parse_users_file("HOTP a - 00\n# x\nHOTP b - 01\nHOTP a - 02\n")
    new = OtpEntry(type="HOTP/T30", username="a", hexkey="ff")
    replaced = users.with_user(new)
    assert replaced.render() == "HOTP/T30\ta\t-\tff\n# x\nHOTP b - 01\n"
    appended = users.with_user(OtpEntry(type="HOTP", username="c", hexkey="aa", counter=0))
    assert appended.render().endswith("HOTP a - 02\nHOTP\tc\t-\taa\t0\n")
    assert users.without_user("a").render() == "# x\nHOTP b - 01\n"
    assert parse_users_file("").render() == ""
    assert parse_users_file("").with_user(new).render() == "HOTP/T30\ta\t-\tff\n"


def test_entry_repr_hides_secrets() -> None:
    entry = OtpEntry(
        type="HOTP", username="alice", pin="s3cretpin", hexkey="deadbeef", last_otp="1"
    )
    text = repr(entry)
    assert "alice" in text
    assert "deadbeef" not in text
    assert "s3cretpin" not in text


def test_entry_validation() -> None:
    with pytest.raises(ConfigError):
        OtpEntry(type="HOTP", username="a b", hexkey="00")
    with pytest.raises(ConfigError):
        OtpEntry(type="HOTP", username="a", pin="", hexkey="00")
    with pytest.raises(ConfigError):
        OtpEntry(type="HOTP", username="a", hexkey="00", counter=-1)


def test_make_type() -> None:
    assert make_type(OtpKind.TOTP) == "HOTP/T30"
    assert make_type(OtpKind.TOTP, digits=8, period=60) == "HOTP/T60/8"
    assert make_type(OtpKind.HOTP) == "HOTP"
    assert make_type(OtpKind.HOTP, digits=8) == "HOTP/E/8"
    with pytest.raises(ConfigError):
        make_type(OtpKind.TOTP, period=45)


def test_format_time_is_liboath_format() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dL", format_time(1443187122.0))


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_users_file(str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_bytes(b"HOTP \xff - 00\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_users_file(str(bad))
    with pytest.raises(ConfigError, match="cannot read"):
        load_users_file(str(tmp_path))  # a directory


def test_atomic_write_keeps_mode_and_creates_0600(tmp_path: Path) -> None:
    path = tmp_path / "users.oath"
    write_users_file(str(path), "HOTP a - 00\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o640)
    inode = path.stat().st_ino
    write_users_file(str(path), "HOTP b - 00\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode
    assert path.read_text() == "HOTP b - 00\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.oath"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_atomic_write_keeps_owner(tmp_path: Path) -> None:
    path = tmp_path / "users.oath"
    path.write_text("HOTP a - 00\n")
    os.chown(path, 1, 2)
    write_users_file(str(path), "HOTP b - 00\n")
    assert (path.stat().st_uid, path.stat().st_gid) == (1, 2)


def test_failed_write_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "users.oath"
    path.write_text("HOTP a - 00\n")

    def crash(src: str, dst: str) -> None:
        raise OSError(5, "simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        write_users_file(str(path), "HOTP b - 00\n")
    assert path.read_text() == "HOTP a - 00\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.oath"]


def test_lock_file_is_a_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "users.oath"
    with locked_users_file(str(path)):
        assert (tmp_path / ("users.oath" + LOCK_SUFFIX)).exists()
    assert (tmp_path / ("users.oath" + LOCK_SUFFIX)).exists()  # never removed


_TOKENS = st.sampled_from(
    [
        "HOTP",
        "HOTP/T30",
        "HOTP/E/8",
        "HOTP/T60/9",
        "alice",
        "-",
        "+",
        "00",
        "0",
        "zz",
        "12",
        "2015-09-25T13:18:42L",
        "#",
        "\t",
        " ",
        "\r",
        "MOTP",
        "99999999999999999999999",
    ]
)


@given(st.lists(st.one_of(_TOKENS, st.text(max_size=8)), max_size=30))
def test_parse_fuzz_raises_only_config_error(tokens: list[str]) -> None:
    text = " ".join(tokens).replace(" # ", "\n")
    try:
        users = parse_users_file(text)
    except ConfigError:
        return
    assert users.render() == text
