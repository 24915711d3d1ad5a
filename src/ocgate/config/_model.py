"""The validated configuration: frozen values with ocserv's meanings and defaults.

Field names are the ocserv key names with ``-`` turned into ``_``. Defaults are ocserv's built-in
defaults (``src/config.c``), not the values of its shipped sample config. Units are seconds unless
stated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from ocgate.config._profile import ProfileFile
from ocgate.config._values import default_node_name
from ocgate.ipfilter import PortPolicy
from ocgate.nvm._config import ListenAddress as NvmListen
from ocgate.nvm._config import SinkAddress as NvmSink

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["AuthMethod", "Config", "ConfigWarning", "IPAddress", "IPNetwork"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthMethod:
    """One ``auth``/``enable-auth`` entry, e.g.
    ``plain[passwd=/etc/ocserv/ocpasswd,otp=/etc/ocserv/otp]``.

    :param name: the method (``plain``, ``certificate``, ``radius``, ``pam``, …).
    :param params: the bracketed options; the legacy form ``plain[FILE]`` is stored as
        ``{"passwd": FILE}``.
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
    acct: AuthMethod | None = None
    """``acct = radius[config=FILE]``: where accounting records go (``None``: none are sent)."""
    stats_report_time: int | None = None
    """Seconds between RADIUS Interim-Updates (``None``: Acct-Interim-Interval, else none)."""
    crl: str | None = None
    cert_user_oid: str | None = None
    cert_group_oid: str | None = None

    # Groups and per-user / per-group configuration (§4.5).
    select_group: tuple[str, ...] = ()
    """``select-group`` entries as written: ``name`` or ``name[Friendly label]``."""
    default_select_group: str | None = None
    auto_select_group: bool = False
    config_per_user: str | None = None
    config_per_group: str | None = None
    default_user_config: str | None = None
    default_group_config: str | None = None
    append_routes: bool = False

    # Sockets (§4.6).
    listen_host: str | None = None
    tcp_port: int = 443
    listen_proxy_proto: bool = False
    """``listen-proxy-proto``: each TCP connection starts with a PROXY protocol header naming the
    client (read by the worker before TLS; see :mod:`ocgate.proxyproto`)."""
    udp_port: int | None = None

    # TLS (§4.4).
    server_cert: tuple[str, ...] = ()
    server_key: tuple[str, ...] = ()
    ca_cert: str | None = None
    tls_priorities: str | None = None
    """The GnuTLS priority string as written; ``ocgate.tls`` translates it."""
    cisco_client_compat: bool = False
    cisco_svc_client_compat: bool = False
    """``cisco-svc-client-compat``: Cisco IP phones log in at ``/svc`` (served anyway, with a
    warning, when false, as ocserv does)."""

    # DTLS (§4.8).
    udp_listen_host: str | None = None
    dtls_legacy: bool = True
    """Legacy (resumed) DTLS for Cisco clients; implied by ``cisco-client-compat``."""
    dtls_psk: bool = True
    match_tls_dtls_ciphers: bool = False
    no_udp: bool = False
    """``no-udp``: the session gets no ``X-DTLS-*`` headers and no DTLS (CSTP only)."""
    switch_to_tcp_timeout: int = 25
    try_mtu_discovery: bool = False
    compression: bool = False
    """Negotiate packet compression (``ocgate.compress``); off by default: sizes leak."""
    compression_algo_priority: tuple[str, ...] = ("lz4", "lzs")
    """Method names (``lz4``, ``lzs``, ``deflate``), preferred first."""
    no_compress_limit: int = 256
    """Packets of at most this many bytes are sent uncompressed (at least 64)."""
    ping_leases: bool = False
    """``ping-leases``: a new pool address that answers a ping is skipped (``daemon/_ping.py``)."""

    # Address pools (§4.6).
    ipv4_network: ipaddress.IPv4Network | None = None
    ipv6_network: ipaddress.IPv6Network | None = None
    ipv6_subnet_prefix: int = 128
    predictable_ips: bool = True
    device: str = "vpns"

    # What clients are told (§4.6).
    dns: tuple[IPAddress, ...] = ()
    nbns: tuple[IPAddress, ...] = ()
    """``nbns`` (WINS) servers, sent as ``X-CSTP-NBNS``."""
    split_dns: tuple[str, ...] = ()
    default_domain: str | None = None
    route: tuple[IPNetwork, ...] = ()
    """Split-include routes, host bits cleared. Empty with ``route_default``: full tunnel."""
    route_default: bool = False
    """``route = default`` (or ``0.0.0.0/0``, ``::/0``): full tunnel, DNS forced through it."""
    no_route: tuple[IPNetwork, ...] = ()
    tunnel_all_dns: bool = False
    client_bypass_protocol: bool = False
    user_profile: ProfileFile | None = None
    """``user-profile``: the AnyConnect VPN profile listed in the login's manifest."""
    mgmt_tunnel_profile: ProfileFile | None = None
    """``service-profile-vpn-mgmt`` (ocgate): the management-tunnel profile (``vpn-mgmt``)."""
    nvm_profile: ProfileFile | None = None
    """``service-profile-nvm`` (ocgate): the NVM service profile (``nvm``)."""
    restrict_user_to_routes: bool = False
    """``restrict-user-to-routes``: the client may send only to its routes and DNS servers."""
    restrict_user_to_ports: PortPolicy | None = None
    """``restrict-user-to-ports``: the protocols and ports allowed (or, ``!`` form, refused);
    implies ``restrict-user-to-routes`` (ocserv ``doc/sample.config``)."""
    mtu: int | None = None
    included_http_headers: tuple[tuple[str, str], ...] = ()
    """``included-http-headers``: ``(name, value)`` added to every pre-tunnel HTTP response."""
    camouflage: bool = False
    """``camouflage``: answer as a plain web server unless the URL carries the secret."""
    camouflage_secret: str | None = None
    camouflage_realm: str | None = None
    """The Basic realm of the camouflage ``401`` (``None``: a ``404`` instead)."""
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
    rekey_time: int = 172800
    """``rekey-time``: seconds after which clients rekey (0: never; ocserv's default two days)."""
    rekey_method: str = "ssl"
    """``rekey-method``: ``ssl`` (TLS 1.2 renegotiation, TLS 1.3 KeyUpdate, DTLS rehandshake) or
    ``new-tunnel`` (a reconnect with the cookie)."""
    strap: str = "off"
    """``strap`` (ocgate): ``off``, ``optional`` or ``required`` — whether a CONNECT must prove,
    with the key its login presented, that it comes from the client that logged in."""

    # Limits (§4.9).
    rx_data_per_sec: int = 0
    """Bytes/s a session may send (``rx-data-per-sec``); more is dropped. 0: unlimited."""
    tx_data_per_sec: int = 0
    """Bytes/s a session may receive (``tx-data-per-sec``); more is dropped. 0: unlimited."""
    deny_roaming: bool = False
    """``deny-roaming``: a cookie is refused at CONNECT from another address than the login's."""
    max_clients: int = 0
    max_same_clients: int = 0
    rate_limit_ms: int = 0
    """Spacing of one source's connections at accept (ocserv spaces all connections)."""
    max_pre_auth_clients: int = 1024
    """``max-pre-auth-clients`` (ocgate): connections not yet in a tunnel, in all. 0: no cap."""
    max_pre_auth_per_source: int = 256
    """``max-pre-auth-per-source`` (ocgate): the same from one address (IPv6: /64). 0: no cap."""
    max_ban_score: int = 80
    """0 disables banning."""
    ban_reset_time: int = 1200
    ban_time: int = 300
    ban_points_wrong_password: int = 10
    ban_points_connection: int = 1
    ban_points_kkdcp: int = 1

    # Process (§4.10).
    pid_file: str | None = None
    socket_file: str = "/var/run/ocserv-socket"
    run_as_user: str | None = None
    run_as_group: str | None = None
    log_level: int = 2
    isolate_workers: bool = False
    """Workers install a seccomp allow-list (ocserv ``isolate-workers``)."""
    workers: int = 0
    """Worker processes (ocgate ``workers``); 0 = ``auto``, one per core."""
    session_store: str | None = field(default=None, repr=False)
    """``sqlite:///PATH`` of the durable session store (``None``: beside ``socket-file``), or
    the ``redis://``/``rediss://`` URL of a store shared by several gateways (it may hold a
    password: never in a repr)."""

    # Operations (§4.10, §5).
    use_occtl: bool = False
    occtl_socket_file: str = "/var/run/occtl.socket"
    connect_script: str | None = None
    disconnect_script: str | None = None
    host_update_script: str | None = None
    metrics_listen: str | None = None
    """``HOST:PORT`` of the Prometheus endpoint (an ocgate extension; off when unset)."""
    health_listen: str | None = None
    """``HOST:PORT`` of the balancer's ``GET /health`` alone (ocgate extension; off when unset)."""
    node_name: str = field(default_factory=default_node_name)
    """This gateway's name among several (ocgate ``node-name``; default: the host name)."""

    # Administrators' web console (ocgate extension; ocgate.console, docs/CONSOLE.md).
    admin_listen: str | None = None
    admin_passwd: str | None = None
    admin_otp: str | None = None
    admin_server_cert: str | None = None
    admin_server_key: str | None = None
    admin_token_file: str | None = None
    admin_audit_log: str | None = None

    # NVM collector (ocgate extension; checked across keys by ocgate.nvm._config.NvmSettings).
    nvm_listen: tuple[NvmListen, ...] = ()
    nvm_dtls_listen: tuple[NvmListen, ...] = ()
    nvm_dtls_cert: str | None = None
    nvm_dtls_key: str | None = None
    nvm_dtls_ca: str | None = None
    nvm_allow: tuple[IPNetwork, ...] = ()
    nvm_store: str = "sqlite:////var/lib/ocgate/nvm.sqlite"
    nvm_api_listen: str | None = None
    nvm_api_token_file: str | None = None
    nvm_retention_days: int = 30
    nvm_syslog: tuple[NvmSink, ...] = ()
    nvm_json_file: str | None = None
    nvm_json_http: str | None = None
    nvm_privacy: tuple[tuple[str, str], ...] = ()
    """``nvm-privacy-*`` lines as ``(key, value)``, in file order."""

    warnings: tuple[ConfigWarning, ...] = ()
    """Non-fatal findings: keys ocserv knows that ocgate does not implement yet, renamed keys."""

    # Virtual hosts (ocserv-compatibility §3).
    vhost_name: str | None = None
    """The ``[vhost:NAME]`` this configuration serves (canonical, lower case); ``None``: the
    default host (the top level of the file)."""
    vhosts: tuple[Config, ...] = ()
    """The default host's virtual hosts, in file order: each a whole ``Config`` that inherited
    every key its section does not set from the top level (ocserv 1.5), with ``vhost_name`` set
    and no ``vhosts`` of its own."""

    @property
    def vhost_label(self) -> str:
        """The name occtl and the scripts show (``VHOST``): the vhost's, or ``default``."""
        return self.vhost_name or "default"

    def vhost(self, server_name: str | bytes | None) -> Config:
        """The configuration for a TLS server name (SNI): the vhost of that name, compared
        without case and a trailing dot, else the default host (ocserv's rule for an unknown or
        missing name).
        """
        if server_name is None or not self.vhosts:
            return self
        if isinstance(server_name, bytes):
            server_name = server_name.decode("ascii", "replace")
        wanted = server_name.rstrip(".").lower()
        for vhost in self.vhosts:
            if vhost.vhost_name == wanted:
                return vhost
        return self

    def hosts(self) -> tuple[Config, ...]:
        """The default host, then its virtual hosts."""
        return (self, *self.vhosts)

    @property
    def passwd_file(self) -> str | None:
        """The ``passwd=`` file of the ``plain`` method, if any."""
        for method in (*self.auth, *self.enable_auth):
            if method.name == "plain":
                return method.params.get("passwd")
        return None

    @property
    def otp_file(self) -> str | None:
        """The ``otp=`` file of the ``plain`` method, if any."""
        for method in (*self.auth, *self.enable_auth):
            if method.name == "plain":
                return method.params.get("otp")
        return None
