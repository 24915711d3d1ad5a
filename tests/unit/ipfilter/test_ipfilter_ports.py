"""``restrict-user-to-ports``: ocserv's syntax, parsed strictly, in ocserv.conf and per user."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ocgate.config import parse_config, parse_user_config
from ocgate.errors import ConfigError
from ocgate.ipfilter import EXPECTED_PORTS, PortPolicy, PortProto, PortRule, parse_port_policy
from tests.unit.gateway.conftest import make_config_text


@pytest.mark.parametrize(
    ("text", "rules", "deny"),
    [
        # The two examples of ocserv's doc/sample.config.
        (
            "tcp(443), tcp(80), udp(443), sctp(99), tcp(583), icmp(), icmpv6()",
            ["tcp(443)", "tcp(80)", "udp(443)", "sctp(99)", "tcp(583)", "icmp()", "icmpv6()"],
            False,
        ),
        ("!(tcp(443), tcp(80))", ["tcp(443)", "tcp(80)"], True),
        ("!(tcp(22), udp(1000-2000))", ["tcp(22)", "udp(1000-2000)"], True),
        ("  TCP ( 443 ) ,Udp(53),ESP()", ["tcp(443)", "udp(53)", "esp()"], False),
        ("! ( icmp() )", ["icmp()"], True),
        ("udp(1 - 65535)", ["udp(1-65535)"], False),
        ("tcp(443), tcp(443)", ["tcp(443)"], False),  # duplicates collapse
        ("udp(53-53)", ["udp(53)"], False),
    ],
)
def test_valid_values(text: str, rules: list[str], deny: bool) -> None:
    policy = parse_port_policy(text)
    assert [str(r) for r in policy.rules] == rules
    assert policy.deny is deny
    assert policy.entries() == tuple(("!" if deny else "") + r for r in rules)


def test_rules_carry_protocol_numbers_and_ranges() -> None:
    assert parse_port_policy("udp(1000-2000), icmpv6()") == PortPolicy(
        (PortRule(PortProto.UDP, 1000, 2000), PortRule(PortProto.ICMPV6)), deny=False
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("!()", "empty"),
        ("tcp", "not PROTO(PORT)"),
        ("tcp(443", "not PROTO(PORT)"),
        ("tcp(443),", "not PROTO(PORT)"),
        ("tcp(443) udp(53)", "not PROTO(PORT)"),
        ("gre()", "unknown protocol"),
        ("tcp()", "needs a port"),
        ("tcp(http)", "needs a port"),
        ("tcp(0)", "out of range"),
        ("udp(65536)", "out of range"),
        ("udp(2000-1000)", "empty port range"),
        ("tcp(1-2-3)", "needs a port"),
        ("icmp(8)", "takes no port"),
        ("!tcp(22)", "brackets"),
        ("!(tcp(22)) trailing", "brackets"),
        ("!(tcp(22)", "brackets"),
        ("tcp(22))", "not PROTO(PORT)"),
    ],
)
def test_malformed_values_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        parse_port_policy(text)
    assert info.value.expected == EXPECTED_PORTS


def test_a_bad_value_in_ocserv_conf_names_file_line_and_form(config_dir: Path) -> None:
    text = make_config_text(config_dir, 'restrict-user-to-ports = "tcp(443), udp(dns)"\n')
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="/etc/ocserv/ocserv.conf")
    err = info.value
    assert (err.file, err.key) == ("/etc/ocserv/ocserv.conf", "restrict-user-to-ports")
    assert err.line == text.count("\n")  # The last line.
    assert str(err).startswith(f"/etc/ocserv/ocserv.conf:{err.line}: restrict-user-to-ports:")
    assert "udp(dns)" in err.message
    assert err.expected == EXPECTED_PORTS


def test_a_bad_value_in_a_per_user_file_names_file_and_line() -> None:
    text = "dpd = 60\nrestrict-user-to-ports = tcp(22), bogus(1)\n"
    with pytest.raises(ConfigError) as info:
        parse_user_config(text, source="/etc/ocserv/users/alice")
    assert (info.value.file, info.value.line) == ("/etc/ocserv/users/alice", 2)
    assert "bogus" in info.value.message


def test_the_keys_land_in_the_config(config_dir: Path) -> None:
    text = make_config_text(
        config_dir, 'restrict-user-to-ports = "!(tcp(22))"\nrestrict-user-to-routes = true\n'
    )
    config = parse_config(text, source="t.conf")
    assert config.restrict_user_to_routes is True
    assert config.restrict_user_to_ports == parse_port_policy("!(tcp(22))")
    assert not [w for w in config.warnings if w.key.startswith("restrict-user")]
    plain = parse_config(make_config_text(config_dir), source="t.conf")
    assert (plain.restrict_user_to_routes, plain.restrict_user_to_ports) == (False, None)
