"""radcli config parsing (``ocgate.radius._config``)."""

from __future__ import annotations

import ipaddress

import pytest

from ocgate.errors import ConfigError
from ocgate.radius import RadiusServer, load_radius_config, parse_radcli_config
from ocgate.radius._config import parse_servers_file

SAMPLE = """\
# radcli sample, as Debian ships it (trimmed)
nas-identifier fred
authserver 	localhost
acctserver 	localhost
servers		/etc/radcli/servers
dictionary 	/etc/radcli/dictionary
default_realm
radius_timeout	10
radius_retries	3
bindaddr *
"""


def _files(**files: str):  # type: ignore[no-untyped-def]
    def read(path: str) -> str:
        try:
            return files[path]
        except KeyError:
            raise ConfigError("cannot read", file=path) from None

    return read


def test_sample_with_servers_file() -> None:
    read = _files(**{"/etc/radcli/servers": "# comment\nlocalhost\tsecret1\n"})
    config = parse_radcli_config(SAMPLE, source="/etc/radcli/radiusclient.conf", read_file=read)
    assert config.auth_servers == (RadiusServer(host="localhost", port=1812, secret=b"secret1"),)
    assert config.acct_servers == (RadiusServer(host="localhost", port=1813, secret=b"secret1"),)
    assert config.timeout == 10.0
    assert config.retries == 3
    assert config.nas_identifier == "fred"
    assert config.default_realm is None
    assert config.groupconfig is False


def test_secret_not_in_repr() -> None:
    server = RadiusServer(host="h", port=1, secret=b"topsecret")
    assert "topsecret" not in repr(server)


def test_inline_ports_secrets_lists_and_ipv6() -> None:
    text = (
        "authserver 10.0.0.1:1645:s1, [2001:db8::1]:1812:s2 radius.example\n"
        "authserver [::1]\n"
        "acctserver 10.0.0.1::s3\n"
        "servers servers.txt\n"
        "radius_timeout 2\nradius_retries 1\n"
        "nas-ip 192.0.2.1\ndefault_realm example.org\n"
    )
    read = _files(**{"/cfg/servers.txt": "radius.example s4\n::1 s5\n"})
    config = parse_radcli_config(text, source="/cfg/radiusclient.conf", read_file=read)
    assert [(s.host, s.port, s.secret) for s in config.auth_servers] == [
        ("10.0.0.1", 1645, b"s1"),
        ("2001:db8::1", 1812, b"s2"),
        ("radius.example", 1812, b"s4"),
        ("::1", 1812, b"s5"),
    ]
    assert [(s.host, s.port, s.secret) for s in config.acct_servers] == [("10.0.0.1", 1813, b"s3")]
    assert config.nas_ip == ipaddress.IPv4Address("192.0.2.1")
    assert config.default_realm == "example.org"
    assert (config.timeout, config.retries) == (2.0, 1)


def test_servers_file_forms() -> None:
    secrets = parse_servers_file("# c\n\nRadius.Example  abc\nnas/server2 xyz\nlonely\n")
    assert secrets == {"radius.example": b"abc", "nas": b"xyz", "server2": b"xyz"}


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("authserver a:1:s\nbogus 1\n", 2, "unrecognized keyword"),
        ("authserver a:99999:s\n", 1, "bad port"),
        ("authserver [::1:1812:s\n", 1, "unterminated"),
        ("authserver a:1:s\nradius_timeout 0\n", 2, "must be positive"),
        ("authserver a:1:s\nradius_retries x\n", 2, "not a number"),
        ("authserver a:1:s\nnas-ip nope\n", 2, "not an IP address"),
        ("authserver a:1:s\nserv-type tls\n", 2, "not supported"),
        ("authserver\n", 1, "missing value"),
        ("authserver a\n", 1, "no secret"),
        ("authserver " + ",".join(f"h{i}:1:s" for i in range(9)) + "\n", 1, "more than 8"),
    ],
)
def test_errors_carry_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_radcli_config(text, source="/x/radiusclient.conf", read_file=_files())
    assert info.value.file == "/x/radiusclient.conf"
    assert info.value.line == line
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"/x/radiusclient.conf:{line}: ")


def test_no_authserver() -> None:
    with pytest.raises(ConfigError, match="no authserver"):
        parse_radcli_config("acctserver a:1:s\n", source="f", read_file=_files())


def test_server_missing_from_servers_file() -> None:
    read = _files(**{"/x/servers": "other secret\n"})
    with pytest.raises(ConfigError, match="not in the 'servers' file") as info:
        parse_radcli_config("authserver a\nservers servers\n", source="/x/c", read_file=read)
    assert info.value.line == 1


def test_method_params() -> None:
    read = _files(**{"/r.conf": "authserver h:1:s\nnas-identifier fromfile\n"})
    config = load_radius_config(
        {
            "config": "/r.conf",
            "groupconfig": "true",
            "nas-identifier": "gw1",
            "group-separator": "comma",
            "override-interim-updates": "true",
        },
        read_file=read,
    )
    assert config.groupconfig is True
    assert config.nas_identifier == "gw1"
    assert config.group_separator == ","
    assert config.override_interim_updates is True
    plain = load_radius_config({"config": "/r.conf"}, read_file=read)
    assert plain.nas_identifier == "fromfile"
    assert plain.group_separator == ";"
    assert plain.groupconfig is False


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "'config' option is missing"),
        ({"config": "/r.conf", "bogus": "1"}, "unknown option"),
        ({"config": "/r.conf", "group-separator": "pipe"}, "bad group-separator"),
        ({"config": "/missing.conf"}, "cannot read"),
    ],
)
def test_method_param_errors(params: dict[str, str], fragment: str) -> None:
    read = _files(**{"/r.conf": "authserver h:1:s\n"})
    with pytest.raises(ConfigError, match=fragment):
        load_radius_config(params, read_file=read)


def test_reads_real_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "servers").write_text("127.0.0.1 filesecret\n")
    conf = tmp_path / "radiusclient.conf"
    conf.write_text(f"authserver 127.0.0.1\nservers {tmp_path / 'servers'}\n")
    config = load_radius_config({"config": str(conf)})
    assert config.auth_servers[0].secret == b"filesecret"
    with pytest.raises(ConfigError, match="cannot read"):
        load_radius_config({"config": str(tmp_path / "nope.conf")})
