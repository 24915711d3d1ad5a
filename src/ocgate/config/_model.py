"""The validated configuration: frozen values with ocserv's meanings and defaults.

Field names are the ocserv key names with ``-`` turned into ``_``. Defaults are ocserv's built-in
defaults
(``src/config.c``), not the values of its shipped sample config. Units are seconds unless stated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["AuthMethod", "Config", "ConfigWarning", "IPAddress", "IPNetwork"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthMethod:
    """One ``auth``/``enable-auth`` entry, e.g.
    ``plain[passwd=/etc/ocserv/ocpasswd,otp=/etc/ocserv/otp]``.

    :param name: the method (``plain``, ``certificate``, ``radius``, ``pam``, …).
    :param params: the bracketed options; ``plain[FILE]`` (legacy form) is stored as ``{"passwd":
    FILE}``.
    """

    name: str
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigWarning:
    """A finding that does not stop the server (e.g. a key ocgate does not implement yet)."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A whole ocserv.conf, validated. Build it with :func:`ocgate.config.load_config`."""

    source: str
    """Path of the file this was read from (for reloads and messages)."""

    # Authentication (ocserv-compatibility §4.1).
    auth: tuple[AuthMethod, ...]
    enable_auth: tuple[AuthMethod, ...] = ()

    # Sockets (§4.6).
    listen_host: str | None = None
    tcp_port: int = 443
    udp_port: int | None = None

    # TLS (§4.4).
    server_cert: tuple[str, ...] = ()
    server_key: tuple[str, ...] = ()
    ca_cert: str | None = None
    tls_priorities: str | None = None
    """The GnuTLS priority string as written; ``ocgate.tls`` translates it."""
    cisco_client_compat: bool = False

    # DTLS (§4.8).
    udp_listen_host: str | None = None
    dtls_legacy: bool = True
    """Legacy (resumed) DTLS for Cisco clients; implied by ``cisco-client-compat``."""
    dtls_psk: bool = True
    match_tls_dtls_ciphers: bool = False
    switch_to_tcp_timeout: int = 25
    try_mtu_discovery: bool = False

    # Address pools (§4.6).
    ipv4_network: ipaddress.IPv4Network | None = None
    ipv6_network: ipaddress.IPv6Network | None = None
    ipv6_subnet_prefix: int = 128
    predictable_ips: bool = True
    device: str = "vpns"

    # What clients are told (§4.6).
    dns: tuple[IPAddress, ...] = ()
    split_dns: tuple[str, ...] = ()
    default_domain: str | None = None
    route: tuple[IPNetwork, ...] = ()
    """Split-include routes, host bits cleared. Empty with ``route_default``: full tunnel."""
    route_default: bool = False
    """``route = default`` (or ``0.0.0.0/0``, ``::/0``): full tunnel, DNS forced through it."""
    no_route: tuple[IPNetwork, ...] = ()
    tunnel_all_dns: bool = False
    mtu: int | None = None
    banner: str | None = None
    pre_login_banner: str | None = None

    # Timers (§4.7).
    dpd: int = 90
    mobile_dpd: int = 1800
    keepalive: int = 32400
    idle_timeout: int | None = None
    mobile_idle_timeout: int | None = None
    session_timeout: int | None = None
    cookie_timeout: int = 300
    auth_timeout: int = 240

    # Limits (§4.9).
    max_clients: int = 0
    max_same_clients: int = 0

    # Process (§4.10).
    pid_file: str | None = None
    socket_file: str = "/var/run/ocserv-socket"
    run_as_user: str | None = None
    run_as_group: str | None = None
    log_level: int = 2

    # Operations (§4.10, §5).
    use_occtl: bool = False
    occtl_socket_file: str = "/var/run/occtl.socket"
    connect_script: str | None = None
    disconnect_script: str | None = None
    host_update_script: str | None = None
    metrics_listen: str | None = None
    """``HOST:PORT`` of the Prometheus endpoint (an ocgate extension; off when unset)."""

    warnings: tuple[ConfigWarning, ...] = ()
    """Non-fatal findings: keys ocserv knows that ocgate does not implement yet, renamed keys."""

    @property
    def passwd_file(self) -> str | None:
        """The ``passwd=`` file of the ``plain`` method, if any."""
        for method in (*self.auth, *self.enable_auth):
            if method.name == "plain":
                return method.params.get("passwd")
        return None
