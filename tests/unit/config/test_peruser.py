"""Per-user / per-group files: parsing, name safety, layering (ocserv-compatibility §4.5)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.config import (
    Config,
    apply_layers,
    check_name_component,
    load_session_layers,
    parse_config,
    parse_user_config,
)
from ocgate.errors import ConfigError


def _config(tmp_path: Path, extra: str = "") -> Config:
    (tmp_path / "p").write_text("alice:eng:$5$x$y\n")
    (tmp_path / "c.pem").write_text("")
    text = (
        f'auth = "plain[passwd={tmp_path}/p]"\nserver-cert = {tmp_path}/c.pem\n'
        f"server-key = {tmp_path}/c.pem\nroute = 10.1.0.0/16\ndns = 10.0.0.53\n" + extra
    )
    return parse_config(text, source=str(tmp_path / "ocserv.conf"))


@pytest.mark.parametrize("name", ["", ".", "..", "../escape", "a/b", "/", "x\0y"])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="single path component"):
        check_name_component(name, "group")


@pytest.mark.parametrize("name", ["alice", "alice@example.com", "DOMAIN\\bob", "..x", "a b"])
def test_safe_names_pass(name: str) -> None:
    check_name_component(name)


@given(st.text(max_size=20))
def test_name_check_only_raises_config_error(name: str) -> None:
    try:
        check_name_component(name)
    except ConfigError:
        assert name in {"", ".", ".."} or "/" in name or "\0" in name


def test_parse_keys_and_skip_others() -> None:
    text = (
        "route = 10.9.0.0/16\nroute = 10.8.0.0/255.255.0.0\nno-route = 10.9.5.0/24\n"
        "dns = 10.9.0.53\nsplit-dns = corp.test\nidle-timeout = 600\nsession-timeout = 3600\n"
        "mtu = 1300\ndpd = 60\nexplicit-ipv4 = 10.77.0.9\nhostname = box\n"
        "max-same-clients = 1\ntcp-port = 444\nnbns = 10.0.0.1\nnet-priority = 3\n"
    )
    cfg = parse_user_config(text, source="users/alice")
    assert cfg.values["idle_timeout"] == 600
    assert cfg.values["session_timeout"] == 3600
    assert cfg.values["mtu"] == 1300
    assert cfg.values["dpd"] == 60
    assert cfg.values["max_same_clients"] == 1
    assert cfg.values["dns"] == (ipaddress.ip_address("10.9.0.53"),)
    assert cfg.values["split_dns"] == ("corp.test",)
    assert cfg.explicit_ipv4 == ipaddress.IPv4Address("10.77.0.9")
    assert cfg.hostname == "box"
    assert cfg.routes is not None
    assert [str(r.network) for r in cfg.routes] == ["10.9.0.0/16", "10.8.0.0/16"]
    assert cfg.values["nbns"] == (ipaddress.ip_address("10.0.0.1"),)
    assert [w.key for w in cfg.warnings] == ["tcp-port", "net-priority"]


def test_bad_value_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"users/alice:2: route"):
        parse_user_config("dpd = 5\nroute = nonsense\n", source="users/alice")


def test_explicit_ipv4_must_be_ipv4() -> None:
    with pytest.raises(ConfigError, match="explicit-ipv4"):
        parse_user_config("explicit-ipv4 = fd00::1\n", source="u")


def test_layers_group_then_user_replace_globals(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f"config-per-user = {tmp_path}/users\nconfig-per-group = {tmp_path}/groups\n",
    )
    (tmp_path / "users").mkdir()
    (tmp_path / "groups").mkdir()
    (tmp_path / "groups" / "eng").write_text("route = 10.2.0.0/16\nidle-timeout = 100\n")
    (tmp_path / "users" / "alice").write_text("idle-timeout = 200\n")
    layers = load_session_layers(config, username="alice", group="eng")
    assert [os.path.basename(layer.source) for layer in layers] == ["eng", "alice"]
    effective = apply_layers(config, layers)
    assert [str(r) for r in effective.route] == ["10.2.0.0/16"]
    assert effective.idle_timeout == 200
    assert [str(d) for d in effective.dns] == ["10.0.0.53"]


def test_append_routes(tmp_path: Path) -> None:
    config = _config(tmp_path, f"config-per-user = {tmp_path}/u\nappend-routes = true\n")
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "alice").write_text("route = 10.2.0.0/16\n")
    layers = load_session_layers(config, username="alice", group=None)
    effective = apply_layers(config, layers)
    # ocserv main.c append_routes(): the user's routes first, then the global ones.
    assert [str(r) for r in effective.route] == ["10.2.0.0/16", "10.1.0.0/16"]


def test_group_and_user_lines_add_up(tmp_path: Path) -> None:
    """ocserv reads both files into one message: multi-value lines of the user file are added to
    the group's (verified against ocserv 1.1.6, tests/interop/test_routes_dns.py)."""
    config = _config(
        tmp_path,
        f"config-per-user = {tmp_path}/users\nconfig-per-group = {tmp_path}/groups\n",
    )
    (tmp_path / "users").mkdir()
    (tmp_path / "groups").mkdir()
    (tmp_path / "groups" / "eng").write_text(
        "route = 10.2.0.0/16\ndns = 10.2.0.53\nsplit-dns = eng.test\nno-route = 10.2.9.0/24\n"
    )
    (tmp_path / "users" / "alice").write_text(
        "route = 10.3.0.0/16\ndns = 10.3.0.53\nsplit-dns = alice.test\n"
    )
    effective = apply_layers(config, load_session_layers(config, username="alice", group="eng"))
    assert [str(r) for r in effective.route] == ["10.2.0.0/16", "10.3.0.0/16"]
    assert [str(r) for r in effective.no_route] == ["10.2.9.0/24"]
    assert [str(d) for d in effective.dns] == ["10.2.0.53", "10.3.0.53"]
    assert effective.split_dns == ("eng.test", "alice.test")


def test_default_route_in_user_file_is_full_tunnel(tmp_path: Path) -> None:
    config = _config(tmp_path, f"config-per-user = {tmp_path}/u\n")
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "alice").write_text("route = default\n")
    layers = load_session_layers(config, username="alice", group=None)
    effective = apply_layers(config, layers)
    assert effective.route_default
    assert effective.route == ()


def test_default_config_used_when_no_file_and_missing_default_refuses(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f"config-per-user = {tmp_path}/u\ndefault-user-config = {tmp_path}/default\n",
    )
    (tmp_path / "u").mkdir()
    with pytest.raises(ConfigError, match="no such file"):
        load_session_layers(config, username="bob", group=None)
    (tmp_path / "default").write_text("dpd = 77\n")
    layers = load_session_layers(config, username="bob", group=None)
    assert apply_layers(config, layers).dpd == 77


def test_symlinks_and_traversal_are_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, f"config-per-group = {tmp_path}/g\n")
    (tmp_path / "g").mkdir()
    (tmp_path / "secret").write_text("dpd = 1\n")
    (tmp_path / "g" / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(ConfigError, match="symbolic link"):
        load_session_layers(config, username="alice", group="link")
    with pytest.raises(ConfigError, match="single path component"):
        load_session_layers(config, username="alice", group="../secret")


def test_no_directories_means_no_layers(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert load_session_layers(config, username="../x", group=None) == []


def test_policy_keys_globally_then_per_group_and_per_user(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "rx-data-per-sec = 2000000\ntx-data-per-sec = 3000000\ndeny-roaming = true\n"
        f"config-per-user = {tmp_path}/users\nconfig-per-group = {tmp_path}/groups\n",
    )
    assert (config.rx_data_per_sec, config.tx_data_per_sec) == (2_000_000, 3_000_000)
    assert (config.deny_roaming, config.no_udp) == (True, False)
    assert config.warnings == ()
    (tmp_path / "users").mkdir()
    (tmp_path / "groups").mkdir()
    (tmp_path / "groups" / "eng").write_text("no-udp = true\nrx-data-per-sec = 500000\n")
    (tmp_path / "users" / "alice").write_text("deny-roaming = false\ntx-data-per-sec = 0\n")
    effective = apply_layers(config, load_session_layers(config, username="alice", group="eng"))
    assert (effective.rx_data_per_sec, effective.tx_data_per_sec) == (500_000, 0)
    assert (effective.deny_roaming, effective.no_udp) == (False, True)
    bob = apply_layers(config, load_session_layers(config, username="bob", group=None))
    assert (bob.rx_data_per_sec, bob.deny_roaming, bob.no_udp) == (2_000_000, True, False)
