"""``user-profile`` (ocserv), ``service-profile-vpn-mgmt``/``-nvm`` (ocgate): read at load.

ocserv computes the SHA-1 of ``user-profile`` when it loads the configuration
(``src/config.c`` ``calc_sha1_hash``) and refuses to start when the file cannot be read; the
digest here is recomputed with hashlib.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config, parse_user_config
from ocgate.config._profile import MAX_PROFILE_BYTES
from ocgate.errors import ConfigError


def _config(tmp_path: Path, extra: str) -> Config:
    (tmp_path / "p").write_text("alice:eng:$5$x$y\n")
    (tmp_path / "c.pem").write_text("")
    text = (
        f'auth = "plain[passwd={tmp_path}/p]"\nserver-cert = {tmp_path}/c.pem\n'
        f"server-key = {tmp_path}/c.pem\n" + extra
    )
    return parse_config(text, source=str(tmp_path / "ocserv.conf"))


def test_profiles_are_read_and_hashed_at_load(tmp_path: Path) -> None:
    data = b"<AnyConnectProfile/>\n"
    (tmp_path / "corp.xml").write_bytes(data)
    (tmp_path / "m.xml").write_bytes(b"<m/>")
    (tmp_path / "n.xml").write_bytes(b"<n/>")
    config = _config(
        tmp_path,
        "user-profile = corp.xml\nservice-profile-vpn-mgmt = m.xml\nservice-profile-nvm = n.xml\n",
    )
    assert config.user_profile is not None
    assert (config.user_profile.name, config.user_profile.data) == ("corp.xml", data)
    assert config.user_profile.sha1 == hashlib.sha1(data).hexdigest().upper()
    assert config.mgmt_tunnel_profile is not None
    assert config.mgmt_tunnel_profile.name == "m.xml"
    assert config.nvm_profile is not None
    assert config.nvm_profile.data == b"<n/>"
    assert "<n/>" not in repr(config.nvm_profile)


def test_missing_profile_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, "\nuser-profile = missing.xml\n")
    text = str(info.value)
    assert f"{tmp_path}/ocserv.conf:5: user-profile: cannot read profile file" in text
    assert "expected: a readable file" in text


def test_oversized_profile_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.xml").write_bytes(b"x" * (MAX_PROFILE_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        _config(tmp_path, "service-profile-nvm = big.xml\n")


def test_profile_keys_apply_in_per_user_files(tmp_path: Path) -> None:
    (tmp_path / "alice.xml").write_bytes(b"<alice/>")
    user = parse_user_config(
        f"user-profile = {tmp_path}/alice.xml\n", source="users/alice", base_dir=str(tmp_path)
    )
    assert not user.warnings
    profile = user.values["user_profile"]
    assert getattr(profile, "data", None) == b"<alice/>"


def test_two_profiles_with_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "p.xml").write_bytes(b"<a/>")
    (tmp_path / "p.xml").write_bytes(b"<b/>")
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, "user-profile = a/p.xml\nservice-profile-nvm = p.xml\n")
    assert (
        "ocserv.conf:5: service-profile-nvm: user-profile already serves a file named 'p.xml'"
        in (str(info.value))
    )
