"""The ocserv doc/sample.config-style vector parses with warnings only."""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path

from ocgate.config import parse_config
from ocgate.config._options import OPTIONS

SAMPLE = Path(__file__).parents[2] / "vectors" / "ocserv_conf" / "sample.conf"


def test_sample_parses_with_only_warnings(tmp_path: Path) -> None:
    doc = tmp_path / "doc"
    certs = tmp_path / "tests" / "certs"
    doc.mkdir()
    certs.mkdir(parents=True)
    (doc / "sample.passwd").write_text("test:tost:$5$salt$hash\n")
    for name in (
        "server-cert.pem",
        "server-key.pem",
        "ca.pem",
        "server-cert-secp521r1.pem",
        "server-key-secp521r1.pem",
    ):
        (certs / name).write_text("x\n")
    source = str(doc / "ocserv.conf")

    config = parse_config(SAMPLE.read_text(), source=source, base_dir=str(doc))

    assert config.passwd_file == str(doc / "sample.passwd")
    assert config.server_cert == (str(certs / "server-cert.pem"),)
    assert config.ca_cert == str(certs / "ca.pem")
    assert (config.tcp_port, config.udp_port) == (443, 443)
    assert (config.run_as_user, config.run_as_group) == ("nobody", "daemon")
    assert (config.max_clients, config.max_same_clients) == (16, 2)
    assert (config.dpd, config.mobile_dpd, config.keepalive) == (90, 1800, 32400)
    assert (
        config.tls_priorities
        == "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1"
    )
    assert config.ipv4_network == ipaddress.IPv4Network("192.168.1.0/24")
    assert config.dns == (ipaddress.IPv4Address("192.168.1.2"),)
    assert [str(r) for r in config.route] == [
        "10.10.10.0/24",
        "192.168.0.0/16",
        "fef4:db8:1000:1001::/64",
    ]
    assert [str(r) for r in config.no_route] == ["192.168.5.0/24"]
    assert config.cisco_client_compat is True
    assert config.default_domain == "example.com"
    assert config.log_level == 1
    assert config.pid_file == "/var/run/ocserv.pid"

    keys = Counter(w.key for w in config.warnings)
    assert max(keys.values()) == 1  # One warning per key.
    assert keys.keys() >= {"min-reauth-time"}
    # camouflage is implemented: the sample's keys land in the Config.
    assert config.camouflage is False
    assert config.camouflage_secret == "mysecretkey"
    # The sample's virtual host: its own keys, the rest inherited from the top level (1.5).
    (vhost,) = config.vhosts
    assert vhost.vhost_name == "www.example.com"
    assert [m.name for m in vhost.auth] == ["certificate"]
    assert vhost.server_cert == (str(certs / "server-cert-secp521r1.pem"),)
    assert vhost.ipv4_network == ipaddress.IPv4Network("192.168.2.0/24")
    assert vhost.cert_user_oid == "0.9.2342.19200300.100.1.1"
    assert (vhost.dns, vhost.route, vhost.dpd) == (config.dns, config.route, config.dpd)
    assert config.vhost("WWW.example.com") is vhost
    for warning in config.warnings:
        if warning.key in OPTIONS:
            assert not OPTIONS[warning.key].implemented or OPTIONS[warning.key].replaced_by
