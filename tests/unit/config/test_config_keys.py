"""Every implemented ocserv.conf key: its value and its default."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest

from ocgate.config import AuthMethod, Config

Parse = Callable[[str], Config]
"""The ``parse``/``parse_raw`` fixtures of conftest.py (``parse`` prepends 3 base lines)."""


def test_defaults_are_ocserv_builtins(parse: Parse, conf_dir: Path) -> None:
    config = parse("")
    assert config.auth == (AuthMethod(name="plain", params={"passwd": str(conf_dir / "ocpasswd")}),)
    assert config.enable_auth == ()
    assert config.listen_host is None
    assert config.tcp_port == 443
    assert config.udp_port is None
    assert config.server_cert == (str(conf_dir / "server-cert.pem"),)
    assert config.server_key == (str(conf_dir / "server-key.pem"),)
    assert config.ca_cert is None
    assert config.tls_priorities is None
    assert config.cisco_client_compat is False
    assert config.ipv4_network is None
    assert config.ipv6_network is None
    assert config.ipv6_subnet_prefix == 128
    assert config.predictable_ips is True
    assert config.device == "vpns"
    assert config.dns == ()
    assert config.split_dns == ()
    assert config.default_domain is None
    assert config.route == ()
    assert config.route_default is False
    assert config.no_route == ()
    assert config.tunnel_all_dns is False
    assert config.mtu is None
    assert config.banner is None
    assert config.pre_login_banner is None
    assert (config.dpd, config.mobile_dpd, config.keepalive) == (90, 1800, 32400)
    assert (config.idle_timeout, config.mobile_idle_timeout, config.session_timeout) == (None,) * 3
    assert (config.cookie_timeout, config.auth_timeout) == (300, 240)
    assert (config.max_clients, config.max_same_clients) == (0, 0)
    assert config.pid_file is None
    assert config.socket_file == "/var/run/ocserv-socket"
    assert (config.run_as_user, config.run_as_group) == (None, None)
    assert config.log_level == 2
    assert config.warnings == ()


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("tcp-port = 4443", "tcp_port", 4443),
        ("udp-port = 443", "udp_port", 443),
        ("udp-port = 0", "udp_port", None),
        ("listen-host = 192.0.2.1", "listen_host", "192.0.2.1"),
        ("listen-host = vpn.example.com", "listen_host", "vpn.example.com"),
        (
            "tls-priorities = NORMAL:%SERVER_PRECEDENCE",
            "tls_priorities",
            "NORMAL:%SERVER_PRECEDENCE",
        ),
        ("cisco-client-compat = true", "cisco_client_compat", True),
        ("cisco-client-compat = YES", "cisco_client_compat", True),
        ("cisco-client-compat = false", "cisco_client_compat", False),
        ("cisco-client-compat = 1", "cisco_client_compat", False),  # ocserv READ_TF
        ("predictable-ips = false", "predictable_ips", False),
        ("device = tun-oc_1", "device", "tun-oc_1"),
        ("dns = 192.0.2.53", "dns", (ipaddress.ip_address("192.0.2.53"),)),
        ("dns = 2001:db8::53", "dns", (ipaddress.ip_address("2001:db8::53"),)),
        ("split-dns = corp.example", "split_dns", ("corp.example",)),
        (
            "default-domain = example.com one.example.com",
            "default_domain",
            "example.com one.example.com",
        ),
        ("tunnel-all-dns = true", "tunnel_all_dns", True),
        ("mtu = 1400", "mtu", 1400),
        ("mtu = 0", "mtu", None),
        ('banner = "Hello there"', "banner", "Hello there"),
        ("pre-login-banner = Authorised use only", "pre_login_banner", "Authorised use only"),
        ("dpd = 30", "dpd", 30),
        ("mobile-dpd = 600", "mobile_dpd", 600),
        ("keepalive = 300", "keepalive", 300),
        ("idle-timeout = 1200", "idle_timeout", 1200),
        ("idle-timeout = 0", "idle_timeout", None),
        ("mobile-idle-timeout = 2400", "mobile_idle_timeout", 2400),
        ("session-timeout = 86400", "session_timeout", 86400),
        ("session-timeout = 0", "session_timeout", None),
        ("cookie-timeout = 60", "cookie_timeout", 60),
        ("auth-timeout = 40", "auth_timeout", 40),
        ("max-clients = 16", "max_clients", 16),
        ("max-same-clients = 2", "max_same_clients", 2),
        ("socket-file = /run/ocserv-socket", "socket_file", "/run/ocserv-socket"),
        ("run-as-user = nobody", "run_as_user", "nobody"),
        ("run-as-group = daemon", "run_as_group", "daemon"),
        ("log-level = 3", "log_level", 3),
    ],
)
def test_scalar_key(parse: Parse, line: str, field: str, value: object) -> None:
    assert getattr(parse(line + "\n"), field) == value


def test_last_line_wins_for_single_value_keys(parse: Parse) -> None:
    assert parse("tcp-port = 1\ntcp-port = 2\n").tcp_port == 2


def test_repeated_keys_collect(parse: Parse) -> None:
    config = parse("split-dns = a.example\nsplit-dns = b.example\n")
    assert config.split_dns == ("a.example", "b.example")


def test_dns_family_shares_one_list_in_file_order(parse: Parse) -> None:
    config = parse("ipv6-dns = 2001:db8::1\ndns = 192.0.2.1\nipv4-dns = 192.0.2.2\n")
    assert [str(a) for a in config.dns] == ["2001:db8::1", "192.0.2.1", "192.0.2.2"]


def test_pid_file_resolved_against_config_dir(parse: Parse, conf_dir: Path) -> None:
    assert parse("pid-file = run/ocserv.pid\n").pid_file == str(conf_dir / "run" / "ocserv.pid")
    assert parse("pid-file = /var/run/ocserv.pid\n").pid_file == "/var/run/ocserv.pid"


def test_ca_cert(parse: Parse, conf_dir: Path) -> None:
    assert parse("ca-cert = ./ca.pem\n").ca_cert == str(conf_dir / "ca.pem")


def test_several_certificate_pairs(parse: Parse, conf_dir: Path) -> None:
    config = parse("server-cert = ca.pem\nserver-key = otp\n")
    assert config.server_cert == (str(conf_dir / "server-cert.pem"), str(conf_dir / "ca.pem"))
    assert config.server_key == (str(conf_dir / "server-key.pem"), str(conf_dir / "otp"))


class TestAuth:
    def test_plain_with_otp(self, parse_raw: Parse, conf_dir: Path) -> None:
        config = parse_raw(
            'auth = "plain[passwd=./ocpasswd, otp=otp]"\n'
            "server-cert = server-cert.pem\nserver-key = server-key.pem\n"
        )
        assert config.auth == (
            AuthMethod(
                name="plain",
                params={"passwd": str(conf_dir / "ocpasswd"), "otp": str(conf_dir / "otp")},
            ),
        )
        assert config.passwd_file == str(conf_dir / "ocpasswd")

    def test_legacy_plain_form(self, parse_raw: Parse, conf_dir: Path) -> None:
        config = parse_raw("auth = plain[ocpasswd]\nserver-cert = ca.pem\nserver-key = otp\n")
        assert config.auth[0].params == {"passwd": str(conf_dir / "ocpasswd")}

    def test_certificate_and_alternatives(self, parse: Parse, conf_dir: Path) -> None:
        config = parse(
            "auth = certificate\nenable-auth = gssapi[keytab=k.tab,tgt-freshness-time=900]\n"
        )
        assert [m.name for m in config.auth] == ["plain", "certificate"]
        assert config.enable_auth == (
            AuthMethod(
                name="gssapi",
                params={"keytab": str(conf_dir / "k.tab"), "tgt-freshness-time": "900"},
            ),
        )

    def test_pam_and_radius(self, parse_raw: Parse, conf_dir: Path) -> None:
        tail = "server-cert = server-cert.pem\nserver-key = server-key.pem\n"
        pam = parse_raw('auth = "pam[gid-min=1000]"\n' + tail)
        assert pam.auth == (AuthMethod(name="pam", params={"gid-min": "1000"}),)
        assert pam.passwd_file is None
        radius = parse_raw("auth = radius[config=rad.conf,groupconfig=true]\n" + tail)
        assert radius.auth[0].params == {
            "config": str(conf_dir / "rad.conf"),
            "groupconfig": "true",
        }
        legacy = parse_raw("auth = RADIUS[rad.conf]\n" + tail)
        assert legacy.auth[0] == AuthMethod(
            name="radius", params={"config": str(conf_dir / "rad.conf")}
        )

    def test_bare_pam(self, parse_raw: Parse) -> None:
        config = parse_raw(
            "auth = pam\nserver-cert = server-cert.pem\nserver-key = server-key.pem\n"
        )
        assert config.auth == (AuthMethod(name="pam", params={}),)


class TestIPv4Network:
    def test_dotted_netmask(self, parse: Parse) -> None:
        config = parse("ipv4-network = 192.168.1.0\nipv4-netmask = 255.255.255.0\n")
        assert config.ipv4_network == ipaddress.IPv4Network("192.168.1.0/24")

    def test_cidr(self, parse: Parse) -> None:
        assert parse("ipv4-network = 10.8.0.0/16\n").ipv4_network == ipaddress.IPv4Network(
            "10.8.0.0/16"
        )

    def test_cidr_with_matching_netmask(self, parse: Parse) -> None:
        config = parse("ipv4-netmask = 255.255.0.0\nipv4-network = 10.8.0.0/16\n")
        assert config.ipv4_network == ipaddress.IPv4Network("10.8.0.0/16")

    def test_host_bits_cleared_with_warning(self, parse: Parse, source: str) -> None:
        config = parse("ipv4-network = 192.168.1.77/24\n")
        assert config.ipv4_network == ipaddress.IPv4Network("192.168.1.0/24")
        assert [str(w) for w in config.warnings] == [
            f"{source}:4: ipv4-network: host bits set in 192.168.1.77/24; using 192.168.1.0/24"
        ]

    def test_netmask_without_network_is_ignored(self, parse: Parse, source: str) -> None:
        config = parse("ipv4-netmask = 255.255.255.0\n")
        assert config.ipv4_network is None
        assert [str(w) for w in config.warnings] == [
            f"{source}:4: ipv4-netmask: ignored: there is no ipv4-network"
        ]


class TestIPv6Network:
    def test_cidr_and_subnet_prefix(self, parse: Parse) -> None:
        config = parse("ipv6-network = fda9:4efe:7e3b::/48\nipv6-subnet-prefix = 64\n")
        assert config.ipv6_network == ipaddress.IPv6Network("fda9:4efe:7e3b::/48")
        assert config.ipv6_subnet_prefix == 64

    def test_old_ipv6_prefix_key(self, parse: Parse) -> None:
        config = parse("ipv6-network = fd00:1::\nipv6-prefix = 64\n")
        assert config.ipv6_network == ipaddress.IPv6Network("fd00:1::/64")
        assert config.ipv6_subnet_prefix == 128
        assert config.warnings == ()

    def test_subnet_prefix_zero_means_unset(self, parse: Parse) -> None:
        assert parse("ipv6-network = fd00::/48\nipv6-subnet-prefix = 0\n").ipv6_subnet_prefix == 128

    def test_subnet_prefix_without_network(self, parse: Parse) -> None:
        assert parse("ipv6-subnet-prefix = 64\n").ipv6_subnet_prefix == 64

    def test_host_bits_cleared(self, parse: Parse) -> None:
        config = parse("ipv6-network = fd00::1/48\n")
        assert config.ipv6_network == ipaddress.IPv6Network("fd00::/48")
        assert len(config.warnings) == 1


class TestRoutes:
    def test_forms(self, parse: Parse) -> None:
        config = parse(
            "route = 10.0.0.0/255.0.0.0\nroute = 172.16.0.0/12\nroute = fd00::/48\n"
            "route = 192.0.2.7\nroute = 2001:db8::7\n"
        )
        assert [str(n) for n in config.route] == [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "fd00::/48",
            "192.0.2.7/32",
            "2001:db8::7/128",
        ]
        assert config.route_default is False
        assert config.tunnel_all_dns is False

    def test_duplicates_dropped(self, parse: Parse) -> None:
        assert len(parse("route = 10.0.0.0/8\nroute = 10.0.0.0/255.0.0.0\n").route) == 1

    @pytest.mark.parametrize("default", ["default", "0.0.0.0/0", "::/0", "0.0.0.0/0.0.0.0"])
    def test_default_means_full_tunnel(self, parse: Parse, default: str) -> None:
        config = parse(f"route = {default}\n")
        assert config.route_default is True
        assert config.route == ()
        assert config.tunnel_all_dns is True

    def test_default_discards_other_routes_with_warning(self, parse: Parse, source: str) -> None:
        config = parse("route = 10.0.0.0/8\nroute = default\nroute = 172.16.0.0/12\n")
        assert config.route == ()
        assert config.route_default is True
        assert [str(w) for w in config.warnings] == [
            f"{source}:5: route: full tunnel (default route): the other 2 route(s) are ignored"
        ]

    def test_tunnel_all_dns_forced_even_if_false(self, parse: Parse) -> None:
        assert parse("tunnel-all-dns = false\nroute = default\n").tunnel_all_dns is True

    def test_host_bits_cleared_with_warning(self, parse: Parse, source: str) -> None:
        config = parse("route = 10.1.2.3/255.255.0.0\nno-route = 192.168.5.1/24\n")
        assert [str(n) for n in config.route] == ["10.1.0.0/16"]
        assert [str(n) for n in config.no_route] == ["192.168.5.0/24"]
        assert [str(w) for w in config.warnings] == [
            f"{source}:4: route: host bits set in 10.1.2.3/255.255.0.0; using 10.1.0.0/16",
            f"{source}:5: no-route: host bits set in 192.168.5.1/24; using 192.168.5.0/24",
        ]

    def test_no_route(self, parse: Parse) -> None:
        config = parse("no-route = 192.168.5.0/255.255.255.0\nno-route = fd00:1::/64\n")
        assert [str(n) for n in config.no_route] == ["192.168.5.0/24", "fd00:1::/64"]


class TestTimers:
    def test_mobile_dpd_zero_means_dpd(self, parse: Parse) -> None:
        config = parse("dpd = 45\nmobile-dpd = 0\n")
        assert config.mobile_dpd == 45
        assert parse("mobile-dpd = 0\n").mobile_dpd == 90

    def test_mobile_idle_timeout_falls_back_to_idle_timeout(self, parse: Parse) -> None:
        assert parse("idle-timeout = 1200\n").mobile_idle_timeout == 1200

    def test_mobile_idle_timeout_zero_disables(self, parse: Parse) -> None:
        config = parse("idle-timeout = 1200\nmobile-idle-timeout = 0\n")
        assert (config.idle_timeout, config.mobile_idle_timeout) == (1200, None)


class TestCompat:
    def test_always_require_cert_false_means_cisco_client_compat(
        self, parse: Parse, source: str
    ) -> None:
        config = parse("always-require-cert = false\n")
        assert config.cisco_client_compat is True
        assert [str(w) for w in config.warnings] == [
            f"{source}:4: always-require-cert: "
            "old name: ocserv replaced it with 'cisco-client-compat'"
        ]

    def test_always_require_cert_true_changes_nothing(self, parse: Parse) -> None:
        assert parse("always-require-cert = true\n").cisco_client_compat is False

    def test_later_line_wins(self, parse: Parse) -> None:
        assert (
            parse("always-require-cert = false\ncisco-client-compat = false\n").cisco_client_compat
            is False
        )
        assert (
            parse("cisco-client-compat = false\nalways-require-cert = false\n").cisco_client_compat
            is True
        )

    def test_match_tls_dtls_ciphers_allowed_without_legacy(self, parse: Parse) -> None:
        config = parse("dtls-legacy = false\nmatch-tls-dtls-ciphers = true\n")
        assert config.match_tls_dtls_ciphers is True
        assert config.dtls_legacy is False
        assert config.warnings == ()

    def test_cisco_client_compat_implies_dtls_legacy(self, parse: Parse) -> None:
        assert parse("dtls-legacy = false\ncisco-client-compat = true\n").dtls_legacy is True

    def test_dtls_and_operations_keys(self, parse: Parse) -> None:
        config = parse(
            "udp-port = 4443\nudp-listen-host = 198.18.0.1\ndtls-psk = false\n"
            "switch-to-tcp-timeout = 10\ntry-mtu-discovery = true\nuse-occtl = true\n"
            "occtl-socket-file = /run/occtl.sock\nconnect-script = /bin/true\n"
            "disconnect-script = /bin/true\nhost-update-script = /bin/true\n"
        )
        assert (config.udp_port, config.udp_listen_host, config.dtls_psk) == (
            4443,
            "198.18.0.1",
            False,
        )
        assert (config.switch_to_tcp_timeout, config.try_mtu_discovery) == (10, True)
        assert (config.use_occtl, config.occtl_socket_file) == (True, "/run/occtl.sock")
        assert config.connect_script == config.disconnect_script == "/bin/true"
        assert config.host_update_script == "/bin/true"
        assert config.warnings == ()
        defaults = parse("")
        assert (defaults.dtls_legacy, defaults.dtls_psk, defaults.switch_to_tcp_timeout) == (
            True,
            True,
            25,
        )

    def test_cisco_svc_with_udp_443(self, parse: Parse) -> None:
        assert parse("udp-port = 443\ncisco-svc-client-compat = true\n").udp_port == 443


def test_every_field_row_names_a_config_field() -> None:
    from ocgate.config._options import OPTIONS

    fields = {f.name for f in dataclasses.fields(Config)}
    for spec in OPTIONS.values():
        assert spec.field is None or spec.field in fields, spec.name
        if spec.field is not None:
            assert spec.implemented, spec.name
