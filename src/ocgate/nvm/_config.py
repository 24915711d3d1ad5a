"""The ``nvm-*`` configuration keys: value parsers and the collector's settings.

Theory of operation
-------------------
The keys live in the ocserv.conf option table (``ocgate.config._options``, section "ocgate
extensions") and land in flat ``Config.nvm_*`` fields; the parsers below check each value on its
own. :class:`NvmSettings` applies the rules that involve several keys (a DTLS listener needs a
certificate and key, the API needs a token file) and :meth:`NvmSettings.from_config` builds the
privacy policy. ``ocgate.config._collector`` reads the same keys from a collector-only file
(``ocgate nvm serve``) and checks the files they name, with the line of each key. This module is
pure: it never opens a socket, and imports nothing from ``ocgate.config`` at run time (the option
table imports it, so the reverse import would be circular).

Keys (all optional; the collector runs when at least one listener is configured):

* ``nvm-listen = udp://0.0.0.0:2055`` / ``tcp://[::]:4739`` (repeatable);
* ``nvm-dtls-listen = dtls://0.0.0.0:4740`` (repeatable) with ``nvm-dtls-cert``,
  ``nvm-dtls-key`` and, for mutual DTLS, ``nvm-dtls-ca``;
* ``nvm-allow = 10.0.0.0/8`` (repeatable): exporter networks allowed besides the defaults.
  Exporters are admitted from loopback, the VPN pools (``ipv4-network`` / ``ipv6-network``,
  under ``ocgate serve``) and these networks, never from everyone by default; ``ocgate nvm
  serve`` has no pools, so there it is loopback plus these. To accept every source, say so:
  ``nvm-allow = 0.0.0.0/0`` and ``nvm-allow = ::/0`` (:meth:`NvmSettings.exporter_networks`);
* ``nvm-store = sqlite:////var/lib/ocgate/nvm.sqlite`` or ``postgresql://…``;
* ``nvm-api-listen = 127.0.0.1:8443``, ``nvm-api-token-file = /etc/ocgate/nvm-api.token``;
* ``nvm-retention-days = 30``;
* ``nvm-syslog = udp://siem:514`` / ``tcp://…`` / ``tls://…`` (repeatable),
  ``nvm-json-file = /var/log/ocgate/nvm.jsonl``, ``nvm-json-http = https://siem/ingest``;
* the ``nvm-privacy-*`` keys of :mod:`ocgate.nvm._privacy`;
* ``metrics-listen = 127.0.0.1:9099``: Prometheus ``/metrics`` of the collector when it runs alone
  (inside ``ocgate serve`` the gateway serves that key).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import urlsplit

from ocgate.errors import ConfigError
from ocgate.nvm._privacy import PRIVACY_KEYS, PrivacyPolicy, parse_privacy_setting

if TYPE_CHECKING:
    from ocgate.config import Config

__all__ = [
    "DEFAULT_NVM_PORT",
    "DEFAULT_RETENTION_DAYS",
    "DEFAULT_STORE",
    "LOOPBACK",
    "ListenAddress",
    "NvmSettings",
    "SinkAddress",
    "nvm_configured",
    "parse_allow",
    "parse_dtls_listen",
    "parse_http_url",
    "parse_listen_url",
    "parse_privacy",
    "parse_retention_days",
    "parse_store_url",
    "parse_syslog_url",
    "privacy_parser",
]

DEFAULT_NVM_PORT: Final = 2055
"""The port NVM exporters commonly use (UDP); IANA's IPFIX ports are 4739 and 4740 (DTLS)."""
DEFAULT_STORE: Final = "sqlite:////var/lib/ocgate/nvm.sqlite"
LOOPBACK: Final = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
"""Always allowed to export: local processes (and the tests)."""
DEFAULT_RETENTION_DAYS: Final = 30
_DEFAULT_PORTS: Final = {"udp": 2055, "tcp": 4739, "dtls": 4740}
_SYSLOG_PORTS: Final = {"udp": 514, "tcp": 514, "tls": 6514}


class _Ctx(Protocol):
    """The part of ``ocgate.config._values.ParseContext`` the parsers use."""

    @property
    def base_dir(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where a collector listener binds.

    :param transport: ``udp``, ``tcp`` or ``dtls``.
    :param host: the address to bind (``0.0.0.0``, ``::``, a specific address).
    :param port: the port.
    """

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SinkAddress:
    """Where a syslog sink sends: ``udp``, ``tcp`` or ``tls`` to ``host:port``."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def _split_url(value: str, schemes: Sequence[str], ports: dict[str, int], form: str) -> SinkAddress:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(f"not a valid URL: {value!r}", expected=form) from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"not a valid URL: {value!r}", expected=form)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"unexpected path or credentials in {value!r}", expected=form)
    return SinkAddress(parts.scheme, parts.hostname, port or ports[parts.scheme])


def parse_listen_url(value: str, ctx: _Ctx | None = None) -> ListenAddress:
    """``udp://HOST[:PORT]`` or ``tcp://HOST[:PORT]`` (``nvm-listen``)."""
    found = _split_url(value, ("udp", "tcp"), _DEFAULT_PORTS, "udp://0.0.0.0:2055 or tcp://…")
    return ListenAddress(found.transport, found.host, found.port)


def parse_dtls_listen(value: str, ctx: _Ctx | None = None) -> ListenAddress:
    """``dtls://HOST[:PORT]`` (``nvm-dtls-listen``)."""
    found = _split_url(value, ("dtls",), _DEFAULT_PORTS, "dtls://0.0.0.0:4740")
    return ListenAddress(found.transport, found.host, found.port)


def parse_syslog_url(value: str, ctx: _Ctx | None = None) -> SinkAddress:
    """``udp://HOST[:PORT]``, ``tcp://…`` or ``tls://…`` (``nvm-syslog``)."""
    return _split_url(value, ("udp", "tcp", "tls"), _SYSLOG_PORTS, "udp://siem.example:514")


def parse_http_url(value: str, ctx: _Ctx | None = None) -> str:
    """``http://HOST[:PORT]/PATH`` or ``https://…`` (``nvm-json-http``)."""
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        raise ConfigError(f"not a valid URL: {value!r}", expected="https://host/path") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"not an http(s) URL: {value!r}", expected="https://host/path")
    return value


def parse_allow(
    value: str, ctx: _Ctx | None = None
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network (``10.0.0.0/8``, ``2001:db8::/32``) or one address (``nvm-allow``)."""
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConfigError(f"not a network: {value!r}", expected="e.g. 10.0.0.0/8") from None


def parse_store_url(value: str, ctx: _Ctx | None = None) -> str:
    """``sqlite:///ABSOLUTE``, ``sqlite://RELATIVE``, a plain path, or ``postgresql://…``."""
    if value.startswith(("postgresql://", "postgres://")):
        return value
    path = value.removeprefix("sqlite://")
    if not path:
        raise ConfigError("empty store path", expected="sqlite:////var/lib/ocgate/nvm.sqlite")
    if not os.path.isabs(path) and ctx is not None:
        path = os.path.normpath(os.path.join(ctx.base_dir, path))
    return f"sqlite://{path}"


def parse_retention_days(value: str, ctx: _Ctx | None = None) -> int:
    """Whole days to keep NVM data (``0``: keep forever)."""
    if not value.isdigit() or int(value) > 36500:
        raise ConfigError(f"not a number of days: {value!r}", expected="0 to 36500")
    return int(value)


def privacy_parser(key: str) -> Callable[[str, _Ctx], tuple[str, str]]:
    """The option-table parser of one ``nvm-privacy-*`` key: checks, returns ``(key, value)``."""
    if key not in PRIVACY_KEYS:
        raise ValueError(f"not a privacy key: {key}")

    def parse(value: str, ctx: _Ctx) -> tuple[str, str]:
        parse_privacy_setting(key, value)
        if key == "nvm-privacy-hmac-key-file" and not os.path.isabs(value):
            value = os.path.normpath(os.path.join(ctx.base_dir, value))
        return (key, value)

    return parse


def parse_privacy(settings: Sequence[tuple[str, str]]) -> PrivacyPolicy:
    """The policy of the collected ``nvm-privacy-*`` lines (file order)."""
    return PrivacyPolicy.from_settings(settings)


def nvm_configured(config: Config) -> bool:
    """Whether the configuration asks for an NVM collector (any listener set)."""
    return bool(config.nvm_listen or config.nvm_dtls_listen)


@dataclass(frozen=True, slots=True, kw_only=True)
class NvmSettings:
    """Everything the collector needs, checked across keys.

    :param listen: plain UDP / TCP listeners.
    :param dtls_listen: DTLS listeners.
    :param dtls_cert: server certificate (PEM, chain allowed) for DTLS.
    :param dtls_key: its private key.
    :param dtls_ca: CA bundle of exporter certificates; set means mutual DTLS.
    :param allow: exporter networks configured with ``nvm-allow`` (added to the defaults, see
        :meth:`exporter_networks`).
    :param pools: the VPN address pools (``ipv4-network``, ``ipv6-network``; empty for ``ocgate
        nvm serve``).
    :param store: store URL.
    :param retention_days: 0 keeps data forever.
    :param syslog: syslog sinks.
    :param json_file: JSON-lines file sink.
    :param json_http: HTTP(S) JSON sink.
    :param api_listen: ``HOST:PORT`` of the REST API (served by ``ocgate.nvm.api``).
    :param api_token_file: bearer token file of the REST API.
    :param privacy: the privacy policy.
    :param metrics_listen: ``HOST:PORT`` of the collector's Prometheus endpoint (``ocgate nvm
        serve`` only; the gateway serves ``metrics-listen`` itself).
    """

    listen: tuple[ListenAddress, ...] = ()
    dtls_listen: tuple[ListenAddress, ...] = ()
    dtls_cert: str | None = None
    dtls_key: str | None = None
    dtls_ca: str | None = None
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    pools: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    store: str = DEFAULT_STORE
    retention_days: int = DEFAULT_RETENTION_DAYS
    syslog: tuple[SinkAddress, ...] = ()
    json_file: str | None = None
    json_http: str | None = None
    api_listen: str | None = None
    api_token_file: str | None = None
    privacy: PrivacyPolicy = field(default_factory=PrivacyPolicy.default)
    metrics_listen: str | None = None

    def __post_init__(self) -> None:
        if self.dtls_listen and not (self.dtls_cert and self.dtls_key):
            raise ConfigError(
                "a DTLS listener needs a certificate and a key",
                key="nvm-dtls-listen",
                expected="nvm-dtls-cert and nvm-dtls-key lines",
            )
        if self.api_listen and not self.api_token_file:
            raise ConfigError(
                "the API needs bearer tokens",
                key="nvm-api-listen",
                expected="an nvm-api-token-file line (one token per line in that file)",
            )

    def exporter_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Where exporters may send from: loopback, the VPN pools, then ``nvm-allow``.

        Never empty, so never "everyone" unless ``nvm-allow`` says ``0.0.0.0/0`` / ``::/0``.
        """
        return (*LOOPBACK, *self.pools, *self.allow)

    @classmethod
    def from_config(cls, config: Config) -> NvmSettings:
        """Build and cross-check the settings of a loaded ``Config``.

        :raises ConfigError: missing DTLS certificate/key or API token file, bad privacy key
            file.
        """
        try:
            return cls(
                listen=config.nvm_listen,
                dtls_listen=config.nvm_dtls_listen,
                dtls_cert=config.nvm_dtls_cert,
                dtls_key=config.nvm_dtls_key,
                dtls_ca=config.nvm_dtls_ca,
                allow=config.nvm_allow,
                pools=tuple(
                    net for net in (config.ipv4_network, config.ipv6_network) if net is not None
                ),
                store=config.nvm_store,
                retention_days=config.nvm_retention_days,
                syslog=config.nvm_syslog,
                json_file=config.nvm_json_file,
                json_http=config.nvm_json_http,
                api_listen=config.nvm_api_listen,
                api_token_file=config.nvm_api_token_file,
                privacy=parse_privacy(config.nvm_privacy),
            )
        except ConfigError as exc:
            raise ConfigError(
                exc.message, file=config.source, key=exc.key, expected=exc.expected
            ) from None
