"""Keys ocserv knows but ocgate does not implement, renamed keys, sections, quotes and comments."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ocgate.config import KNOWN_OCSERV_KEYS, Config, ConfigWarning
from ocgate.config._options import OPTIONS, Kind, Scope

Parse = Callable[[str], Config]
NOT_IMPLEMENTED = "not implemented by ocgate yet; ignored"

# A valid sample value for each value kind, to exercise every known key.
SAMPLE_VALUE = {
    Kind.BOOL: "true",
    Kind.INTEGER: "10",
    Kind.STRING: '"some text"',
    Kind.WORD: "word",
    Kind.PATH: "/etc/ocserv/x",
    Kind.ADDRESS: "192.0.2.1",
}
UNIMPLEMENTED = sorted(
    spec.name
    for spec in OPTIONS.values()
    if not spec.implemented
    and spec.replaced_by is None
    and spec.deprecated is None
    and spec.fatal is None
    and spec.scope is not Scope.USER
)


@pytest.mark.parametrize("key", UNIMPLEMENTED)
def test_known_unimplemented_key_warns_once(parse: Parse, source: str, key: str) -> None:
    spec = OPTIONS[key]
    value = "ssl" if key == "rekey-method" else SAMPLE_VALUE[spec.kind]
    if key == "match-tls-dtls-ciphers":
        value = "false"
    lines = f"{key} = {value}\n" * (3 if spec.multi else 2)
    config = parse(lines)
    assert config.warnings == (
        ConfigWarning(file=source, line=4, key=key, message=NOT_IMPLEMENTED),
    )
    assert str(config.warnings[0]) == f"{source}:4: {key}: {NOT_IMPLEMENTED}"


@pytest.mark.parametrize("value", ["3", "0x20"])
def test_net_priority_forms(parse: Parse, value: str) -> None:
    assert [w.key for w in parse(f"net-priority = {value}\n").warnings] == ["net-priority"]


def test_unimplemented_values_are_still_checked(parse: Parse) -> None:
    config = parse("listen-proxy-proto = maybe\nuse-utmp = true\nproxy-url = http://p\n")
    assert [w.key for w in config.warnings] == ["listen-proxy-proto", "use-utmp", "proxy-url"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "min-reauth-time = 300",
            "old name: ocserv replaced it with 'ban-time'",
        ),
        ("use-dbus = true", "old name: ocserv replaced it with 'use-occtl'; " + NOT_IMPLEMENTED),
        (
            "use-seccomp = true",
            "old name: ocserv replaced it with 'isolate-workers'; " + NOT_IMPLEMENTED,
        ),
        ("always-require-cert = true", "old name: ocserv replaced it with 'cisco-client-compat'"),
        ("session-control = true", "deprecated by ocserv; ignored"),
        ('cgroup = "cpuset,cpu:test"', "removed in ocserv 1.5.0; ignored"),
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
    def test_vhost_is_skipped_with_one_warning(self, parse: Parse, source: str) -> None:
        config = parse(
            "tcp-port = 1443\n"
            "[vhost:www.example.com]\n"
            "auth = certificate\n"
            "tcp-port = 9\n"
            "no-such-key = anything\n"
            "server-cert = /missing.pem\n"
        )
        assert config.tcp_port == 1443
        assert [m.name for m in config.auth] == ["plain"]
        assert config.warnings == (
            ConfigWarning(
                file=source,
                line=5,
                key="[vhost:www.example.com]",
                message="virtual hosts are not implemented; section ignored",
            ),
        )

    def test_each_vhost_warns(self, parse: Parse) -> None:
        config = parse("[vhost:a]\ndpd = 1\n[vhost:b]\ndpd = 2\n")
        assert [(w.line, w.key) for w in config.warnings] == [(4, "[vhost:a]"), (6, "[vhost:b]")]
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


BRIEF_KEYS = [
    "auth",
    "enable-auth",
    "tcp-port",
    "udp-port",
    "listen-host",
    "server-cert",
    "server-key",
    "ca-cert",
    "ipv4-network",
    "ipv4-netmask",
    "ipv6-network",
    "ipv6-subnet-prefix",
    "ipv6-prefix",
    "dns",
    "ipv4-dns",
    "ipv6-dns",
    "split-dns",
    "default-domain",
    "route",
    "no-route",
    "tunnel-all-dns",
    "mtu",
    "dpd",
    "mobile-dpd",
    "keepalive",
    "idle-timeout",
    "mobile-idle-timeout",
    "session-timeout",
    "cookie-timeout",
    "auth-timeout",
    "max-clients",
    "max-same-clients",
    "device",
    "predictable-ips",
    "pid-file",
    "socket-file",
    "run-as-user",
    "run-as-group",
    "banner",
    "pre-login-banner",
    "tls-priorities",
    "cisco-client-compat",
    "log-level",
    "min-reauth-time",
    "use-dbus",
    "use-seccomp",
    "always-require-cert",
    "isolate-workers",
    "max-ban-score",
    "ban-reset-time",
    "ban-time",
    "ban-points-wrong-password",
    "ban-points-connection",
    "ban-points-kkdcp",
    "rate-limit-ms",
    "use-occtl",
    "occtl-socket-file",
    "connect-script",
    "disconnect-script",
    "host-update-script",
    "compression",
    "no-compress-limit",
    "dtls-legacy",
    "dtls-psk",
    "switch-to-tcp-timeout",
    "try-mtu-discovery",
    "match-tls-dtls-ciphers",
    "cert-user-oid",
    "cert-group-oid",
    "crl",
    "select-group",
    "default-select-group",
    "auto-select-group",
    "select-group-by-url",
    "config-per-user",
    "config-per-group",
    "default-user-config",
    "default-group-config",
    "rekey-time",
    "rekey-method",
    "persistent-cookies",
    "deny-roaming",
    "stats-report-time",
    "server-stats-reset-time",
    "listen-proxy-proto",
    "udp-listen-host",
    "ping-leases",
    "custom-header",
    "included-http-headers",
    "user-profile",
    "nbns",
    "ipv4-nbns",
    "ipv6-nbns",
    "net-priority",
    "output-buffer",
    "no-udp",
    "camouflage",
    "camouflage_secret",
    "camouflage_realm",
    "kkdcp",
    "acct",
    "syslog-facility",
    "use-utmp",
    "sec-mod-scale",
    "restrict-user-to-routes",
    "restrict-user-to-ports",
    "rx-data-per-sec",
    "tx-data-per-sec",
    "client-bypass-protocol",
    "listen-host-is-dyndns",
    "listen-netns",
    "proxy-url",
    "explicit-ipv4",
    "explicit-ipv6",
    "iroute",
    "hostname",
    "append-routes",
    "expose-iroutes",
    "route-add-cmd",
    "route-del-cmd",
    "cisco-svc-client-compat",
    "compression-algo-priority",
    "dh-params",
    "pin-file",
    "srk-pin-file",
    "key-pin",
    "srk-pin",
    "ocsp-response",
    "chroot-dir",
    "limit-worker-memory",
    "server-drain-ms",
    "sec-mod-db-cleanup-time",
    "debug-no-secmod-stats",
    "session-control",
    "cgroup",
    "listen-clear-file",
]


# ocgate's own keys (not ocserv's): the Prometheus endpoint, processes, store and the collector.
def _is_extension(key: str) -> bool:
    return key in {"metrics-listen", "workers", "session-store"} or key.startswith("nvm-")


def test_table_covers_ocserv_keys() -> None:
    assert set(BRIEF_KEYS) <= KNOWN_OCSERV_KEYS
    ocserv_keys = {key for key in KNOWN_OCSERV_KEYS if not _is_extension(key)}
    assert set(BRIEF_KEYS) == ocserv_keys  # Nothing extra crept in either.
