from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.errors import ConfigError
from ocgate.passwd import (
    PasswdEntry,
    format_passwd,
    load_passwd,
    parse_groups,
    parse_passwd,
    update_passwd_file,
)

H1 = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
H2 = "$1$dXc3I7Rw$ctlgjDdWJLMT.qwHsWhXR1"


# --- PasswdEntry ---------------------------------------------------------------------------------


def test_entry_hides_hash_in_repr() -> None:
    entry = PasswdEntry("alice", ("admins",), H1)
    assert H1 not in repr(entry)
    assert "alice" in repr(entry)


def test_entry_is_frozen_and_slotted() -> None:
    entry = PasswdEntry("alice")
    with pytest.raises(AttributeError):
        entry.username = "bob"  # type: ignore[misc]
    assert not hasattr(entry, "__dict__")


def test_locked() -> None:
    assert PasswdEntry("a", (), "!" + H1).locked
    assert not PasswdEntry("a", (), H1).locked
    assert not PasswdEntry("a").locked


@pytest.mark.parametrize(
    "kwargs",
    [
        {"username": ""},
        {"username": "a:b"},
        {"username": "a\nb"},
        {"username": "a\x00"},
        {"username": "\udcff"},
        {"username": "a", "hash": "x:y"},
        {"username": "a", "groups": ("g,h",)},
        {"username": "a", "groups": ("*",)},
        {"username": "a", "groups": (" g",)},
        {"username": "a", "groups": ("g:h",)},
    ],
)
def test_entry_rejects_fields_that_do_not_round_trip(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PasswdEntry(**kwargs)  # type: ignore[arg-type]


def test_to_line() -> None:
    assert PasswdEntry("a", ("g1", "g2"), H1).to_line() == f"a:g1,g2:{H1}"
    assert PasswdEntry("a", (), H1).to_line() == f"a:*:{H1}"
    assert PasswdEntry("a").to_line() == "a:*:"


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "groups"),
    [
        ("*", ()),
        ("x", ()),
        ("", ()),
        ("admins", ("admins",)),
        ("admins, users ,ops", ("admins", "users", "ops")),
        ("a,admins,*,x", ("admins",)),
        ("admins,admins", ("admins",)),
        (" , ,", ()),
    ],
)
def test_parse_groups(field: str, groups: tuple[str, ...]) -> None:
    assert parse_groups(field) == groups


def test_parse_file() -> None:
    text = (
        f"alice:admins, users:{H1}\n"
        "\n"
        "# a comment\n"
        f"bob:*:{H2}\r\n"
        "   \n"
        "carol::\n"
        f"dave:x:!{H1}:extra:fields\n"
    )
    entries = parse_passwd(text, source="ocpasswd")
    assert list(entries) == ["alice", "bob", "carol", "dave"]
    assert entries["alice"] == PasswdEntry("alice", ("admins", "users"), H1)
    assert entries["bob"] == PasswdEntry("bob", (), H2)
    assert entries["carol"] == PasswdEntry("carol", (), "")
    assert entries["dave"].locked
    assert entries["dave"].hash == "!" + H1


def test_parse_empty() -> None:
    assert parse_passwd("", source="f") == {}
    assert parse_passwd("\n\n", source="f") == {}


def test_first_duplicate_wins() -> None:
    entries = parse_passwd(f"a:g1:{H1}\na:g2:{H2}\n", source="f")
    assert entries["a"] == PasswdEntry("a", ("g1",), H1)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("nocolons\n", 1),
        (f"ok:*:{H1}\nuser:only-two\n", 2),
        (f"ok:*:{H1}\n\n:*:{H1}\n", 3),
        ("us\x00er:*:x\n", 1),
        ("a:*:x\rb\n", 1),
    ],
)
def test_malformed_lines_name_file_and_line(text: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_passwd(text, source="/etc/ocserv/ocpasswd")
    assert info.value.file == "/etc/ocserv/ocpasswd"
    assert info.value.line == line
    assert str(info.value).startswith(f"/etc/ocserv/ocpasswd:{line}: ")


@given(st.text())
def test_parse_raises_only_config_error(text: str) -> None:
    try:
        entries = parse_passwd(text, source="fuzz")
    except ConfigError:
        return
    # Whatever parses formats back into text that parses to the same entries.
    assert parse_passwd(format_passwd(entries), source="again") == entries


@given(
    st.lists(
        st.builds(
            PasswdEntry,
            username=st.text(
                st.characters(exclude_characters=":\n\r\x00#", codec="utf-8"), min_size=1
            )
            .map(str.strip)
            .filter(bool),
            groups=st.lists(
                st.text(st.characters(exclude_characters=":\n\r\x00,", codec="utf-8"), min_size=2)
                .map(str.strip)
                .filter(lambda g: len(g) > 1),
                unique=True,
            ).map(tuple),
            hash=st.text(st.characters(exclude_characters=":\n\r\x00", codec="utf-8")),
        ),
        unique_by=lambda e: e.username,
    )
)
def test_format_parse_round_trip(entries: list[PasswdEntry]) -> None:
    parsed = parse_passwd(format_passwd(entries), source="rt")
    assert list(parsed.values()) == entries


def test_format_accepts_mapping() -> None:
    entries = parse_passwd(f"a:g1,g2:{H1}\nb:*:{H2}\n", source="f")
    assert format_passwd(entries) == f"a:g1,g2:{H1}\nb:*:{H2}\n"
    assert format_passwd(entries.values()) == format_passwd(entries)
    assert format_passwd([]) == ""


# --- loading -------------------------------------------------------------------------------------


def test_load(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text(f"a:gg:{H1}\n")
    assert load_passwd(path) == {"a": PasswdEntry("a", ("gg",), H1)}
    assert load_passwd(str(path)) == load_passwd(path)


def test_load_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_passwd(tmp_path / "missing")
    assert info.value.file == str(tmp_path / "missing")


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_bytes(b"\xff:*:x\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_passwd(path)


def test_load_malformed_reports_path(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("junk\n")
    with pytest.raises(ConfigError) as info:
        load_passwd(path)
    assert (info.value.file, info.value.line) == (str(path), 1)


# --- atomic updates ------------------------------------------------------------------------------


def test_update_creates_file_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    update_passwd_file(path, "a", lambda old: PasswdEntry("a", (), H1))
    assert path.read_text() == f"a:*:{H1}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / "ocpasswd.tmp").exists()


def test_update_replaces_in_place_and_keeps_other_lines(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    original = b"# comment\nfirst:*:h1\na:old:h2\r\nweird line without colon\nlast:g:h3"
    path.write_bytes(original)
    seen: list[PasswdEntry | None] = []

    def fn(old: PasswdEntry | None) -> PasswdEntry:
        seen.append(old)
        return PasswdEntry("a", ("new",), H1)

    update_passwd_file(path, "a", fn)
    assert seen == [PasswdEntry("a", ("old",), "h2")]
    assert path.read_bytes() == (
        f"# comment\nfirst:*:h1\na:new:{H1}\nweird line without colon\nlast:g:h3\n".encode()
    )


def test_update_appends_new_user(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("x:*:h\n")
    update_passwd_file(path, "a", lambda old: PasswdEntry("a", ("g1", "g2"), H1))
    assert path.read_text() == f"x:*:h\na:g1,g2:{H1}\n"


def test_update_matches_whole_username_only(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("alice:*:h1\nali:*:h2\n")
    update_passwd_file(path, "ali", lambda old: None)
    assert path.read_text() == "alice:*:h1\n"


def test_update_delete_drops_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("a:*:h1\nb:*:h2\na:*:h3\n")
    update_passwd_file(path, "a", lambda old: None)
    assert path.read_text() == "b:*:h2\n"


def test_update_keeps_existing_mode(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("a:*:h\n")
    path.chmod(0o640)
    update_passwd_file(path, "a", lambda old: PasswdEntry("a", (), H1))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_update_refuses_when_tmp_exists(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("a:*:h\n")
    (tmp_path / "ocpasswd.tmp").write_text("someone else")
    with pytest.raises(ConfigError) as info:
        update_passwd_file(path, "a", lambda old: None)
    assert str(info.value) == f"file '{path}' is locked."
    assert path.read_text() == "a:*:h\n"
    assert (tmp_path / "ocpasswd.tmp").read_text() == "someone else"


def test_update_leaves_file_untouched_when_fn_raises(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("a:*:h\n")

    def fn(old: PasswdEntry | None) -> PasswdEntry:
        raise ConfigError("nope")

    with pytest.raises(ConfigError, match="nope"):
        update_passwd_file(path, "a", fn)
    assert path.read_text() == "a:*:h\n"
    assert not (tmp_path / "ocpasswd.tmp").exists()


def test_update_missing_file_not_created_on_error(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"

    def fn(old: PasswdEntry | None) -> None:
        assert old is None
        raise ConfigError("no such user")

    with pytest.raises(ConfigError):
        update_passwd_file(path, "a", fn)
    assert os.listdir(tmp_path) == []


def test_update_rejects_username_change(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    with pytest.raises(ValueError, match="keep the username"):
        update_passwd_file(path, "a", lambda old: PasswdEntry("b"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("username", ["", "a:b", "a\nb", "\udcff"])
def test_update_rejects_bad_username(tmp_path: Path, username: str) -> None:
    with pytest.raises(ConfigError):
        update_passwd_file(tmp_path / "ocpasswd", username, lambda old: None)
    assert os.listdir(tmp_path) == []


def test_update_malformed_user_line(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_text("x:*:h\na:only-two\n")
    with pytest.raises(ConfigError) as info:
        update_passwd_file(path, "a", lambda old: None)
    assert info.value.line == 2
    assert path.read_text() == "x:*:h\na:only-two\n"


def test_update_non_utf8_user_line(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_bytes(b"a:\xff:h\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        update_passwd_file(path, "a", lambda old: None)


def test_update_other_non_utf8_lines_are_copied(tmp_path: Path) -> None:
    path = tmp_path / "ocpasswd"
    path.write_bytes(b"\xff\xfe:*:h\n")
    update_passwd_file(path, "a", lambda old: PasswdEntry("a", (), H1))
    assert path.read_bytes() == b"\xff\xfe:*:h\n" + f"a:*:{H1}\n".encode()


def test_update_path_is_directory(tmp_path: Path) -> None:
    with pytest.raises(OSError):  # noqa: PT011 - the errno differs by platform
        update_passwd_file(tmp_path, "a", lambda old: None)
    assert not Path(f"{tmp_path}.tmp").exists()
