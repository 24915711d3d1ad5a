"""docs/ocserv-keys.md is the option table rendered, and the table is complete and consistent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ocgate.config import KNOWN_OCSERV_KEYS, PER_USER_KEYS, parse_user_config
from ocgate.config._keydoc import COMMAND_LINE, EXTENSION_KEYS, render
from ocgate.config._options import OPTIONS, Status
from ocgate.daemon._main import build_parser
from ocgate.errors import ConfigError

DOC = Path(__file__).parents[3] / "docs" / "ocserv-keys.md"
REGENERATE = "python -m ocgate.config._keydoc > docs/ocserv-keys.md"
_ROW = re.compile(r"^\| `([^`]+)` \| ([a-z ]+) \| (\*\*refused\*\*|implemented|no-op)", re.M)
_STATUS = {"implemented": Status.IMPLEMENTED, "**refused**": Status.REFUSED, "no-op": Status.NO_OP}

# ocserv 1.5 src/sup-config/file.c: the keys read from per-user and per-group files.
OCSERV_PER_USER_KEYS = {
    "no-udp", "restrict-user-to-routes", "restrict-user-to-ports", "tunnel-all-dns",
    "deny-roaming", "route", "no-route", "iroute", "split-dns", "dns", "ipv4-dns", "ipv6-dns",
    "nbns", "ipv4-nbns", "ipv6-nbns", "ipv4-network", "ipv4-netmask", "ipv6-network",
    "ipv6-subnet-prefix", "explicit-ipv4", "explicit-ipv6", "hostname", "rx-data-per-sec",
    "tx-data-per-sec", "stats-report-time", "session-timeout", "mtu", "dpd", "mobile-dpd",
    "idle-timeout", "mobile-idle-timeout", "keepalive", "max-same-clients", "net-priority",
    "user-profile", "client-bypass-protocol",
}  # fmt: skip


# Every ocserv 1.5 key (ocserv-compatibility.md §4 and src/config.c), the reference list.
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


def test_table_covers_ocserv_keys() -> None:
    assert set(BRIEF_KEYS) <= KNOWN_OCSERV_KEYS
    ocserv_keys = {key for key in KNOWN_OCSERV_KEYS if key not in EXTENSION_KEYS}
    assert set(BRIEF_KEYS) == ocserv_keys  # Nothing extra crept in either.


def test_document_is_the_rendered_table() -> None:
    assert DOC.read_text() == render(), f"docs/ocserv-keys.md is stale: run {REGENERATE}"


def test_document_lists_every_key_with_its_status() -> None:
    rows = {key: (scope, _STATUS[status]) for key, scope, status in _ROW.findall(DOC.read_text())}
    assert set(rows) == set(KNOWN_OCSERV_KEYS), f"missing or extra rows: run {REGENERATE}"
    assert set(BRIEF_KEYS) <= set(rows)  # Every ocserv key of the reference list.
    for name, spec in OPTIONS.items():
        assert rows[name] == (spec.scope.value, spec.status), (name, REGENERATE)


def test_every_key_that_is_not_implemented_says_why() -> None:
    for spec in OPTIONS.values():
        if spec.status is not Status.IMPLEMENTED:
            assert spec.reason, spec.name
        if spec.user_status not in (None, Status.IMPLEMENTED):
            assert spec.user_reason, spec.name


def test_extensions_are_not_ocserv_keys() -> None:
    assert not EXTENSION_KEYS & set(BRIEF_KEYS)
    assert all(OPTIONS[name].status is Status.IMPLEMENTED for name in EXTENSION_KEYS)


def test_per_user_keys_are_ocserv_s() -> None:
    assert set(PER_USER_KEYS) == OCSERV_PER_USER_KEYS


# A valid value for each per-user key (a key missing here fails the test below).
PER_USER_SAMPLES = {
    "no-udp": "true", "restrict-user-to-routes": "true", "restrict-user-to-ports": "tcp(443)",
    "tunnel-all-dns": "true", "deny-roaming": "true", "route": "10.9.0.0/16",
    "no-route": "10.9.5.0/24", "iroute": "10.8.0.0/16", "split-dns": "example.com",
    "dns": "192.0.2.53", "ipv4-dns": "192.0.2.53", "ipv6-dns": "2001:db8::53",
    "nbns": "192.0.2.54", "ipv4-nbns": "192.0.2.54", "ipv6-nbns": "2001:db8::54",
    "ipv4-network": "10.1.0.0/24", "ipv4-netmask": "255.255.255.0", "ipv6-network": "fd01::/48",
    "ipv6-subnet-prefix": "64", "explicit-ipv4": "192.0.2.7", "explicit-ipv6": "2001:db8::7",
    "hostname": "laptop", "rx-data-per-sec": "100000", "tx-data-per-sec": "100000",
    "stats-report-time": "60", "session-timeout": "3600", "mtu": "1300", "dpd": "30",
    "mobile-dpd": "60", "idle-timeout": "600", "mobile-idle-timeout": "900", "keepalive": "60",
    "max-same-clients": "1", "net-priority": "3", "user-profile": __file__,
    "client-bypass-protocol": "true",
}  # fmt: skip


@pytest.mark.parametrize("key", sorted(OCSERV_PER_USER_KEYS))
def test_per_user_status_is_what_the_per_user_loader_does(key: str) -> None:
    spec = OPTIONS[key]
    text = f"{key} = {PER_USER_SAMPLES[key]}\n"
    if spec.user_status is Status.REFUSED:
        with pytest.raises(ConfigError) as info:
            parse_user_config(text, source="/etc/ocserv/users/u")
        assert str(info.value).startswith(f"/etc/ocserv/users/u:1: {key}: refused"), info.value
        assert spec.user_reason in str(info.value)
        return
    layer = parse_user_config(text, source="/etc/ocserv/users/u")
    warnings = [w.message for w in layer.warnings]
    if spec.user_status is Status.NO_OP:
        assert warnings == [f"ignored by ocgate: {spec.user_reason}"]
    else:
        assert warnings == [], (key, warnings)


def _option_strings() -> set[str]:
    return {name for action in build_parser()._actions for name in action.option_strings}


@pytest.mark.parametrize("flag", COMMAND_LINE, ids=lambda flag: flag.names[-1])
def test_command_line_flag_status_matches_the_parser(flag: object) -> None:
    from ocgate.config._keydoc import Flag

    assert isinstance(flag, Flag)
    known = _option_strings()
    if flag.status is Status.REFUSED:
        assert not set(flag.names) & known, flag.names
    else:  # Implemented, or accepted as a no-op: the parser takes it.
        assert set(flag.names) <= known, flag.names


def test_serve_accepts_every_ocserv_flag() -> None:
    # The flags of ``ocserv --help`` (1.1.6 and later), as an init script passes them.
    args = build_parser().parse_args(
        ["-f", "-d", "2", "-c", "x.conf", "-t", "--no-chdir", "-p", "x.pid", "-x",
         "--syslog-facility", "local3", "-s", "-e"]
    )  # fmt: skip
    assert (args.foreground, args.debug, args.config, args.test_config) == (True, 2, "x.conf", True)
    assert (args.no_chdir, args.pid_file, args.traceable) == (True, "x.pid", True)
    assert args.syslog_facility == "local3"
    assert (args.syslog, args.log_stderr) == (True, True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--syslog-facility", "nonsense"])
