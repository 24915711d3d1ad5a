"""``[vhost:NAME]`` sections: selection by server name, inheritance (ocserv 1.5), scope errors.

ocserv 1.5 ``src/config.c``: a ``[vhost:NAME]`` section starts (or continues) the virtual host of
that name; since 1.5.0 a vhost inherits every key it does not set from the default host, and a
global-only key inside one is fatal (since 1.4.2). The client's TLS server name selects the vhost;
an unknown or missing name gets the default host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config
from ocgate.config._options import OPTIONS, Scope
from ocgate.errors import ConfigError

Parse = Callable[[str], Config]

BASE = (
    'auth = "plain[passwd=ocpasswd]"\nserver-cert = server-cert.pem\nserver-key = server-key.pem\n'
)
"""As the conftest's: three lines of a minimal valid config; extra lines start at line 4."""


def test_a_vhost_inherits_every_key_it_does_not_set(parse: Parse, conf_dir: Path) -> None:
    (conf_dir / "b.pem").write_text("x\n")
    (conf_dir / "b-key.pem").write_text("x\n")
    (conf_dir / "passwd-b").write_text("x\n")
    config = parse(
        "ipv4-network = 10.10.0.0/24\n"
        "route = 10.1.0.0/16\n"
        "route = 10.3.0.0/16\n"
        "dns = 10.10.0.1\n"
        "dpd = 30\n"
        "tcp-port = 4443\n"
        "[vhost:B.Example.com]\n"
        'auth = "plain[passwd=passwd-b]"\n'
        "server-cert = b.pem\n"
        "server-key = b-key.pem\n"
        "ipv4-network = 10.20.0.0\n"
        "ipv4-netmask = 255.255.255.0\n"
        "route = 10.2.0.0/16\n"
        "no-udp = true\n"
    )
    (vhost,) = config.vhosts
    assert vhost.vhost_name == "b.example.com"
    assert vhost.vhost_label == "b.example.com"
    assert config.vhost_name is None
    assert config.vhost_label == "default"
    # Its own keys.
    assert vhost.passwd_file == str(conf_dir / "passwd-b")
    assert vhost.server_cert == (str(conf_dir / "b.pem"),)
    assert vhost.server_key == (str(conf_dir / "b-key.pem"),)
    assert vhost.ipv4_network == ipaddress.IPv4Network("10.20.0.0/24")
    assert vhost.route == (ipaddress.IPv4Network("10.2.0.0/16"),)  # Replaced, not merged.
    assert vhost.no_udp is True
    # Inherited keys, vhost-scope and global alike.
    assert vhost.dns == (ipaddress.IPv4Address("10.10.0.1"),)
    assert (vhost.dpd, vhost.tcp_port) == (30, 4443)
    assert vhost.vhosts == ()
    # The default host is untouched.
    assert config.passwd_file == str(conf_dir / "ocpasswd")
    assert config.route == tuple(ipaddress.ip_network(n) for n in ("10.1.0.0/16", "10.3.0.0/16"))
    assert config.no_udp is False
    assert config.ipv4_network == ipaddress.IPv4Network("10.10.0.0/24")


def test_a_network_takes_the_inherited_mask(parse: Parse, source: str) -> None:
    config = parse("ipv4-netmask = 255.255.0.0\nipv4-network = 10.10.0.0\n[vhost:a]\n"
                   "ipv4-network = 10.30.0.0\n")  # fmt: skip
    assert config.vhosts[0].ipv4_network == ipaddress.IPv4Network("10.30.0.0/16")
    with pytest.raises(ConfigError) as caught:
        parse("ipv4-network = 10.10.0.0/24\n[vhost:a]\nipv4-netmask = 255.255.0.0\n")
    assert (caught.value.line, caught.value.key) == (6, "ipv4-netmask")


def test_server_name_selects_the_vhost(parse: Parse) -> None:
    config = parse("[vhost:a.example]\ndpd = 1\n[vhost:b.example]\ndpd = 2\n")
    a, b = config.vhosts
    assert config.vhost("a.example") is a
    assert config.vhost(b"B.EXAMPLE") is b
    assert config.vhost("b.example.") is b
    assert config.vhost("c.example") is config  # Unknown: the default host (ocserv).
    assert config.vhost(None) is config
    assert config.hosts() == (config, a, b)


def test_sections_of_one_name_are_one_vhost(parse: Parse) -> None:
    config = parse("[vhost:a]\ndpd = 1\n[]\ndpd = 5\n[vhost:A]\nkeepalive = 7\n")
    (vhost,) = config.vhosts
    assert (vhost.dpd, vhost.keepalive, config.dpd) == (1, 7, 5)


def test_no_vhosts_is_the_plain_config(parse: Parse) -> None:
    config = parse("dpd = 1\n")
    assert config.vhosts == ()
    assert config.vhost("anything") is config


GLOBAL_KEYS = sorted(
    name for name, spec in OPTIONS.items() if spec.scope is Scope.GLOBAL and not spec.collector
)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("tcp-port = 443", "tcp-port"),
        ("udp-port = 443", "udp-port"),
        ("run-as-user = nobody", "run-as-user"),
        ("socket-file = /run/x", "socket-file"),
        ("device = vpns", "device"),
        ("max-clients = 5", "max-clients"),
        ("nvm-listen = 127.0.0.1:2055", "nvm-listen"),
    ],
)
def test_global_key_in_a_vhost_is_an_error_at_its_line(
    parse: Parse, source: str, line: str, key: str
) -> None:
    assert OPTIONS[key].scope is Scope.GLOBAL
    with pytest.raises(ConfigError) as caught:
        parse(f"dpd = 1\n[vhost:www.example.com]\ndpd = 2\n{line}\n")
    error = caught.value
    assert (error.file, error.line, error.key) == (source, 7, key)
    assert str(error) == (
        f"{source}:7: {key}: global option not allowed in [vhost:www.example.com] "
        f"(expected: {key} at the top level, before the first [vhost:...] section)"
    )


def test_every_global_key_is_refused_in_a_vhost() -> None:
    # The rule comes from the option table's scope, for every global key.
    assert len(GLOBAL_KEYS) > 20
    assert "listen-host" in GLOBAL_KEYS
    assert "isolate-workers" in GLOBAL_KEYS


def test_unknown_key_and_bad_value_in_a_vhost_name_their_line(parse: Parse, source: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse("[vhost:a]\nno-such-key = 1\n")
    assert (caught.value.line, caught.value.key) == (5, "no-such-key")
    with pytest.raises(ConfigError) as caught:
        parse("[vhost:a]\ndpd = soon\n")
    assert (caught.value.file, caught.value.line, caught.value.key) == (source, 5, "dpd")


@pytest.mark.parametrize("header", ["[vhost:a b]", "[vhost:a/b]", "[vhost:-a]"])
def test_illegal_vhost_name(parse: Parse, source: str, header: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(header + "\n")
    assert str(caught.value) == (
        f"{source}:4: {header}: illegal virtual host name (expected: [vhost:NAME] with NAME a "
        "host name (letters, digits, '.', '-', '_'))"
    )


def test_vhost_check_without_a_line_points_at_its_header(conf_dir: Path, source: str) -> None:
    # A vhost that sets a certificate without its key: the key is not inherited (they pair).
    with pytest.raises(ConfigError) as caught:
        parse_config(
            BASE + "dpd = 1\n[vhost:a]\nserver-cert = ca.pem\n", source=source,
            base_dir=str(conf_dir),
        )  # fmt: skip
    error = caught.value
    assert (error.line, error.key) == (5, "server-key")
    assert str(error).startswith(f"{source}:5: server-key: [vhost:a]: no server-key is configured")


def test_vhost_config_is_a_whole_config(parse: Parse) -> None:
    config = parse("[vhost:a]\ncamouflage = true\ncamouflage_secret = s3cret\n")
    vhost = config.vhosts[0]
    assert isinstance(vhost, Config)
    assert (vhost.camouflage, config.camouflage) == (True, False)
    assert vhost.source == config.source


def test_accounting_per_vhost_is_refused_not_ignored(parse: Parse, conf_dir: Path) -> None:
    # sec-mod sends every session's records to the top level's acct: a vhost's own would be
    # silently lost, so it is an error at its line (the top level's line again is fine).
    (conf_dir / "radiusclient.conf").write_text("x\n")
    (conf_dir / "other.conf").write_text("x\n")
    same = parse("acct = radius[config=radiusclient.conf]\n[vhost:a]\n"
                 "acct = radius[config=radiusclient.conf]\n")  # fmt: skip
    assert same.vhosts[0].acct == same.acct
    with pytest.raises(ConfigError) as caught:
        parse("[vhost:a]\ndpd = 1\nacct = radius[config=other.conf]\n")
    assert (caught.value.line, caught.value.key) == (6, "acct")
    assert "accounting per virtual host is not implemented ([vhost:a])" in str(caught.value)
