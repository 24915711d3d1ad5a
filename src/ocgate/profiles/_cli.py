"""``ocgate profile``: write client, management-tunnel and NVM profiles, or check one.

::

    ocgate profile client -o corp.xml --server Corp=vpn.example.com \\
        --auto-vpn-policy --trusted-dns-domain corp.example --always-on \\
        --connect-failure-policy closed --captive-portal-remediation
    ocgate profile mgmt -o VpnMgmtTunProfile.xml --server Corp=vpn.example.com \\
        --auto-vpn-policy --trusted-dns-server 10.0.0.53
    ocgate profile nvm -c /etc/ocserv/ocserv.conf -o NVM_ServiceProfile.xml
    ocgate profile check client corp.xml

Every file written is validated against the project's schema and read back before it is
written; a combination the guide rules out is refused with the option to change.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path

from ocgate.errors import ConfigError, OcgateError
from ocgate.profiles._client import (
    CertificatePin,
    ClientProfile,
    HostEntry,
    TrustedHttpsServer,
    read_client,
    render_client,
)
from ocgate.profiles._nvm import (
    DEFAULT_FLOW_REPORT_INTERVAL,
    DEFAULT_TEMPLATE_REPORT_INTERVAL,
    nvm_profile_from_settings,
    read_nvm,
    render_nvm,
)
from ocgate.profiles._schema import Kind, validate

__all__ = ["main"]

_POLICIES = {"disconnect": "Disconnect", "connect": "Connect", "donothing": "DoNothing",
             "pause": "Pause"}  # fmt: skip


def _server(text: str) -> HostEntry:
    name, sep, address = text.partition("=")
    if not sep or not name.strip() or not address.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=ADDRESS")
    return HostEntry(name.strip(), address.strip())


def _https(text: str) -> TrustedHttpsServer:
    target, sep, digest = text.rpartition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST[:PORT]=SHA256")
    host, port = target, 443
    head, colon, tail = target.rpartition(":")
    if colon and tail.isdigit() and not target.endswith("]"):
        host, port = head, int(tail)
    digest = digest.replace(":", "").upper()
    return TrustedHttpsServer(host.strip("[]"), port, digest)


def _pin(path: str) -> CertificatePin:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        data = Path(path).read_bytes()
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))  # fmt: skip
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{path}: not a readable certificate: {exc}") from None
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return CertificatePin(
        subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(), pin=pin
    )


def _vpn_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], kind: str) -> None:
    what = "the VPN client profile" if kind == "client" else "the management-tunnel profile"
    p = sub.add_parser(kind, help=f"write {what}")
    p.add_argument("-o", "--output", required=True, help="file to write ('-': standard output)")
    p.add_argument("--server", action="append", type=_server, default=[],
                   metavar="NAME=ADDRESS", help="a server list entry (repeat)")  # fmt: skip
    p.add_argument("--strict-certificate-trust", action=argparse.BooleanOptionalAction)
    p.add_argument("--auto-vpn-policy", action="store_true",
                   help="Automatic VPN Policy: Trusted Network Detection")  # fmt: skip
    p.add_argument("--trusted-dns-domain", action="append", default=[], metavar="DOMAIN")
    p.add_argument("--trusted-dns-server", action="append", default=[], metavar="ADDRESS")
    p.add_argument("--trusted-https-server", action="append", type=_https, default=[],
                   metavar="HOST[:PORT]=SHA256",
                   help="trusted when HOST serves the certificate with this SHA-256")  # fmt: skip
    p.add_argument("--trusted-policy", choices=sorted(_POLICIES), default="disconnect")
    p.add_argument("--untrusted-policy", choices=["connect", "donothing", "pause"],
                   default="connect")  # fmt: skip
    p.add_argument("--always-on", action="store_true")
    p.add_argument("--connect-failure-policy", choices=["closed", "open"])
    p.add_argument("--captive-portal-remediation", action="store_true")
    p.add_argument("--captive-portal-remediation-timeout", type=int, metavar="MINUTES")
    p.add_argument("--apply-last-local-resource-rules", action=argparse.BooleanOptionalAction)
    p.add_argument("--allow-vpn-disconnect", action=argparse.BooleanOptionalAction)
    p.add_argument("--pin-cert", action="append", type=_pin, default=[], metavar="CERT",
                   help="pin this certificate's public key (PEM or DER; repeat)")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocgate profile", description="Write or check AnyConnect / Secure Client profiles."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _vpn_parser(sub, "client")
    _vpn_parser(sub, "mgmt")
    nvm = sub.add_parser("nvm", help="write the NVM profile from the collector's settings")
    nvm.add_argument("-c", "--config", required=True, help="the gateway's (or collector's) file")
    nvm.add_argument("-o", "--output", required=True, help="file to write ('-': standard output)")
    nvm.add_argument("--address", help="collector address to publish (default: the listener's, "
                     "or the gateway's tunnel address for a wildcard listener)")  # fmt: skip
    nvm.add_argument("--flow-report-interval", type=int, default=DEFAULT_FLOW_REPORT_INTERVAL,
                     metavar="SECONDS", help="0: report flows only when they end")  # fmt: skip
    nvm.add_argument("--template-report-interval", type=int,
                     default=DEFAULT_TEMPLATE_REPORT_INTERVAL, metavar="MINUTES")  # fmt: skip
    check = sub.add_parser("check", help="validate a profile and read it back")
    check.add_argument("kind", choices=["client", "mgmt", "nvm"])
    check.add_argument("file")
    return parser


def _client(args: argparse.Namespace, *, management: bool) -> bytes:
    for address in args.trusted_dns_server:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(
                f"not an IP address: {address!r}", expected="--trusted-dns-server ADDRESS"
            ) from None
    failure = args.connect_failure_policy
    profile = ClientProfile(
        servers=tuple(args.server),
        management=management,
        strict_certificate_trust=args.strict_certificate_trust,
        automatic_vpn_policy=args.auto_vpn_policy,
        trusted_dns_domains=tuple(args.trusted_dns_domain),
        trusted_dns_servers=tuple(args.trusted_dns_server),
        trusted_https_servers=tuple(args.trusted_https_server),
        trusted_network_policy=_POLICIES[args.trusted_policy],
        untrusted_network_policy=_POLICIES[args.untrusted_policy],
        always_on=args.always_on,
        connect_failure_policy=None if failure is None else failure.capitalize(),
        captive_portal_remediation=args.captive_portal_remediation,
        captive_portal_remediation_timeout=args.captive_portal_remediation_timeout,
        apply_last_local_resource_rules=args.apply_last_local_resource_rules,
        allow_vpn_disconnect=args.allow_vpn_disconnect,
        pins=tuple(args.pin_cert),
    )
    data = render_client(profile)
    kind: Kind = "mgmt" if management else "client"
    validate(kind, data)
    if read_client(data, management=management) != profile:  # pragma: no cover - a bug here.
        raise OcgateError("the written profile does not read back equal")
    return data


def _nvm(args: argparse.Namespace) -> bytes:
    from ocgate.config import load_collector_config, load_config

    collector = load_collector_config(args.config)
    tunnel_address = None
    if args.address is None:
        try:
            network = load_config(args.config).ipv4_network
        except ConfigError:
            network = None  # A collector-only file: the listener's address must do.
        if network is not None:
            tunnel_address = str(network.network_address + 1)
    try:
        profile = nvm_profile_from_settings(
            collector.settings,
            address=args.address,
            tunnel_address=tunnel_address,
            flow_report_interval=args.flow_report_interval or None,
            template_report_interval=args.template_report_interval,
        )
    except ConfigError as exc:
        raise collector.locate(exc) from None
    data = render_nvm(profile)
    validate("nvm", data)
    if read_nvm(data) != profile:  # pragma: no cover - a bug here.
        raise OcgateError("the written profile does not read back equal")
    return data


def _check(args: argparse.Namespace) -> str:
    data = Path(args.file).read_bytes()
    validate(args.kind, data)
    if args.kind == "nvm":
        nvm = read_nvm(data)
        return f"{args.file}: valid NVM profile (collector {nvm.collector}:{nvm.port})"
    profile = read_client(data, management=args.kind == "mgmt")
    return f"{args.file}: valid {args.kind} profile ({len(profile.servers)} server(s))"


def main(argv: Sequence[str]) -> int:
    """Run ``ocgate profile``; exit status 0, or 1 with the reason on standard error."""
    args = _parser().parse_args(list(argv))
    try:
        if args.command == "check":
            print(_check(args))
            return 0
        if args.command == "nvm":
            data = _nvm(args)
        else:
            data = _client(args, management=args.command == "mgmt")
        if args.output == "-":
            sys.stdout.buffer.write(data)
        else:
            Path(args.output).write_bytes(data)
            sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest().upper()
            print(f"wrote {args.output} ({len(data)} bytes, SHA-1 {sha1})")
    except (OcgateError, OSError) as exc:
        print(f"ocgate profile: error: {exc}", file=sys.stderr)
        return 1
    return 0
