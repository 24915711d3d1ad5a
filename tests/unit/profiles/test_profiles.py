"""``ocgate profile``: what it writes validates against the project's schemas and reads back.

The refusals are the combinations Cisco's administrator guide rules out (docs/profiles.md cites
each); the pin vector is recomputed from a certificate made here with ``cryptography``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ocgate.errors import ConfigError
from ocgate.nvm._config import ListenAddress, NvmSettings
from ocgate.nvm._privacy import Action, PrivacyPolicy
from ocgate.profiles import (
    CertificatePin,
    ClientProfile,
    HostEntry,
    TrustedHttpsServer,
    nvm_profile_from_settings,
    read_client,
    read_nvm,
    render_client,
    render_nvm,
    validate,
)
from ocgate.profiles._cli import main

HASH = "0123456789ABCDEF" * 4
PIN = base64.b64encode(bytes(range(32))).decode()

FULL = ClientProfile(
    servers=(HostEntry("Corp", "vpn.example.com"), HostEntry("Backup", "vpn2.example.com/eng")),
    strict_certificate_trust=True,
    automatic_vpn_policy=True,
    trusted_dns_domains=("corp.example", "*.lab.example"),
    trusted_dns_servers=("10.0.0.53", "2001:db8::53"),
    trusted_https_servers=(TrustedHttpsServer("probe.corp.example", 8443, HASH),),
    trusted_network_policy="Disconnect",
    untrusted_network_policy="Connect",
    always_on=True,
    connect_failure_policy="Closed",
    captive_portal_remediation=True,
    captive_portal_remediation_timeout=5,
    apply_last_local_resource_rules=True,
    allow_vpn_disconnect=False,
    pins=(CertificatePin("CN=vpn.example.com", "CN=Corp CA", PIN),),
)
MGMT = ClientProfile(
    servers=(HostEntry("Corp", "vpn.example.com/mgmt"),),
    management=True,
    automatic_vpn_policy=True,
    trusted_dns_servers=("10.0.0.53",),
)


@pytest.mark.parametrize(("kind", "profile"), [("client", FULL), ("mgmt", MGMT)])
def test_client_profiles_validate_and_read_back(kind: str, profile: ClientProfile) -> None:
    data = render_client(profile)
    validate("mgmt" if kind == "mgmt" else "client", data)
    assert read_client(data, management=profile.management) == profile
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<AnyConnectProfile ')


def test_written_xml_shape() -> None:
    data = render_client(FULL).decode()
    assert '<AnyConnectProfile xmlns="http://schemas.xmlsoap.org/encoding/">' in data
    assert "<AutomaticVPNPolicy>true\n" in data
    assert "<TrustedDNSDomains>corp.example,*.lab.example</TrustedDNSDomains>" in data
    assert f"<CertificateHash>{HASH}</CertificateHash>" in data
    assert f'<Pin Subject="CN=vpn.example.com" Issuer="CN=Corp CA">{PIN}</Pin>' in data


def _with(**changes: object) -> ClientProfile:
    import dataclasses

    return dataclasses.replace(FULL, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (_with(servers=()), "Always-On needs at least one server"),
        (_with(connect_failure_policy="Open"), "only to the Closed connect failure policy"),
        (
            _with(trusted_dns_domains=(), trusted_dns_servers=(), trusted_https_servers=()),
            "Trusted Network Detection needs",
        ),
        (_with(automatic_vpn_policy=False), "belong to the Automatic VPN Policy"),
        (
            ClientProfile(servers=FULL.servers, connect_failure_policy="Closed"),
            "apply only under Always-On",
        ),
        (_with(captive_portal_remediation=False), "timeout needs captive-portal remediation"),
        (_with(trusted_https_servers=(TrustedHttpsServer("p", 443, "AB"),)), "SHA-256"),
        (_with(trusted_dns_servers=("dns.example",)), "not an IP address"),
        (_with(pins=(CertificatePin("s", "i", "short"),)), "base64 SHA-256 pin"),
        (_with(servers=(HostEntry("A", "a"), HostEntry("A", "b"))), "same name"),
        (_with(captive_portal_remediation_timeout=0), "out of range"),
        (
            ClientProfile(
                management=True, automatic_vpn_policy=True, trusted_dns_servers=("10.0.0.1",)
            ),
            "needs its headend",
        ),
        (ClientProfile(management=True, servers=FULL.servers), "needs Trusted Network Detection"),
        (
            ClientProfile(
                management=True,
                servers=FULL.servers,
                automatic_vpn_policy=True,
                trusted_dns_servers=("10.0.0.1",),
                untrusted_network_policy="Pause",
            ),
            "disconnects on trusted networks",
        ),
    ],
)
def test_forbidden_combinations_are_refused(profile: ClientProfile, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render_client(profile)


def test_schema_refuses_what_it_does_not_know() -> None:
    data = render_client(FULL).replace(b"<ServerList>", b"<ServerList><Bogus/>")
    with pytest.raises(ConfigError, match=r"does not validate against AnyConnectProfile\.xsd"):
        validate("client", data)
    with pytest.raises(ConfigError, match="does not validate"):
        validate("client", render_client(FULL).replace(b"Disconnect<", b"Sometimes<"))


def test_reader_checks_mixed_text_the_schema_cannot() -> None:
    data = render_client(FULL).replace(b"<AlwaysOn>true", b"<AlwaysOn>maybe")
    validate("client", data)  # XSD 1.0 cannot type the text of mixed content ...
    with pytest.raises(ConfigError, match="<AlwaysOn> holds 'maybe'"):
        read_client(data)  # ... so the reader does.


SETTINGS = NvmSettings(
    listen=(ListenAddress("tcp", "0.0.0.0", 4740), ListenAddress("udp", "0.0.0.0", 2055)),
    privacy=PrivacyPolicy(fields={"user": Action.DROP, "user_authority": Action.DROP,
                                  "user_principal": Action.DROP, "process_account": Action.DROP,
                                  "parent_process_account": Action.DROP,
                                  "process_args": Action.DROP,
                                  "parent_process_args": Action.DROP}),
)  # fmt: skip


def test_nvm_profile_from_collector_settings() -> None:
    profile = nvm_profile_from_settings(SETTINGS, tunnel_address="192.168.99.1")
    assert (profile.collector, profile.port, profile.secure) == ("192.168.99.1", 2055, False)
    assert profile.exclude == ("LoggedInUser", "ProcessArgs")
    data = render_nvm(profile)
    validate("nvm", data)
    assert read_nvm(data) == profile
    assert b"<CollectorIP>192.168.99.1</CollectorIP>" in data


def test_nvm_profile_prefers_dtls_and_a_specific_listener() -> None:
    settings = NvmSettings(
        listen=(ListenAddress("udp", "0.0.0.0", 2055),),
        dtls_listen=(ListenAddress("dtls", "10.9.0.1", 4739),),
        dtls_cert="c",
        dtls_key="k",
    )
    profile = nvm_profile_from_settings(settings, flow_report_interval=None)
    assert (profile.collector, profile.port, profile.secure) == ("10.9.0.1", 4739, True)
    assert b"<PeriodicFlowReporting>false</PeriodicFlowReporting>" in render_nvm(profile)


def test_nvm_profile_needs_an_address_for_a_wildcard_listener() -> None:
    with pytest.raises(ConfigError, match="which address do endpoints use"):
        nvm_profile_from_settings(SETTINGS)
    with pytest.raises(ConfigError, match="no UDP or DTLS listener"):
        nvm_profile_from_settings(NvmSettings())


def _cert(path: Path) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vpn.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_cli_writes_three_profiles_that_read_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spki = _cert(tmp_path / "server.pem")
    client, mgmt, nvm = tmp_path / "corp.xml", tmp_path / "mgmt.xml", tmp_path / "nvm.xml"
    assert main(["client", "-o", str(client), "--server", "Corp=vpn.example.com",
                 "--auto-vpn-policy", "--trusted-dns-domain", "corp.example",
                 "--trusted-https-server", f"probe.corp.example:8443={HASH.lower()}",
                 "--always-on", "--connect-failure-policy", "closed",
                 "--captive-portal-remediation", "--captive-portal-remediation-timeout", "10",
                 "--pin-cert", str(tmp_path / "server.pem")]) == 0  # fmt: skip
    assert main(["mgmt", "-o", str(mgmt), "--server", "Corp=vpn.example.com/mgmt",
                 "--auto-vpn-policy", "--trusted-dns-server", "10.0.0.53"]) == 0  # fmt: skip
    conf = tmp_path / "ocserv.conf"
    conf.write_text("nvm-listen = udp://0.0.0.0:2055\n")
    assert main(["nvm", "-c", str(conf), "-o", str(nvm), "--address", "192.168.99.1"]) == 0
    out = capsys.readouterr().out
    for path in (client, mgmt, nvm):
        sha1 = hashlib.sha1(path.read_bytes()).hexdigest().upper()
        assert f"wrote {path} ({path.stat().st_size} bytes, SHA-1 {sha1})" in out
    validate("client", client.read_bytes())
    profile = read_client(client.read_bytes())
    assert profile.servers == (HostEntry("Corp", "vpn.example.com"),)
    assert profile.trusted_https_servers == (TrustedHttpsServer("probe.corp.example", 8443, HASH),)
    assert profile.always_on
    assert profile.captive_portal_remediation_timeout == 10
    assert profile.pins[0].pin == base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert profile.pins[0].subject == "CN=vpn.example.com"
    validate("mgmt", mgmt.read_bytes())
    assert read_client(mgmt.read_bytes(), management=True).trusted_dns_servers == ("10.0.0.53",)
    validate("nvm", nvm.read_bytes())
    assert read_nvm(nvm.read_bytes()).collector == "192.168.99.1"
    assert main(["check", "client", str(client)]) == 0
    assert main(["check", "nvm", str(nvm)]) == 0


def test_cli_refuses_always_on_without_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.xml"
    argv = ["client", "-o", str(out), "--auto-vpn-policy", "--trusted-dns-domain", "c.example",
            "--always-on"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Always-On needs at least one server in the server list" in err
    assert "--server NAME=ADDRESS" in err
    assert not out.exists()


def test_cli_nvm_error_names_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "ocserv.conf"
    conf.write_text("# collector\nnvm-listen = udp://0.0.0.0:2055\n")
    assert main(["nvm", "-c", str(conf), "-o", str(tmp_path / "n.xml")]) == 1
    assert f"{conf}:2: nvm-listen: the collector listens on 0.0.0.0" in capsys.readouterr().err


def test_cli_nvm_uses_the_gateways_tunnel_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p").write_text("alice:eng:$5$x$y\n")
    (tmp_path / "c.pem").write_text("")
    conf = tmp_path / "ocserv.conf"
    conf.write_text(
        f'auth = "plain[passwd={tmp_path}/p]"\nserver-cert = {tmp_path}/c.pem\n'
        f"server-key = {tmp_path}/c.pem\nipv4-network = 10.77.0.0/24\n"
        "nvm-listen = udp://0.0.0.0:2055\n"
    )
    out = tmp_path / "nvm.xml"
    status = main(["nvm", "-c", str(conf), "-o", str(out)])
    assert status == 0, capsys.readouterr().err
    profile = read_nvm(out.read_bytes())
    assert (profile.collector, profile.port, profile.secure) == ("10.77.0.1", 2055, False)
