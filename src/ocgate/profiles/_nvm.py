"""The NVM service profile (``NVM_ServiceProfile.xml``) built from the collector's own settings.

Theory of operation: an endpoint's Network Visibility Module exports to the collector its NVM
profile names. Distributing that profile through the VPN manifest (``service-profile-nvm``)
makes every VPN user's endpoint export to this gateway's collector, where each flow is
attributed to the VPN session that held its source address.
:func:`nvm_profile_from_settings` derives the profile from the collector keys: the collector
address (an address the endpoint reaches through the tunnel), its port, whether it listens with
DTLS ("Secure"), and the fields the privacy policy drops anyway (the endpoint is told not to
collect them: data that is never sent cannot leak).
Hashed fields are still sent: the collector hashes them with its own key so equal values still
join.

The element names are inference (see ``schemas/NVMProfile.xsd`` and docs/profiles.md): Cisco
publishes the profile editor's fields, not the XML.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from defusedxml import ElementTree as SafeET

from ocgate.errors import ConfigError
from ocgate.nvm._config import ListenAddress, NvmSettings
from ocgate.nvm._privacy import FIELD_GROUPS, Action

__all__ = ["NvmProfile", "nvm_profile_from_settings", "read_nvm", "render_nvm"]

DEFAULT_FLOW_REPORT_INTERVAL = 60
"""Seconds between reports of long-lived flows (the profile editor's Periodic Flow Reporting)."""
DEFAULT_TEMPLATE_REPORT_INTERVAL = 1440
"""Minutes between template re-sends (nvm-ipfix.md §2.1: a day, reportedly Cisco's default)."""

_EXCLUDE_NAMES = {
    "user": "LoggedInUser",
    "hostname": "DestinationHostname",
    "process-path": "ProcessPath",
    "process-args": "ProcessArgs",
    "modules": "ModuleNameList",
}
"""Privacy group → the name of the profile field the endpoint leaves out (inference)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NvmProfile:
    """What the NVM profile says.

    :param collector: the collector's address as the endpoint reaches it through the tunnel.
    :param port: the collector's UDP (or DTLS) port.
    :param secure: export over DTLS.
    :param flow_report_interval: seconds between reports of a long flow; ``None``: report at end.
    :param template_report_interval: minutes between template re-sends.
    :param exclude: profile field names the endpoint does not collect.
    """

    collector: str
    port: int
    secure: bool
    flow_report_interval: int | None = DEFAULT_FLOW_REPORT_INTERVAL
    template_report_interval: int = DEFAULT_TEMPLATE_REPORT_INTERVAL
    exclude: tuple[str, ...] = ()

    def check(self) -> None:
        """:raises ConfigError: a value the profile cannot carry."""
        try:
            address = ipaddress.ip_address(self.collector)
        except ValueError:
            raise ConfigError(
                f"not an IP address: {self.collector!r}",
                expected="the collector's address as seen through the tunnel (--address)",
            ) from None
        if address.is_unspecified:
            raise ConfigError(
                f"{self.collector} is not an address an endpoint can send to",
                expected="--address, an address of this gateway reachable through the tunnel",
            )
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} out of range", expected="1-65535")
        interval = self.flow_report_interval
        if interval is not None and not 1 <= interval <= 86400:
            raise ConfigError(
                f"flow report interval {interval} out of range", expected="1-86400 seconds"
            )
        if not 1 <= self.template_report_interval <= 10080:
            raise ConfigError(
                f"template report interval {self.template_report_interval} out of range",
                expected="1-10080 minutes",
            )


def _listener(settings: NvmSettings) -> ListenAddress:
    for listener in (*settings.dtls_listen, *settings.listen):
        if listener.transport in ("dtls", "udp"):
            return listener
    raise ConfigError(
        "the collector has no UDP or DTLS listener: NVM exports over UDP or DTLS",
        key="nvm-listen",
        expected="nvm-listen = udp://ADDRESS:PORT or nvm-dtls-listen = dtls://ADDRESS:PORT",
    )


def nvm_profile_from_settings(
    settings: NvmSettings,
    *,
    address: str | None = None,
    tunnel_address: str | None = None,
    flow_report_interval: int | None = DEFAULT_FLOW_REPORT_INTERVAL,
    template_report_interval: int = DEFAULT_TEMPLATE_REPORT_INTERVAL,
) -> NvmProfile:
    """The profile that points endpoints at this collector.

    :param address: the collector address to publish; by default the listener's own address,
        or, for a wildcard or loopback listener, ``tunnel_address``.
    :param tunnel_address: the gateway's end of the tunnel (``ipv4-network`` + 1).
    :raises ConfigError: no usable listener or address.
    """
    listener = _listener(settings)
    if address is None:
        host = ipaddress.ip_address(listener.host)
        if not (host.is_unspecified or host.is_loopback):
            address = listener.host
        elif tunnel_address is not None:
            address = tunnel_address
        else:
            raise ConfigError(
                f"the collector listens on {listener.host}: which address do endpoints use?",
                key="nvm-listen",
                expected="--address ADDRESS, or an ipv4-network line (the gateway's tunnel "
                "address is then used)",
            )
    fields = settings.privacy.fields
    exclude = tuple(
        name
        for group, name in _EXCLUDE_NAMES.items()
        if all(fields.get(f) is Action.DROP for f in FIELD_GROUPS[group])
    )
    profile = NvmProfile(
        collector=address,
        port=listener.port,
        secure=listener.transport == "dtls",
        flow_report_interval=flow_report_interval,
        template_report_interval=template_report_interval,
        exclude=exclude,
    )
    profile.check()
    return profile


def render_nvm(profile: NvmProfile) -> bytes:
    """The profile's XML, UTF-8 with a declaration."""
    profile.check()
    root = ET.Element("NVMProfile")
    collector = ET.SubElement(root, "CollectorConfiguration")
    ET.SubElement(collector, "CollectorIP").text = profile.collector
    ET.SubElement(collector, "Port").text = str(profile.port)
    ET.SubElement(collector, "Secure").text = "true" if profile.secure else "false"
    periodic = profile.flow_report_interval is not None
    ET.SubElement(root, "PeriodicFlowReporting").text = "true" if periodic else "false"
    if profile.flow_report_interval is not None:
        ET.SubElement(root, "FlowReportInterval").text = str(profile.flow_report_interval)
    ET.SubElement(root, "TemplateReportInterval").text = str(profile.template_report_interval)
    if profile.exclude:
        exclude = ET.SubElement(ET.SubElement(root, "DataCollectionPolicy"), "Exclude")
        for name in profile.exclude:
            ET.SubElement(exclude, "Field").text = name
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode()


def read_nvm(data: bytes) -> NvmProfile:
    """Read a profile in :func:`render_nvm`'s element set back (validate it first).

    :raises ConfigError: not well-formed, or a value out of range.
    """
    try:
        root = SafeET.fromstring(data)
    except (ET.ParseError, ValueError) as exc:
        raise ConfigError(f"not a well-formed XML profile: {exc}") from None

    def text(path: str) -> str | None:
        value = root.findtext(path)
        return None if value is None else value.strip()

    interval = text("FlowReportInterval")
    profile = NvmProfile(
        collector=text("CollectorConfiguration/CollectorIP") or "",
        port=int(text("CollectorConfiguration/Port") or "0"),
        secure=text("CollectorConfiguration/Secure") == "true",
        flow_report_interval=None if interval is None else int(interval),
        template_report_interval=int(text("TemplateReportInterval") or "0"),
        exclude=tuple(
            (field.text or "").strip()
            for field in root.iterfind("DataCollectionPolicy/Exclude/Field")
        ),
    )
    profile.check()
    return profile
