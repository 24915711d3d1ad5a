"""The AnyConnect VPN client profile and the management-tunnel profile: build, check, read back.

Theory of operation: a :class:`ClientProfile` holds what ``ocgate profile client`` and
``ocgate profile mgmt`` can set, in the terms of Cisco's administrator guide (docs/profiles.md
cites the guide section of every element). :meth:`ClientProfile.check` refuses the combinations
the guide rules out, each with a message naming the option to change; :func:`render_client`
turns a checked profile into ``AnyConnectProfile`` XML (namespace
``http://schemas.xmlsoap.org/encoding/``, as Cisco's profiles carry), and the caller validates
the bytes against the schema the project keeps (:mod:`ocgate.profiles._schema`).
:func:`read_client` parses such a file back (defusedxml: a profile is a file an administrator
may have received from elsewhere), checks the values XSD cannot check (the text of mixed
elements such as ``<AutomaticVPNPolicy>true``) and returns the same :class:`ClientProfile`, so
a written profile reads back equal.

Rules (guide references in docs/profiles.md):

* Always-On needs at least one server in the server list (the client must have a headend to
  connect to) and Automatic VPN Policy with Trusted Network Detection;
* Trusted Network Detection needs at least one trusted DNS domain, DNS server or HTTPS server;
* the connect failure policy, captive-portal remediation and "allow VPN disconnect" exist only
  under Always-On; captive-portal remediation only with the ``Closed`` failure policy;
* a management-tunnel profile needs one or more servers and Trusted Network Detection with
  ``Disconnect`` on trusted networks and ``Connect`` on untrusted ones (Cisco tech note 215442's
  configuration of the management tunnel; see docs/profiles.md for what is inference).
"""

from __future__ import annotations

import base64
import ipaddress
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from defusedxml import ElementTree as SafeET

from ocgate.errors import ConfigError

__all__ = [
    "NS",
    "CertificatePin",
    "ClientProfile",
    "HostEntry",
    "TrustedHttpsServer",
    "read_client",
    "render_client",
]

NS = "http://schemas.xmlsoap.org/encoding/"
"""The namespace of Cisco's AnyConnect profiles (``xmlns`` of ``<AnyConnectProfile>``)."""

TRUSTED_POLICIES = ("Disconnect", "Connect", "DoNothing", "Pause")
UNTRUSTED_POLICIES = ("Connect", "DoNothing", "Pause")
FAILURE_POLICIES = ("Closed", "Open")
_HEX64 = re.compile(r"[0-9A-Fa-f]{64}")
_DOMAIN = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*\.?")


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


@dataclass(frozen=True, slots=True)
class HostEntry:
    """One ``<HostEntry>`` of the ``<ServerList>``: a display name and an address (FQDN or IP,
    optionally ``/group-url`` path, as the guide's "Host Address")."""

    name: str
    address: str
    user_group: str | None = None


@dataclass(frozen=True, slots=True)
class TrustedHttpsServer:
    """A trusted HTTPS server of Trusted Network Detection: reachable with this certificate
    (SHA-256 of the DER certificate, upper-case hex) means "on a trusted network"."""

    address: str
    port: int
    certificate_hash: str


@dataclass(frozen=True, slots=True)
class CertificatePin:
    """A certificate pin: base64 SHA-256 of a certificate's SubjectPublicKeyInfo, with the
    subject and issuer the guide's profile editor records for it."""

    subject: str
    issuer: str
    pin: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientProfile:
    """What a VPN (or management-tunnel) profile says; see the module docstring for the rules.

    :param management: a management-tunnel profile (``VpnMgmtTunProfile.xml``).
    :param automatic_vpn_policy: Trusted Network Detection on (``<AutomaticVPNPolicy>true``).
    :param always_on: ``<AlwaysOn>true`` (needs ``automatic_vpn_policy`` and a server).
    :param connect_failure_policy: ``Closed`` or ``Open`` (Always-On only).
    """

    servers: tuple[HostEntry, ...] = ()
    management: bool = False
    strict_certificate_trust: bool | None = None
    automatic_vpn_policy: bool = False
    trusted_dns_domains: tuple[str, ...] = ()
    trusted_dns_servers: tuple[str, ...] = ()
    trusted_https_servers: tuple[TrustedHttpsServer, ...] = ()
    trusted_network_policy: str = "Disconnect"
    untrusted_network_policy: str = "Connect"
    always_on: bool = False
    connect_failure_policy: str | None = None
    captive_portal_remediation: bool = False
    captive_portal_remediation_timeout: int | None = None
    apply_last_local_resource_rules: bool | None = None
    allow_vpn_disconnect: bool | None = None
    pins: tuple[CertificatePin, ...] = field(default=())

    def check(self) -> None:
        """Refuse what the guide rules out (module docstring).

        :raises ConfigError: naming the option to change.
        """
        _check_values(self)
        if self.always_on and not self.servers:
            raise ConfigError(
                "Always-On needs at least one server in the server list",
                expected="one or more --server NAME=ADDRESS",
            )
        tnd = bool(self.trusted_dns_domains or self.trusted_dns_servers)
        tnd = tnd or bool(self.trusted_https_servers)
        if self.automatic_vpn_policy and not tnd:
            raise ConfigError(
                "Trusted Network Detection needs a trusted DNS domain, DNS server or HTTPS server",
                expected="--trusted-dns-domain, --trusted-dns-server or --trusted-https-server",
            )
        if not self.automatic_vpn_policy and (tnd or self.always_on):
            raise ConfigError(
                "trusted networks and Always-On belong to the Automatic VPN Policy",
                expected="--auto-vpn-policy (or none of the --trusted-* and --always-on options)",
            )
        if not self.always_on and (
            self.connect_failure_policy is not None
            or self.captive_portal_remediation
            or self.captive_portal_remediation_timeout is not None
            or self.apply_last_local_resource_rules is not None
            or self.allow_vpn_disconnect is not None
        ):
            raise ConfigError(
                "the connect failure policy, captive-portal remediation and VPN disconnect "
                "settings apply only under Always-On",
                expected="--always-on, or none of those options",
            )
        if self.captive_portal_remediation and self.connect_failure_policy != "Closed":
            raise ConfigError(
                "captive-portal remediation applies only to the Closed connect failure policy",
                expected="--connect-failure-policy closed",
            )
        if self.captive_portal_remediation_timeout is not None and not (
            self.captive_portal_remediation
        ):
            raise ConfigError(
                "a captive-portal remediation timeout needs captive-portal remediation",
                expected="--captive-portal-remediation",
            )
        if self.management:
            if not self.servers:
                raise ConfigError(
                    "a management-tunnel profile needs its headend in the server list",
                    expected="one or more --server NAME=ADDRESS",
                )
            if not (self.automatic_vpn_policy and tnd):
                raise ConfigError(
                    "a management tunnel comes up only off trusted networks: it needs Trusted "
                    "Network Detection",
                    expected="--auto-vpn-policy with --trusted-dns-domain, --trusted-dns-server "
                    "or --trusted-https-server",
                )
            if (self.trusted_network_policy, self.untrusted_network_policy) != (
                "Disconnect",
                "Connect",
            ):
                raise ConfigError(
                    "a management-tunnel profile disconnects on trusted networks and connects "
                    "on untrusted ones",
                    expected="--trusted-policy disconnect --untrusted-policy connect",
                )


def _check_values(profile: ClientProfile) -> None:
    for host in profile.servers:
        if not host.name.strip() or not host.address.strip():
            raise ConfigError(
                f"empty server name or address: {host.name!r}={host.address!r}",
                expected="--server NAME=ADDRESS",
            )
    names = [host.name for host in profile.servers]
    if len(set(names)) != len(names):
        raise ConfigError("two servers have the same name", expected="distinct --server names")
    for domain in profile.trusted_dns_domains:
        if _DOMAIN.fullmatch(domain) is None:
            raise ConfigError(
                f"not a DNS domain: {domain!r}",
                expected="a domain such as corp.example or *.corp.example",
            )
    for server in profile.trusted_dns_servers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise ConfigError(
                f"not an IP address: {server!r}", expected="--trusted-dns-server ADDRESS"
            ) from None
    for https in profile.trusted_https_servers:
        if _HEX64.fullmatch(https.certificate_hash) is None:
            raise ConfigError(
                f"not a SHA-256 certificate hash: {https.certificate_hash!r}",
                expected="64 hexadecimal digits (openssl x509 -noout -fingerprint -sha256)",
            )
        if not 0 < https.port < 65536 or not https.address:
            raise ConfigError(
                f"bad trusted HTTPS server {https.address!r}:{https.port}",
                expected="--trusted-https-server HOST[:PORT]=SHA256",
            )
    if profile.trusted_network_policy not in TRUSTED_POLICIES:
        raise ConfigError(
            f"unknown trusted network policy {profile.trusted_network_policy!r}",
            expected=" or ".join(TRUSTED_POLICIES),
        )
    if profile.untrusted_network_policy not in UNTRUSTED_POLICIES:
        raise ConfigError(
            f"unknown untrusted network policy {profile.untrusted_network_policy!r}",
            expected=" or ".join(UNTRUSTED_POLICIES),
        )
    policy = profile.connect_failure_policy
    if policy is not None and policy not in FAILURE_POLICIES:
        raise ConfigError(f"unknown connect failure policy {policy!r}", expected="Closed or Open")
    timeout = profile.captive_portal_remediation_timeout
    if timeout is not None and not 1 <= timeout <= 1440:
        raise ConfigError(
            f"captive-portal remediation timeout {timeout} out of range",
            expected="1-1440 minutes",
        )
    for pin in profile.pins:
        try:
            raw = base64.b64decode(pin.pin, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigError(
                f"not a base64 SHA-256 pin: {pin.pin!r}",
                expected="base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo",
            )


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)  # In NS through the root's xmlns (see render_client).
    if text is not None:
        child.text = text
    return child


def render_client(profile: ClientProfile) -> bytes:
    """The profile's XML, UTF-8 with a declaration; run :meth:`ClientProfile.check` first."""
    profile.check()
    # Unqualified tags under a literal xmlns: ElementTree's default_namespace cannot serialize
    # the unqualified Subject/Issuer attributes of <Pin>.
    root = ET.Element("AnyConnectProfile", {"xmlns": NS})
    init = _sub(root, "ClientInitialization")
    if profile.strict_certificate_trust is not None:
        _sub(init, "StrictCertificateTrust", _bool(profile.strict_certificate_trust))
    if profile.automatic_vpn_policy:
        auto = _sub(init, "AutomaticVPNPolicy", "true")
        if profile.trusted_dns_domains:
            _sub(auto, "TrustedDNSDomains", ",".join(profile.trusted_dns_domains))
        if profile.trusted_dns_servers:
            _sub(auto, "TrustedDNSServers", ",".join(profile.trusted_dns_servers))
        if profile.trusted_https_servers:
            listing = _sub(auto, "TrustedHttpsServerList")
            for https in profile.trusted_https_servers:
                entry = _sub(listing, "TrustedHttpsServer")
                _sub(entry, "Address", https.address)
                _sub(entry, "Port", str(https.port))
                _sub(entry, "CertificateHash", https.certificate_hash.upper())
        _sub(auto, "TrustedNetworkPolicy", profile.trusted_network_policy)
        _sub(auto, "UntrustedNetworkPolicy", profile.untrusted_network_policy)
        if profile.always_on:
            always = _sub(auto, "AlwaysOn", "true")
            if profile.connect_failure_policy is not None:
                failure = _sub(always, "ConnectFailurePolicy", profile.connect_failure_policy)
                if profile.captive_portal_remediation:
                    remedy = _sub(failure, "AllowCaptivePortalRemediation", "true")
                    if profile.captive_portal_remediation_timeout is not None:
                        timeout = str(profile.captive_portal_remediation_timeout)
                        _sub(remedy, "CaptivePortalRemediationTimeout", timeout)
                if profile.apply_last_local_resource_rules is not None:
                    rules = _bool(profile.apply_last_local_resource_rules)
                    _sub(failure, "ApplyLastVPNLocalResourceRules", rules)
            if profile.allow_vpn_disconnect is not None:
                _sub(always, "AllowVPNDisconnect", _bool(profile.allow_vpn_disconnect))
    if profile.pins:
        pin_list = _sub(_sub(init, "CertificatePinning"), "PinList")
        for pin in profile.pins:
            element = _sub(pin_list, "Pin", pin.pin)
            element.set("Subject", pin.subject)
            element.set("Issuer", pin.issuer)
    if profile.servers:
        server_list = _sub(root, "ServerList")
        for host in profile.servers:
            entry = _sub(server_list, "HostEntry")
            _sub(entry, "HostName", host.name)
            _sub(entry, "HostAddress", host.address)
            if host.user_group is not None:
                _sub(entry, "UserGroup", host.user_group)
    ET.indent(root)
    _indent_mixed(root, 0)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode()


def _indent_mixed(element: ET.Element, depth: int) -> None:
    """Put the children of a mixed element (``<AlwaysOn>true``) on their own lines, as Cisco's
    profiles show them; :func:`ET.indent` leaves a non-blank text alone."""
    if len(element) and element.text and element.text.strip():
        element.text = element.text.strip() + "\n" + "  " * (depth + 1)
    for child in element:
        _indent_mixed(child, depth + 1)


def _text(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    return (element.text or "").strip()


def _mixed_true(element: ET.Element | None, what: str) -> bool:
    """The value of a mixed element (``<AlwaysOn>true<…>``): absent is false."""
    value = _text(element)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise ConfigError(f"<{what}> holds {value!r}", expected="true or false")
    return value == "true"


def _opt_bool(element: ET.Element | None) -> bool | None:
    value = _text(element)
    return None if value is None else value == "true"


def read_client(data: bytes, *, management: bool = False) -> ClientProfile:
    """Read a profile written by :func:`render_client` (or in its element set) back.

    Validate ``data`` against the schema first (:func:`ocgate.profiles.validate`): this reads the
    elements the schema allows and checks the rules again.

    :raises ConfigError: not well-formed, or a value or combination the guide rules out.
    """
    try:
        root = SafeET.fromstring(data)
    except (ET.ParseError, ValueError) as exc:  # defusedxml raises ValueError subclasses.
        raise ConfigError(f"not a well-formed XML profile: {exc}") from None
    init = root.find(_q("ClientInitialization"))
    auto = None if init is None else init.find(_q("AutomaticVPNPolicy"))
    always = None if auto is None else auto.find(_q("AlwaysOn"))
    failure = None if always is None else always.find(_q("ConnectFailurePolicy"))
    remedy = None if failure is None else failure.find(_q("AllowCaptivePortalRemediation"))
    automatic = _mixed_true(auto, "AutomaticVPNPolicy")
    always_on = automatic and _mixed_true(always, "AlwaysOn")

    def child(parent: ET.Element | None, tag: str) -> ET.Element | None:
        return None if parent is None else parent.find(_q(tag))

    def listed(tag: str) -> tuple[str, ...]:
        text = _text(child(auto, tag)) or ""
        return tuple(part.strip() for part in text.split(",") if part.strip())

    https = tuple(
        TrustedHttpsServer(
            address=_text(entry.find(_q("Address"))) or "",
            port=int(_text(entry.find(_q("Port"))) or "0"),
            certificate_hash=_text(entry.find(_q("CertificateHash"))) or "",
        )
        for entry in (() if auto is None else auto.iterfind(f"{_q('TrustedHttpsServerList')}/"
                                                             f"{_q('TrustedHttpsServer')}"))
    )  # fmt: skip
    timeout = _text(child(remedy, "CaptivePortalRemediationTimeout"))
    pins = tuple(
        CertificatePin(subject=pin.get("Subject", ""), issuer=pin.get("Issuer", ""),
                       pin=_text(pin) or "")
        for pin in (() if init is None else init.iterfind(f"{_q('CertificatePinning')}/"
                                                          f"{_q('PinList')}/{_q('Pin')}"))
    )  # fmt: skip
    servers = tuple(
        HostEntry(
            name=_text(entry.find(_q("HostName"))) or "",
            address=_text(entry.find(_q("HostAddress"))) or "",
            user_group=_text(entry.find(_q("UserGroup"))),
        )
        for entry in root.iterfind(f"{_q('ServerList')}/{_q('HostEntry')}")
    )
    profile = ClientProfile(
        servers=servers,
        management=management,
        strict_certificate_trust=_opt_bool(child(init, "StrictCertificateTrust")),
        automatic_vpn_policy=automatic,
        trusted_dns_domains=listed("TrustedDNSDomains"),
        trusted_dns_servers=listed("TrustedDNSServers"),
        trusted_https_servers=https,
        trusted_network_policy=_text(child(auto, "TrustedNetworkPolicy")) or "Disconnect",
        untrusted_network_policy=_text(child(auto, "UntrustedNetworkPolicy")) or "Connect",
        always_on=always_on,
        connect_failure_policy=_text(failure),
        captive_portal_remediation=_mixed_true(remedy, "AllowCaptivePortalRemediation"),
        captive_portal_remediation_timeout=None if timeout is None else int(timeout),
        apply_last_local_resource_rules=_opt_bool(child(failure, "ApplyLastVPNLocalResourceRules")),
        allow_vpn_disconnect=_opt_bool(child(always, "AllowVPNDisconnect")),
        pins=pins,
    )
    profile.check()
    return profile
