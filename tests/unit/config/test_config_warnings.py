"""Keys ocserv knows but ocgate ignores or refuses, renamed keys, sections, quotes and comments."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from ocgate.config import Config, ConfigWarning, parse_collector_config
from ocgate.config._options import OPTIONS, Kind, Scope, Status
from ocgate.errors import ConfigError

Parse = Callable[[str], Config]

# A valid sample value for each value kind, to exercise every known key.
SAMPLE_VALUE = {
    Kind.BOOL: "true",
    Kind.INTEGER: "10",
    Kind.STRING: '"some text"',
    Kind.WORD: "word",
    Kind.PATH: "/etc/ocserv/x",
    Kind.ADDRESS: "192.0.2.1",
    Kind.CHOICE: "new-tunnel",
}
NO_OPS = sorted(
    spec.name
    for spec in OPTIONS.values()
    if spec.status is Status.NO_OP and spec.replaced_by is None and spec.scope is not Scope.USER
)
REFUSED = sorted(spec.name for spec in OPTIONS.values() if spec.status is Status.REFUSED)


@pytest.mark.parametrize("key", NO_OPS)
def test_no_op_key_warns_once_with_its_reason(parse: Parse, source: str, key: str) -> None:
    spec = OPTIONS[key]
    lines = f"{key} = {SAMPLE_VALUE[spec.kind]}\n" * (3 if spec.multi else 2)
    config = parse(lines)
    message = f"ignored by ocgate: {spec.reason}"
    assert config.warnings == (ConfigWarning(file=source, line=4, key=key, message=message),)
    assert str(config.warnings[0]) == f"{source}:4: {key}: {message}"


@pytest.mark.parametrize("key", [k for k in NO_OPS if OPTIONS[k].harmless is not None])
def test_no_op_key_at_its_harmless_value_is_silent(parse: Parse, key: str) -> None:
    harmless = OPTIONS[key].harmless
    value = str(harmless).lower() if isinstance(harmless, bool) else str(harmless)
    assert parse(f"{key} = {value}\n").warnings == ()


@pytest.mark.parametrize("key", REFUSED)
def test_refused_key_stops_the_start_naming_file_line_and_why(
    parse: Parse, source: str, key: str
) -> None:
    spec = OPTIONS[key]
    value = SAMPLE_VALUE[spec.kind]
    with pytest.raises(ConfigError) as info:
        parse(f"dpd = 30\n{key} = {value}\n")
    text = str(info.value)
    assert text.startswith(f"{source}:5: {key}: refused, ocgate cannot honour it: "), text
    assert spec.reason in text
    assert spec.reason  # Every refusal says why.


@pytest.fixture
def refused_boolean(monkeypatch: pytest.MonkeyPatch) -> str:
    """A refused boolean key with a harmless value (no real key is one any more since
    listen-proxy-proto was implemented): listen-proxy-proto's row, turned into one."""
    key = "listen-proxy-proto"
    row = dataclasses.replace(
        OPTIONS[key], status=Status.REFUSED, reason="refused for this test", harmless=False
    )
    monkeypatch.setitem(OPTIONS, key, row)  # type: ignore[arg-type]
    return key


def test_refused_boolean_at_its_harmless_default_is_accepted(
    parse: Parse, refused_boolean: str
) -> None:
    key = refused_boolean
    assert parse(f"{key} = false\n").warnings == ()
    expected = f"no such line, or {key} = false"
    with pytest.raises(ConfigError, match=rf"\(expected: {expected}\)"):
        parse(f"{key} = true\n")


def test_the_last_line_of_a_refused_key_decides(parse: Parse, refused_boolean: str) -> None:
    assert parse("listen-proxy-proto = true\nlisten-proxy-proto = false\n").warnings == ()
    with pytest.raises(ConfigError, match=r":5: listen-proxy-proto: refused"):
        parse("listen-proxy-proto = false\nlisten-proxy-proto = yes\n")


def test_refused_key_without_a_harmless_value(parse: Parse) -> None:
    with pytest.raises(ConfigError, match=r"listen-netns: refused.*\(expected: no such line\)$"):
        parse("listen-netns = vpn\n")


@pytest.mark.parametrize("value", ["3", "0x20"])
def test_net_priority_forms(parse: Parse, value: str) -> None:
    assert [w.key for w in parse(f"net-priority = {value}\n").warnings] == ["net-priority"]


def test_ignored_values_are_still_checked(parse: Parse) -> None:
    with pytest.raises(ConfigError, match=r":4: server-stats-reset-time: not an integer"):
        parse("server-stats-reset-time = soon\n")
    with pytest.raises(ConfigError, match=r":4: rekey-method: unknown rekey method"):
        parse("rekey-method = sometimes\n")
    # ocserv's booleans: anything but true/yes is false.
    config = parse("listen-proxy-proto = maybe\nuse-utmp = true\nproxy-url = http://p\n")
    assert [w.key for w in config.warnings] == ["use-utmp", "proxy-url"]
    assert config.listen_proxy_proto is False


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("yes", True), ("false", False), ("no", False)]
)
def test_listen_proxy_proto_is_a_boolean_and_no_longer_refused(
    parse: Parse, value: str, expected: bool
) -> None:
    config = parse(f"listen-proxy-proto = {value}\n")
    assert config.listen_proxy_proto is expected
    assert config.warnings == ()
    assert OPTIONS["listen-proxy-proto"].status is Status.IMPLEMENTED
    assert parse("").listen_proxy_proto is False  # The default, as ocserv's.


def test_old_names_set_the_new_field(parse: Parse) -> None:
    config = parse("use-seccomp = true\nuse-dbus = true\n")
    assert (config.isolate_workers, config.use_occtl) == (True, True)
    config = parse("use-seccomp = true\nisolate-workers = false\n")
    assert config.isolate_workers is False  # The last line wins across the two names.


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "min-reauth-time = 300",
            "old name: ocserv replaced it with 'ban-time'",
        ),
        ("use-dbus = true", "old name: ocserv replaced it with 'use-occtl'"),
        ("use-seccomp = true", "old name: ocserv replaced it with 'isolate-workers'"),
        ("always-require-cert = true", "old name: ocserv replaced it with 'cisco-client-compat'"),
        ("session-control = true", "ignored by ocgate: deprecated by ocserv"),
        ('cgroup = "cpuset,cpu:test"', "ignored by ocgate: ocserv removed it in 1.5.0"),
        ("iroute = 10.0.0.0/8", "only valid in per-user and per-group config files; ignored"),
        ("explicit-ipv4 = 192.0.2.1", "only valid in per-user and per-group config files; ignored"),
        ("hostname = laptop", "only valid in per-user and per-group config files; ignored"),
    ],
)
def test_renamed_deprecated_and_per_user_keys(
    parse: Parse, source: str, line: str, message: str
) -> None:
    config = parse(line + "\n" + line + "\n")
    key = line.split(" = ")[0]
    assert config.warnings == (ConfigWarning(file=source, line=4, key=key, message=message),)


def test_renamed_value_is_checked(parse: Parse) -> None:
    with pytest.raises(Exception, match=r":4: min-reauth-time: not an integer"):
        parse("min-reauth-time = soon\n")


def test_empty_value_is_ignored_with_warning(parse: Parse, source: str) -> None:
    config = parse('mtu =\nbanner = ""\n')
    assert config.mtu is None
    assert config.banner is None
    assert [str(w) for w in config.warnings] == [
        f"{source}:4: mtu: empty value; ignored",
        f"{source}:5: banner: empty value; ignored",
    ]


class TestSections:
    def test_vhost_is_read_not_skipped(self, parse: Parse) -> None:
        # Virtual hosts are implemented (tests/unit/config/test_config_vhosts.py): no warning.
        config = parse("tcp-port = 1443\n[vhost:www.example.com]\nauth = certificate\n")
        assert config.tcp_port == 1443
        assert [m.name for m in config.auth] == ["plain"]
        assert [m.name for m in config.vhosts[0].auth] == ["certificate"]
        assert config.vhosts[0].tcp_port == 1443
        assert config.warnings == ()

    def test_each_vhost_is_its_own(self, parse: Parse) -> None:
        config = parse("[vhost:a]\ndpd = 1\n[vhost:b]\ndpd = 2\n")
        assert [(v.vhost_name, v.dpd) for v in config.vhosts] == [("a", 1), ("b", 2)]
        assert config.dpd == 90

    def test_empty_section_returns_to_top_level(self, parse: Parse) -> None:
        config = parse("[vhost:a]\ndpd = 1\n[]\ndpd = 2\n")
        assert config.dpd == 2

    def test_unknown_section_is_skipped(self, parse: Parse, source: str) -> None:
        config = parse("[global]\ndpd = 1\n")
        assert config.dpd == 90
        assert [str(w) for w in config.warnings] == [
            f"{source}:4: [global]: unknown section; skipped"
        ]


class TestQuotesAndComments:
    def test_quotes_and_inline_comments(self, parse: Parse) -> None:
        config = parse(
            "# comment line\n"
            "; also a comment\n"
            'default-domain = "example.com"   # the domain\n'
            'banner = "Welcome"\n'
            "tcp-port = 8443 # inline\n"
            "dpd=30\n"
            "\tkeepalive : 600\n"
        )
        assert config.default_domain == "example.com"
        assert config.banner == "Welcome"
        assert config.tcp_port == 8443
        assert config.dpd == 30
        assert config.keepalive == 600

    def test_hash_without_whitespace_is_part_of_the_value(self, parse: Parse) -> None:
        assert parse("pre-login-banner = issue#42\n").pre_login_banner == "issue#42"

    def test_quoted_auth_and_paths(self, parse_raw: Parse) -> None:
        config = parse_raw(
            'auth = "certificate"\nserver-cert = "server-cert.pem"\nserver-key = "server-key.pem"\n'
        )
        assert config.auth[0].name == "certificate"


def test_the_collector_alone_does_not_judge_the_vpn_s_keys(source: str) -> None:
    # ocgate nvm serve reads only its own keys of an ocserv.conf, not the VPN's (listen-netns is
    # refused by the gateway).
    config = parse_collector_config(
        "listen-proxy-proto = true\nlisten-netns = vpn\nnvm-listen = udp://127.0.0.1:2055\n",
        source=source,
    )
    assert len(config.settings.listen) == 1
    assert config.lines == {"nvm-listen": 3}
