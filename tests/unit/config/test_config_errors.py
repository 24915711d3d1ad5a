"""Every ConfigError path, with the exact ``FILE:LINE: KEY: message (expected: FORM)`` text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ocgate.config import Config, load_config, parse_config
from ocgate.errors import ConfigError

Parse = Callable[[str], Config]
INT = "an integer 0-2147483647"


def error_of(parse: Parse, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


# Lines given to the ``parse`` fixture start at line 4 (after 3 base lines).
VALUE_ERRORS = [
    ("tcp-port = abc", "tcp-port: not a port number: 'abc' (expected: an integer 1-65535)"),
    ("tcp-port = 0", "tcp-port: not a port number: '0' (expected: an integer 1-65535)"),
    ("tcp-port = 70000", "tcp-port: not a port number: '70000' (expected: an integer 1-65535)"),
    ("tcp-port = -1", "tcp-port: must not be negative: '-1' (expected: an integer 1-65535)"),
    ("tcp-port = 4 43", "tcp-port: not a port number: '4 43' (expected: an integer 1-65535)"),
    (
        "udp-port = 65536",
        "udp-port: not a port number: '65536' (expected: an integer 1-65535 (0 = no UDP))",
    ),
    ("dpd = -5", f"dpd: must not be negative: '-5' (expected: {INT})"),
    ("dpd = 5s", f"dpd: not an integer: '5s' (expected: {INT})"),
    ("keepalive = 0x10", f"keepalive: not an integer: '0x10' (expected: {INT})"),
    ("cookie-timeout = 99999999999", f"cookie-timeout: too large: '99999999999' (expected: {INT})"),
    ("mtu = abc", f"mtu: not an integer: 'abc' (expected: {INT} (0 = unset))"),
    (
        "idle-timeout = -1",
        f"idle-timeout: must not be negative: '-1' (expected: {INT} (0 = unset))",
    ),
    ("max-ban-score = lots", f"max-ban-score: not an integer: 'lots' (expected: {INT})"),
    (
        "rekey-method = tls",
        "rekey-method: unknown rekey method: 'tls' (expected: ssl or new-tunnel)",
    ),
    ("net-priority = 0xZZ", "net-priority: not a TOS byte: '0xZZ' (expected: 0x00-0xff or 0-6)"),
    (
        "device = averylongname",
        "device: not a usable device name prefix: 'averylongname' "
        "(expected: 1-12 characters from A-Z a-z 0-9 _ -)",
    ),
    (
        'device = "vpn s"',
        "device: not a usable device name prefix: 'vpn s' "
        "(expected: 1-12 characters from A-Z a-z 0-9 _ -)",
    ),
    (
        "dns = local",
        "dns: the 'local' DNS keyword is no longer supported (expected: an IPv4 or IPv6 address)",
    ),
    (
        "ipv4-dns = local",
        "ipv4-dns: the 'local' DNS keyword is no longer supported "
        "(expected: an IPv4 or IPv6 address)",
    ),
    (
        "dns = dns.google",
        "dns: not an IP address: 'dns.google' (expected: an IPv4 or IPv6 address)",
    ),
    ("nbns = 1.2.3", "nbns: not an IP address: '1.2.3' (expected: an IPv4 or IPv6 address)"),
    (
        'split-dns = "a b"',
        "split-dns: not a domain name: 'a b' (expected: a domain such as example.com)",
    ),
    (
        'listen-host = "a b"',
        "listen-host: must not contain whitespace: 'a b' (expected: a single word)",
    ),
    (
        "banner = " + "x" * 257,
        "banner: banner is too long (257 characters) (expected: at most 256 characters)",
    ),
    (
        "tls-priorities = FAST:+AES-128-GCM",
        "tls-priorities: unknown priority level 'FAST' in 'FAST:+AES-128-GCM' (expected: a GnuTLS "
        "priority string such as NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0)",
    ),
    (
        "tls-priorities = NORMAL:VERS-TLS1.2",
        "tls-priorities: bad element 'VERS-TLS1.2' in 'NORMAL:VERS-TLS1.2' (expected: a GnuTLS "
        "priority string such as NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0)",
    ),
    (
        "tls-priorities = NORMAL::%COMPAT",
        "tls-priorities: bad element '' in 'NORMAL::%COMPAT' (expected: a GnuTLS "
        "priority string such as NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0)",
    ),
    (
        "ipv4-network = 300.1.1.0",
        "ipv4-network: not an IPv4 network: '300.1.1.0' (expected: 192.168.1.0/24, or 192.168.1.0 "
        "together with ipv4-netmask = 255.255.255.0)",
    ),
    (
        "ipv4-network = fd00::/8",
        "ipv4-network: not an IPv4 network: 'fd00::/8' (expected: 192.168.1.0/24, or 192.168.1.0 "
        "together with ipv4-netmask = 255.255.255.0)",
    ),
    (
        "ipv4-network = 10.0.0.0/33",
        "ipv4-network: bad prefix in '10.0.0.0/33' (expected: 192.168.1.0/24, or 192.168.1.0 "
        "together with ipv4-netmask = 255.255.255.0)",
    ),
    (
        "ipv4-netmask = 255.0.255.0",
        "ipv4-netmask: not a netmask: '255.0.255.0' "
        "(expected: a dotted mask such as 255.255.255.0)",
    ),
    (
        "ipv4-netmask = 0.0.0.255",
        "ipv4-netmask: not a netmask: '0.0.0.255' (expected: a dotted mask such as 255.255.255.0)",
    ),
    (
        "ipv6-network = 10.0.0.0/8",
        "ipv6-network: not an IPv6 network: '10.0.0.0/8' "
        "(expected: an IPv6 network such as fda9:4efe:7e3b:3ea::/48)",
    ),
    (
        "ipv6-network = fd00::/129",
        "ipv6-network: bad prefix in 'fd00::/129' "
        "(expected: an IPv6 network such as fda9:4efe:7e3b:3ea::/48)",
    ),
    ("ipv6-prefix = 0", "ipv6-prefix: not an IPv6 prefix length: '0' (expected: an integer 1-128)"),
    (
        "ipv6-subnet-prefix = 129",
        "ipv6-subnet-prefix: not an IPv6 prefix length: '129' (expected: an integer 1-128)",
    ),
    (
        "route = 10.0.0.0/255.0.255.0",
        "route: bad prefix or mask in route '10.0.0.0/255.0.255.0' (expected: default, NET/PREFIX "
        "or NET/DOTTED-MASK, e.g. 10.0.0.0/8, 10.0.0.0/255.0.0.0 or fd00::/48)",
    ),
    (
        "route = 10.0.0.0/0.255.255.255",
        "route: bad prefix or mask in route '10.0.0.0/0.255.255.255' "
        "(expected: default, NET/PREFIX "
        "or NET/DOTTED-MASK, e.g. 10.0.0.0/8, 10.0.0.0/255.0.0.0 or fd00::/48)",
    ),
    (
        "route = fd00::/255.255.0.0",
        "route: bad prefix or mask in route 'fd00::/255.255.0.0' (expected: default, NET/PREFIX "
        "or NET/DOTTED-MASK, e.g. 10.0.0.0/8, 10.0.0.0/255.0.0.0 or fd00::/48)",
    ),
    (
        "route = intranet",
        "route: not a route: 'intranet' (expected: default, NET/PREFIX "
        "or NET/DOTTED-MASK, e.g. 10.0.0.0/8, 10.0.0.0/255.0.0.0 or fd00::/48)",
    ),
    (
        "route = fe80::1%eth0/64",
        "route: not a route: 'fe80::1%eth0/64' (expected: default, NET/PREFIX "
        "or NET/DOTTED-MASK, e.g. 10.0.0.0/8, 10.0.0.0/255.0.0.0 or fd00::/48)",
    ),
    (
        "no-route = default",
        "no-route: 'default' cannot be excluded (expected: default, NET/PREFIX "
        "or NET/DOTTED-MASK, e.g. 10.0.0.0/8, 10.0.0.0/255.0.0.0 or fd00::/48)",
    ),
    (
        "server-cert = pkcs11:object=my-key",
        "server-cert: URLs such as PKCS #11 or TPM key URLs are not supported by ocgate: "
        "'pkcs11:object=my-key' (expected: the path of a PEM file)",
    ),
    (
        "auth = kerberos",
        "auth: unknown authentication method: 'kerberos' (expected: one of "
        "certificate, gssapi, oidc, pam, plain, radius, saml)",
    ),
    (
        'auth = "certificate[x=1] y"',
        "auth: not an authentication method: 'certificate[x=1] y' "
        '(expected: METHOD or METHOD[key=value,...], e.g. "plain[passwd=/etc/ocserv/ocpasswd]")',
    ),
    (
        "auth = pam[gid-min=abc]",
        f"auth: pam[gid-min]: not an integer: 'abc' (expected: {INT})",
    ),
    (
        "auth = pam[service]",
        "auth: pam: option without a value: 'service' "
        '(expected: METHOD or METHOD[key=value,...], e.g. "plain[passwd=/etc/ocserv/ocpasswd]")',
    ),
    (
        "auth = pam[=x]",
        "auth: pam: empty option in '=x' "
        '(expected: METHOD or METHOD[key=value,...], e.g. "plain[passwd=/etc/ocserv/ocpasswd]")',
    ),
    (
        "auth = plain[passwd=ocpasswd,passwd=otp]",
        "auth: plain: option 'passwd' given twice "
        '(expected: METHOD or METHOD[key=value,...], e.g. "plain[passwd=/etc/ocserv/ocpasswd]")',
    ),
    (
        "enable-auth = plain",
        "enable-auth: plain: the 'passwd' option is missing "
        '(expected: plain[passwd=FILE], e.g. "plain[passwd=/etc/ocserv/passwd]")',
    ),
    (
        "enable-auth = radius[groupconfig=true]",
        "enable-auth: radius: the 'config' option is missing "
        '(expected: radius[config=FILE], e.g. "radius[config=/etc/ocserv/config]")',
    ),
    (
        "tcp-prot = 443",
        "tcp-prot: unknown option (did you mean 'tcp-port'?) "
        "(expected: a configuration key ocserv 1.5 knows)",
    ),
    ("zzzz = 1", "zzzz: unknown option (expected: a configuration key ocserv 1.5 knows)"),
    (
        "cookie-validity = 1",
        "cookie-validity: unknown option (expected: a configuration key ocserv 1.5 knows)",
    ),
    (
        "max-client = 1",
        "max-client: unknown option (did you mean 'max-clients'?) "
        "(expected: a configuration key ocserv 1.5 knows)",
    ),
    (
        "listen-clear-file = /var/run/ocserv-conn.socket",
        "listen-clear-file: refused, ocgate cannot honour it: ocserv removed it in 1.1.2 "
        "(expected: no such line)",
    ),
    ("[vhost:]", "[vhost:]: empty virtual host name (expected: [vhost:NAME])"),
    ("[vhost:  ]", "[vhost:]: empty virtual host name (expected: [vhost:NAME])"),
]


@pytest.mark.parametrize(("line", "message"), VALUE_ERRORS)
def test_value_error(parse: Parse, source: str, line: str, message: str) -> None:
    error = error_of(parse, line + "\n")
    assert str(error) == f"{source}:4: {message}"
    assert (error.file, error.line) == (source, 4)
    assert error.key == message.split(": ")[0]
    assert error.expected


def test_missing_files(parse: Parse, source: str, conf_dir: Path) -> None:
    where = f"an existing file (relative names are resolved against {conf_dir})"
    for line, key, name in [
        ("server-cert = nope.pem", "server-cert", "nope.pem"),
        ("server-key = /nonexistent/key.pem", "server-key", "/nonexistent/key.pem"),
        ("ca-cert = ca/ca.pem", "ca-cert", "ca/ca.pem"),
    ]:
        path = str(conf_dir / name) if not name.startswith("/") else name
        assert str(error_of(parse, line + "\n")) == (
            f"{source}:4: {key}: file not found: {path!r} (expected: {where})"
        )
    assert str(error_of(parse, "auth = plain[passwd=ocpasswd,otp=nope]\n")) == (
        f"{source}:4: auth: plain[otp]: file not found: {str(conf_dir / 'nope')!r} "
        f"(expected: {where})"
    )
    assert str(error_of(parse, "enable-auth = radius[missing.conf]\n")) == (
        f"{source}:4: enable-auth: radius[config]: file not found: "
        f"{str(conf_dir / 'missing.conf')!r} (expected: {where})"
    )


def test_directory_is_not_a_file(parse: Parse, source: str, conf_dir: Path) -> None:
    (conf_dir / "certs").mkdir()
    assert "file not found" in str(error_of(parse, "ca-cert = certs\n"))


CERTS = "server-cert = server-cert.pem\nserver-key = server-key.pem\n"


class TestRequiredKeys:
    def test_no_auth(self, parse_raw: Parse, source: str) -> None:
        error = error_of(parse_raw, CERTS)
        assert str(error) == (
            f"{source}: auth: no authentication method is configured (expected: at least one "
            'line such as auth = "plain[passwd=/etc/ocserv/ocpasswd]")'
        )
        assert (error.line, error.key) == (None, "auth")

    def test_enable_auth_alone_is_not_enough(self, parse_raw: Parse, source: str) -> None:
        error = error_of(parse_raw, "enable-auth = certificate\n" + CERTS)
        assert error.key == "auth"
        assert error.line is None

    def test_auth_only_in_a_vhost_does_not_count(self, parse_raw: Parse) -> None:
        assert error_of(parse_raw, CERTS + "[vhost:a]\nauth = certificate\n").key == "auth"

    def test_no_server_cert(self, parse_raw: Parse, source: str) -> None:
        error = error_of(parse_raw, "auth = certificate\nserver-key = server-key.pem\n")
        assert str(error) == (
            f"{source}: server-cert: no server-cert is configured (expected: server-cert = "
            "/path/to/cert.pem followed by server-key = /path/to/key.pem)"
        )

    def test_no_server_key(self, parse_raw: Parse, source: str) -> None:
        error = error_of(parse_raw, "auth = certificate\nserver-cert = server-cert.pem\n")
        assert (error.key, error.line) == ("server-key", None)

    def test_certificate_and_key_counts_differ(self, parse: Parse, source: str) -> None:
        error = error_of(parse, "server-cert = ca.pem\n")
        assert str(error) == (
            f"{source}:4: server-cert: 2 server-cert line(s) but 1 server-key line(s) "
            "(expected: one server-key after each server-cert)"
        )
        assert error_of(parse, "server-key = ca.pem\nserver-key = otp\n").line == 5


class TestAuthCombinations:
    def test_two_password_methods_in_auth(self, parse: Parse, source: str) -> None:
        assert str(error_of(parse, "auth = pam\n")) == (
            f"{source}:4: auth: cannot combine 'plain' and 'pam' in 'auth' "
            "(expected: at most one method besides 'certificate' in the auth lines)"
        )

    def test_gssapi_and_plain_in_auth(self, parse: Parse, source: str) -> None:
        assert error_of(parse, "auth = certificate\nauth = gssapi\n").line == 5

    def test_password_method_in_enable_auth(self, parse: Parse, source: str) -> None:
        assert str(error_of(parse, "enable-auth = gssapi\nenable-auth = pam\n")) == (
            f"{source}:5: enable-auth: cannot mix password methods 'plain' and 'pam' "
            "(expected: at most one of plain, pam and radius)"
        )

    def test_too_many_methods(self, parse: Parse, source: str) -> None:
        text = "auth = certificate\nenable-auth = gssapi\nenable-auth = oidc[config=otp]\n"
        assert parse(text).enable_auth  # 4 methods are fine.
        assert str(error_of(parse, text + "enable-auth = certificate\n")) == (
            f"{source}:7: enable-auth: too many authentication methods "
            "(expected: at most 4 auth and enable-auth lines together)"
        )


class TestNetworks:
    def test_ipv4_network_without_netmask(self, parse: Parse, source: str) -> None:
        error = error_of(parse, "dns = 192.0.2.1\nipv4-network = 192.168.1.0\n")
        assert str(error) == (
            f"{source}:5: ipv4-network: the network has no prefix or ipv4-netmask (expected: "
            "ipv4-network = 192.168.1.0/24, or ipv4-network = 192.168.1.0 with ipv4-netmask)"
        )

    def test_ipv4_cidr_and_netmask_disagree(self, parse: Parse, source: str) -> None:
        error = error_of(parse, "ipv4-network = 10.0.0.0/8\nipv4-netmask = 255.255.0.0\n")
        assert str(error) == (
            f"{source}:5: ipv4-netmask: /16 from ipv4-netmask contradicts /8 in ipv4-network "
            "(expected: ipv4-network = 192.168.1.0/24, "
            "or ipv4-network = 192.168.1.0 with ipv4-netmask)"
        )
        error = error_of(parse, "ipv4-netmask = 255.255.0.0\nipv4-network = 10.0.0.0/8\n")
        assert (error.key, error.line) == ("ipv4-network", 5)

    def test_ipv6_network_without_prefix(self, parse: Parse, source: str) -> None:
        assert str(error_of(parse, "ipv6-network = fd00::\n")) == (
            f"{source}:4: ipv6-network: the network has no prefix or ipv6-prefix "
            "(expected: ipv6-network = fd00:1234::/48 (or ipv6-network with ipv6-prefix))"
        )

    def test_ipv6_prefix_disagrees(self, parse: Parse) -> None:
        error = error_of(parse, "ipv6-network = fd00::/48\nipv6-prefix = 64\n")
        assert (error.key, error.line) == ("ipv6-prefix", 5)

    def test_subnet_prefix_not_longer_than_network(self, parse: Parse, source: str) -> None:
        assert str(error_of(parse, "ipv6-subnet-prefix = 48\nipv6-network = fd00::/48\n")) == (
            f"{source}:4: ipv6-subnet-prefix: the subnet prefix (/48) must be longer than the "
            "network's (/48) (expected: ipv6-subnet-prefix between 49 and 128)"
        )

    def test_default_subnet_prefix_against_a_128_network(self, parse: Parse) -> None:
        error = error_of(parse, "ipv6-network = fd00::1/128\n")
        assert (error.key, error.line) == ("ipv6-network", 4)


class TestCompatChecks:
    def test_match_tls_dtls_ciphers_with_default_legacy(self, parse: Parse, source: str) -> None:
        assert str(error_of(parse, "match-tls-dtls-ciphers = true\n")) == (
            f"{source}:4: match-tls-dtls-ciphers: cannot be used while 'dtls-legacy' or "
            "'cisco-client-compat' is on (expected: dtls-legacy = false, and neither "
            "cisco-client-compat nor cisco-svc-client-compat)"
        )

    def test_match_tls_dtls_ciphers_with_cisco_client_compat(self, parse: Parse) -> None:
        text = "dtls-legacy = false\ncisco-client-compat = true\nmatch-tls-dtls-ciphers = true\n"
        assert error_of(parse, text).line == 6

    def test_cisco_svc_needs_udp_443(self, parse: Parse, source: str) -> None:
        assert str(error_of(parse, "udp-port = 4443\ncisco-svc-client-compat = true\n")) == (
            f"{source}:5: cisco-svc-client-compat: needs udp-port 443, not 4443 "
            "(expected: udp-port = 443)"
        )


def test_first_error_wins(parse: Parse) -> None:
    assert error_of(parse, "dpd = x\ntcp-port = y\n").key == "dpd"


class TestLoadConfig:
    def test_reads_file_and_resolves_relative_to_it(self, conf_dir: Path, tmp_path: Path) -> None:
        path = conf_dir / "ocserv.conf"
        path.write_text('auth = "plain[passwd=./ocpasswd]"\n' + CERTS)
        config = load_config(path)
        assert config.source == str(path)
        assert config.passwd_file == str(conf_dir / "ocpasswd")

    def test_parse_config_defaults_base_dir_to_the_source_directory(self, conf_dir: Path) -> None:
        text = "auth = plain[passwd=ocpasswd]\n" + CERTS
        config = parse_config(text, source=str(conf_dir / "ocserv.conf"))
        assert config.passwd_file == str(conf_dir / "ocpasswd")

    def test_missing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "absent.conf"
        with pytest.raises(ConfigError) as info:
            load_config(str(path))
        assert str(info.value) == (
            f"{path}: cannot read the configuration file: No such file or directory "
            "(expected: a readable file)"
        )

    def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "latin1.conf"
        path.write_bytes(b"# ok\nbanner = caf\xe9\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value) == f"{path}:2: not UTF-8 text (expected: UTF-8)"
