"""The ocserv.conf option table: every key ocserv 1.5 knows, as data.

Theory of operation: one :class:`OptionSpec` row per key. The loader looks a key up here, parses the
value with ``spec.parse`` and then acts on the row:

* ``status`` :attr:`Status.IMPLEMENTED` with a ``field``: the value lands in that
  :class:`~ocgate.config.Config` field (repeated lines are collected when ``multi``; otherwise the
  last line wins, as in ocserv); without a ``field``, a finisher in ``_finish.py`` combines it with
  other keys;
* :attr:`Status.REFUSED`: the key grants or restricts access in a way ocgate cannot honour; set to
  anything but its ``harmless`` value (``camouflage = false``) it is a ``ConfigError`` naming
  file:line and the reason, so an administrator never loses a protection silently;
* :attr:`Status.NO_OP`: the key only tunes a feature ocgate lacks or does differently; the value is
  still checked, then ignored with one warning per key (none at its ``harmless`` value);
* ``user_status``: the same three outcomes in per-user and per-group files
  (:mod:`ocgate.config._peruser`), where a refused key refuses that user's session; ``None`` for
  the keys ocserv does not read there;
* ``replaced_by``: an old name ocserv still accepts, warned about once;
* ``collector``: a key of the NVM collector (the ``nvm-*`` keys and ``metrics-listen``), the only
  keys ``ocgate nvm serve`` reads (:data:`COLLECTOR_KEYS`, :mod:`ocgate.config._collector`).

``docs/ocserv-keys.md`` is this table rendered (:mod:`ocgate.config._keydoc`); a unit test fails
when the two differ. Implementing a key later means editing its row (``field=...`` or
``implemented=True`` instead of ``refuse``/``ignore``), adding the field to ``_model.Config`` and
regenerating the document. Keys, kinds, scopes and reload behaviour follow ocserv 1.5
``src/config.c`` (``cfg_ini_handler``) and the ``[scope: …]`` notes of ``doc/sample.config``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from ocgate.config import _net
from ocgate.config._auth import parse_auth_method
from ocgate.config._policy import parse_iroute, parse_restrict_user_to_ports
from ocgate.config._profile import parse_profile_file
from ocgate.config._values import (
    Parser,
    parse_banner,
    parse_bool,
    parse_compression_priority,
    parse_device,
    parse_domain,
    parse_existing_file,
    parse_http_header,
    parse_listen,
    parse_net_priority,
    parse_node_name,
    parse_optional_uint,
    parse_path,
    parse_port,
    parse_realm,
    parse_rekey_method,
    parse_store_url,
    parse_strap,
    parse_string,
    parse_tls_priorities,
    parse_udp_port,
    parse_uint,
    parse_word,
    parse_workers,
)
from ocgate.nvm import _config as _nvm
from ocgate.nvm import _privacy as _nvm_privacy

__all__ = [
    "COLLECTOR_KEYS",
    "KNOWN_OCSERV_KEYS",
    "OPTIONS",
    "Kind",
    "OptionSpec",
    "Scope",
    "Status",
]


class Scope(enum.Enum):
    """Where a key may appear (the ``[scope: …]`` notes of ocserv ``doc/sample.config``).

    The loader enforces it: a :attr:`GLOBAL` key inside a ``[vhost:NAME]`` section is a
    ``ConfigError`` at its line (ocserv ≥ 1.4.2); every other key set there applies to that vhost,
    which inherits the rest from the top level (ocserv 1.5, :mod:`ocgate.config._load`).
    """

    GLOBAL = "global"
    """Top level only; a vhost has the top level's value."""
    VHOST = "vhost"
    """Top level or a ``[vhost:NAME]`` section (the vhost's own value)."""
    VHOST_USER = "vhost user"
    """Also in per-user / per-group files (``src/sup-config/file.c``)."""
    USER = "user"
    """Only in per-user / per-group files; ignored with a warning in ocserv.conf."""


class Kind(enum.Enum):
    """The form of a value; it picks the default parser."""

    BOOL = "boolean"
    INTEGER = "integer"
    STRING = "string"
    WORD = "word"
    PATH = "path"
    FILE = "existing file"
    PORT = "port"
    ADDRESS = "IP address"
    NETWORK = "IP network"
    PREFIX = "prefix length"
    ROUTE = "route"
    AUTH = "auth method"
    DEVICE = "device name"
    DOMAIN = "domain"
    TLS_PRIORITIES = "GnuTLS priority string"
    CHOICE = "choice"


_DEFAULT_PARSERS: Mapping[Kind, Parser] = {
    Kind.BOOL: parse_bool,
    Kind.INTEGER: parse_uint,
    Kind.STRING: parse_string,
    Kind.WORD: parse_word,
    Kind.PATH: parse_path,
    Kind.FILE: parse_existing_file,
    Kind.PORT: parse_port,
    Kind.ADDRESS: _net.parse_dns_server,
    Kind.ROUTE: _net.parse_route,
    Kind.AUTH: parse_auth_method,
    Kind.DEVICE: parse_device,
    Kind.DOMAIN: parse_domain,
    Kind.TLS_PRIORITIES: parse_tls_priorities,
}


class Status(enum.Enum):
    """What ocgate does with a key (the key table of ``docs/ocserv-keys.md``)."""

    IMPLEMENTED = "implemented"
    """ocgate acts on the key with ocserv's meaning."""
    REFUSED = "refused"
    """The key grants or restricts access in a way ocgate cannot honour: set to anything but its
    ``harmless`` value, it stops the start (or refuses the session, in a per-user file)."""
    NO_OP = "accepted as a no-op"
    """The key only tunes a feature ocgate lacks or does differently: it is accepted and ignored,
    with one warning unless it holds its ``harmless`` value."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionSpec:
    """One ocserv.conf key.

    :param name: the key as written in ocserv.conf.
    :param kind: the value form (documentation, and the default parser).
    :param parse: the value parser; raises ``ConfigError`` with ``message``/``expected``.
    :param scope: where ocserv allows the key.
    :param status: what ocgate does with the key in ocserv.conf.
    :param reason: why it is refused or ignored; for an implemented key, an optional note.
    :param user_status: what ocgate does with the key in a per-user or per-group file (``None``:
        ocserv does not read it there, so it is skipped with a warning).
    :param user_reason: as ``reason``, for per-user and per-group files.
    :param harmless: the value that asks for nothing ocgate lacks (``camouflage = false``): a
        refused or ignored key set to it is accepted without a word. ``None``: no such value.
    :param default: ocserv's built-in default (documentation; ``Config`` holds the real one).
    :param field: the ``Config`` field it sets, if it maps to one directly.
    :param multi: repeated lines add values instead of replacing.
    :param reloadable: re-read on SIGHUP (False above the "reloaded on SIGHUP" line of the sample).
    :param raw: the value keeps its quotes (``included-http-headers``).
    :param replaced_by: for an old name, the key that replaced it.
    :param collector: a key the standalone NVM collector reads (``ocgate nvm serve``).
    :param extension: an ocgate key that ocserv does not know.
    """

    name: str
    kind: Kind
    parse: Parser
    scope: Scope
    status: Status
    reason: str = ""
    user_status: Status | None = None
    user_reason: str = ""
    harmless: object = None
    default: object = None
    field: str | None = None
    multi: bool = False
    reloadable: bool = True
    raw: bool = False
    replaced_by: str | None = None
    collector: bool = False
    extension: bool = False

    @property
    def implemented(self) -> bool:
        """Whether ocgate acts on the key in ocserv.conf."""
        return self.status is Status.IMPLEMENTED

    def is_harmless(self, value: object) -> bool:
        """Whether ``value`` (parsed) asks for nothing ocgate lacks."""
        return self.harmless is not None and value == self.harmless


def _status(
    name: str, implemented: bool, refuse: str | None, ignore: str | None, note: str
) -> tuple[Status, str]:
    given = [s for s, on in ((Status.IMPLEMENTED, implemented), (Status.REFUSED, refuse),
                             (Status.NO_OP, ignore)) if on]  # fmt: skip
    if len(given) != 1:  # pragma: no cover - a programming error in the table below.
        raise AssertionError(f"option {name!r}: give exactly one of implemented/refuse/ignore")
    return given[0], refuse or ignore or note


def _o(
    name: str,
    kind: Kind,
    scope: Scope,
    *,
    parse: Parser | None = None,
    default: object = None,
    implemented: bool = False,
    field: str | None = None,
    refuse: str | None = None,
    ignore: str | None = None,
    note: str = "",
    user_applied: bool = False,
    user_refuse: str | None = None,
    user_ignore: str | None = None,
    harmless: object = None,
    multi: bool = False,
    reloadable: bool = True,
    raw: bool = False,
    replaced_by: str | None = None,
    collector: bool = False,
    extension: bool = False,
) -> OptionSpec:
    """A row: exactly one of ``implemented``/``field``, ``refuse`` or ``ignore`` (with the reason);
    for a key ocserv reads in per-user files, at most one of ``user_applied``, ``user_refuse`` or
    ``user_ignore``."""
    status, reason = _status(name, implemented or field is not None, refuse, ignore, note)
    user_status: Status | None = None
    user_reason = ""
    if user_applied or user_refuse or user_ignore:
        user_status, user_reason = _status(name, user_applied, user_refuse, user_ignore, "")
    return OptionSpec(
        name=name,
        kind=kind,
        parse=parse if parse is not None else _DEFAULT_PARSERS[kind],
        scope=scope,
        status=status,
        reason=reason,
        user_status=user_status,
        user_reason=user_reason,
        harmless=harmless,
        default=default,
        field=field,
        multi=multi,
        reloadable=reloadable,
        raw=raw,
        replaced_by=replaced_by,
        collector=collector,
        extension=extension,
    )


_G, _V, _VU, _U = Scope.GLOBAL, Scope.VHOST, Scope.VHOST_USER, Scope.USER


def _nvm_o(
    name: str, kind: Kind, *, parse: Parser | None = None, field: str, multi: bool = False
) -> OptionSpec:
    """An ``nvm-*`` collector key (ocgate extension): global, read once at start."""
    return _o(
        name,
        kind,
        Scope.GLOBAL,
        parse=parse,
        field=field,
        multi=multi,
        reloadable=False,
        collector=True,
        extension=True,
    )


_B, _I, _S, _W, _P = Kind.BOOL, Kind.INTEGER, Kind.STRING, Kind.WORD, Kind.PATH

_CONSOLE_KEYS: tuple[tuple[str, Kind, Parser | None, str], ...] = (
    ("admin-listen", _W, parse_listen, "HOST:PORT of the web console (off when unset)"),
    (
        "admin-passwd",
        _P,
        None,
        "the console's administrators, ocpasswd format; the group field is the role: admin or "
        "readonly",
    ),
    (
        "admin-otp",
        _P,
        None,
        "the administrators' TOTP entries (OTP users file); every administrator needs one",
    ),
    ("admin-server-cert", _P, None, "the console's certificate (default: server-cert)"),
    ("admin-server-key", _P, None, "the console's key (default: server-key)"),
    (
        "admin-token-file",
        _P,
        None,
        "API bearer tokens, one per line: TOKEN [admin|readonly] (default role: readonly)",
    ),
    ("admin-audit-log", _P, None, "the console's audit log, one JSON line per change"),
)

# Reasons shared by several rows.
_AUTH_NOTE = "methods ocgate lacks (pam, gssapi) are refused at start; oidc and saml: docs/SSO.md"
_PINS = "PINs unlock PKCS#11 or TPM keys; ocgate reads server-key from a PEM file only"
_COMPRESSION = (
    "oc-lz4 and lzs on CSTP and DTLS, deflate on CSTP, by compression-algo-priority. Off by "
    "default, and best left off: compressing before encrypting lets anyone who sees the encrypted "
    "packets learn about their content from their sizes (as the CRIME and BREACH attacks on TLS "
    "did), for instance whether a secret guessed by an attacker who can inject traffic matches"
)
_ROUTE_CMD = (
    "the supervisor routes each iroute through the client's device over netlink, as the default "
    "command does (ip route add NET dev DEV; the route goes with the device); no command is run"
)
_USER_POOL = (
    "in a per-user or per-group file: the session leases from a pool of that network (made on "
    "first use, leases kept across restarts), whose first address is the gateway's end of the "
    "tunnel, as ocserv; the network must be the vhost's own or apart from every other pool, "
    "else the session is refused"
)
_ONLY_PER_USER = "only valid in per-user and per-group config files"

_SPECS: tuple[OptionSpec, ...] = (
    # --- Read once at start (above the "reloaded on SIGHUP" line; ocserv perm_config). ---
    _o("auth", Kind.AUTH, _V, field="auth", multi=True, reloadable=False, note=_AUTH_NOTE),
    _o(
        "enable-auth",
        Kind.AUTH,
        _V,
        field="enable_auth",
        multi=True,
        reloadable=False,
        note=_AUTH_NOTE,
    ),
    _o("acct", Kind.AUTH, _V, field="acct", reloadable=False),
    _o("listen-host", _W, _G, field="listen_host", reloadable=False),
    _o("udp-listen-host", _W, _G, field="udp_listen_host", reloadable=False),
    _o(
        "listen-netns",
        _W,
        _G,
        reloadable=False,
        refuse="ocgate listens in the namespace it was started in: the VPN would be reachable "
        "from networks the administrator kept it away from",
    ),
    _o("tcp-port", Kind.PORT, _G, field="tcp_port", default=443, reloadable=False),
    _o("udp-port", Kind.PORT, _G, parse=parse_udp_port, field="udp_port", reloadable=False),
    _o("run-as-user", _W, _G, field="run_as_user", reloadable=False),
    _o("run-as-group", _W, _G, field="run_as_group", reloadable=False),
    _o("server-cert", Kind.FILE, _V, field="server_cert", multi=True, reloadable=False),
    _o("server-key", Kind.FILE, _V, field="server_key", multi=True, reloadable=False),
    _o("ca-cert", Kind.FILE, _V, field="ca_cert", reloadable=False),
    _o(
        "dh-params",
        _P,
        _V,
        reloadable=False,
        ignore="DHE uses ocgate's built-in RFC 7919 group (ECDHE is preferred)",
    ),
    _o("pin-file", _P, _V, reloadable=False, ignore=_PINS),
    _o("srk-pin-file", _P, _V, reloadable=False, ignore=_PINS),
    _o("key-pin", _S, _V, reloadable=False, ignore=_PINS),
    _o("srk-pin", _S, _V, reloadable=False, ignore=_PINS),
    _o("socket-file", _S, _G, field="socket_file", reloadable=False),
    _o(
        "occtl-socket-file",
        _P,
        _G,
        field="occtl_socket_file",
        default="/var/run/occtl.socket",
        reloadable=False,
    ),
    _o(
        "chroot-dir",
        _P,
        _G,
        reloadable=False,
        ignore="workers are confined by run-as-user, no capabilities, no_new_privs and "
        "(isolate-workers) a seccomp allow-list rather than a chroot",
    ),
    _o(
        "server-stats-reset-time",
        _I,
        _G,
        default=604800,
        reloadable=False,
        ignore="occtl show status counts from the start of the gateway",
    ),
    _o("pid-file", _P, _G, field="pid_file", reloadable=False),
    _o(
        "sec-mod-scale",
        _I,
        _G,
        reloadable=False,
        ignore="one authentication service process serves every worker",
    ),
    _o("log-level", _I, _G, field="log_level", default=2, reloadable=False),
    _o(
        "debug-no-secmod-stats",
        _B,
        _G,
        default=False,
        harmless=False,
        reloadable=False,
        ignore="the authentication service logs no periodic statistics",
    ),
    _o("listen-clear-file", _P, _G, reloadable=False, refuse="ocserv removed it in 1.1.2"),
    # --- Reloaded on SIGHUP. ---
    _o(
        "listen-host-is-dyndns",
        _B,
        _V,
        default=False,
        harmless=False,
        ignore="X-CSTP-DynDNS is not sent to clients",
    ),
    _o(
        "listen-proxy-proto",
        _B,
        _G,
        field="listen_proxy_proto",
        default=False,
        note="every TCP connection must start with a PROXY protocol v1 or v2 header (HAProxy "
        "send-proxy / send-proxy-v2), read before TLS; its client address is the connection's "
        "for the accept gate, bans, logs, scripts, occtl and RADIUS. A connection without one "
        "is closed, and so is a LOCAL (health check) one, as in ocserv; DTLS is unchanged",
    ),
    _o("append-routes", _B, _V, field="append_routes", default=False),
    _o(
        "kkdcp",
        _S,
        _V,
        multi=True,
        ignore="no Kerberos KDC proxy is served (gssapi authentication is refused)",
    ),
    _o("tunnel-all-dns", _B, _VU, field="tunnel_all_dns", default=False, user_applied=True),
    _o("keepalive", _I, _VU, field="keepalive", default=32400, user_applied=True),
    _o("switch-to-tcp-timeout", _I, _V, field="switch_to_tcp_timeout", default=25),
    _o("dpd", _I, _VU, field="dpd", default=90, user_applied=True),
    _o("mobile-dpd", _I, _VU, field="mobile_dpd", default=1800, user_applied=True),
    _o("rate-limit-ms", _I, _G, field="rate_limit_ms", default=0),
    _o(
        "server-drain-ms",
        _I,
        _G,
        default=0,
        harmless=0,
        ignore="on SIGTERM clients are told at once; there is no drain period",
    ),
    _o("ocsp-response", _P, _V, ignore="no OCSP response is stapled"),
    _o(
        "user-profile",
        _P,
        _VU,
        parse=parse_profile_file,
        field="user_profile",
        user_applied=True,
        note="read (and its SHA-1 computed) at load, served as /profiles/NAME and "
        "/CACHE/stc/profiles/NAME to a valid session cookie, listed in the login's manifest; "
        "see docs/profiles.md",
    ),
    _o(
        "client-bypass-protocol",
        _B,
        _VU,
        field="client_bypass_protocol",
        default=False,
        user_applied=True,
        note="X-CSTP-Client-Bypass-Protocol: true (false by default): AnyConnect sends traffic of "
        "a family without an address outside the tunnel",
    ),
    _o("default-domain", _S, _V, field="default_domain"),
    _o("crl", Kind.FILE, _V, field="crl"),
    _o("cert-user-oid", _W, _V, field="cert_user_oid"),
    _o("cert-group-oid", _W, _V, field="cert_group_oid"),
    _o("connect-script", _P, _G, field="connect_script"),
    _o("host-update-script", _P, _G, field="host_update_script"),
    _o("disconnect-script", _P, _G, field="disconnect_script"),
    _o("session-control", _S, _V, ignore="deprecated by ocserv"),
    _o("banner", _S, _V, parse=parse_banner, field="banner"),
    _o("pre-login-banner", _S, _V, field="pre_login_banner"),
    _o("dtls-legacy", _B, _V, default=True, implemented=True),  # _finish_compat
    _o("cisco-client-compat", _B, _V, field="cisco_client_compat", default=False),
    _o("always-require-cert", _B, _V, implemented=True, replaced_by="cisco-client-compat"),
    _o(
        "cisco-svc-client-compat",
        _B,
        _V,
        default=False,
        implemented=True,  # _finish_compat
        note="the /svc login of Cisco IP phones; implies dtls-legacy, needs udp-port 443",
    ),
    _o("dtls-psk", _B, _G, field="dtls_psk", default=True),
    _o("match-tls-dtls-ciphers", _B, _V, field="match_tls_dtls_ciphers", default=False),
    _o("compression", _B, _V, field="compression", default=False, note=_COMPRESSION),
    _o(
        "compression-algo-priority",
        _S,
        _G,
        parse=parse_compression_priority,
        field="compression_algo_priority",
        default="lz4:lzs",
        note="ocgate also accepts deflate (CSTP only; Cisco clients offer it, openconnect with "
        "--compression=all)",
    ),
    _o(
        "no-compress-limit",
        _I,
        _V,
        field="no_compress_limit",
        default=256,
        note="packets of at most this size go uncompressed; values below 64 count as 64 (ocserv)",
    ),
    _o("use-seccomp", _B, _G, field="isolate_workers", replaced_by="isolate-workers"),
    _o("isolate-workers", _B, _G, field="isolate_workers", default=False),
    _o(
        "limit-worker-memory",
        _B,
        _G,
        default=True,
        harmless=False,
        ignore="worker memory is not capped with setrlimit",
    ),
    _o("predictable-ips", _B, _V, field="predictable_ips", default=True),
    _o(
        "use-utmp",
        _B,
        _G,
        default=True,
        harmless=False,
        ignore="no utmp or wtmp records are written",
    ),
    _o("use-dbus", _B, _G, field="use_occtl", replaced_by="use-occtl"),
    _o("use-occtl", _B, _G, field="use_occtl", default=False),
    # --- ocgate extensions (not ocserv keys). ---
    _o(
        "metrics-listen",
        _W,
        _G,
        parse=parse_listen,
        field="metrics_listen",
        reloadable=False,
        collector=True,
        extension=True,
    ),
    _o(
        "health-listen",
        _W,
        _G,
        parse=parse_listen,
        field="health_listen",
        reloadable=False,
        extension=True,
        note="HTTP GET /health for a balancer: 200 ready, 503 draining (also served on "
        "metrics-listen); no metrics here",
    ),
    _o(
        "node-name",
        _W,
        _G,
        parse=parse_node_name,
        field="node_name",
        default="the host name",
        reloadable=False,
        extension=True,
        note="this gateway among several behind a balancer: the node label of every metric, "
        "Node in ctl show status and show users",
    ),
    _o("workers", _W, _G, parse=parse_workers, field="workers", reloadable=False, extension=True),
    _o(
        "session-store",
        _S,
        _G,
        parse=parse_store_url,
        field="session_store",
        reloadable=False,
        extension=True,
    ),
    _o(
        "service-profile-vpn-mgmt",
        _P,
        _V,
        parse=parse_profile_file,
        field="mgmt_tunnel_profile",
        extension=True,
        note="a management-tunnel profile (ocgate profile mgmt), listed in the manifest as "
        "service-type vpn-mgmt and served like user-profile",
    ),
    _o(
        "service-profile-nvm",
        _P,
        _V,
        parse=parse_profile_file,
        field="nvm_profile",
        extension=True,
        note="an NVM service profile (ocgate profile nvm), listed in the manifest as "
        "service-type nvm and served like user-profile",
    ),
    _o(
        "strap",
        Kind.CHOICE,
        _V,
        parse=parse_strap,
        field="strap",
        default="off",
        extension=True,
        note="off (as ocserv), optional or required: the CONNECT's X-AnyConnect-STRAP-Verify "
        "signature, made with the key the login presented, must verify (required: must be there)",
    ),
    # Administrators' web console (ocgate.console, docs/CONSOLE.md; global, read at start).
    *(
        _o(
            key,
            kind,
            _G,
            parse=parse,
            field=key.replace("-", "_"),
            reloadable=False,
            extension=True,
            note=note,
        )
        for key, kind, parse, note in _CONSOLE_KEYS
    ),
    _o("max-pre-auth-clients", _I, _G, field="max_pre_auth_clients", default=1024, extension=True),
    _o(
        "max-pre-auth-per-source",
        _I,
        _G,
        field="max_pre_auth_per_source",
        default=256,
        extension=True,
    ),
    # NVM collector (ocgate.nvm._config; all global and read once at start).
    _nvm_o("nvm-listen", _S, parse=_nvm.parse_listen_url, field="nvm_listen", multi=True),
    _nvm_o(
        "nvm-dtls-listen", _S, parse=_nvm.parse_dtls_listen, field="nvm_dtls_listen", multi=True
    ),
    _nvm_o("nvm-dtls-cert", Kind.FILE, field="nvm_dtls_cert"),
    _nvm_o("nvm-dtls-key", Kind.FILE, field="nvm_dtls_key"),
    _nvm_o("nvm-dtls-ca", Kind.FILE, field="nvm_dtls_ca"),
    _nvm_o("nvm-allow", Kind.NETWORK, parse=_nvm.parse_allow, field="nvm_allow", multi=True),
    _nvm_o("nvm-store", _S, parse=_nvm.parse_store_url, field="nvm_store"),
    _nvm_o("nvm-api-listen", _W, parse=parse_listen, field="nvm_api_listen"),
    _nvm_o("nvm-api-token-file", _P, field="nvm_api_token_file"),
    _nvm_o("nvm-retention-days", _I, parse=_nvm.parse_retention_days, field="nvm_retention_days"),
    _nvm_o("nvm-syslog", _S, parse=_nvm.parse_syslog_url, field="nvm_syslog", multi=True),
    _nvm_o("nvm-json-file", _P, field="nvm_json_file"),
    _nvm_o("nvm-json-http", _S, parse=_nvm.parse_http_url, field="nvm_json_http"),
    *(
        _nvm_o(key, _S, parse=_nvm.privacy_parser(key), field="nvm_privacy", multi=True)
        for key in sorted(_nvm_privacy.PRIVACY_KEYS)
    ),
    _o("try-mtu-discovery", _B, _G, field="try_mtu_discovery", default=False),
    _o(
        "ping-leases",
        _B,
        _G,
        field="ping_leases",
        default=False,
        note="the supervisor (root) runs ping(8); an address that answers is skipped",
    ),
    _o(
        "restrict-user-to-routes",
        _B,
        _VU,
        field="restrict_user_to_routes",
        default=False,
        user_applied=True,
        note="enforced by ocgate's own packet filter (ocgate.ipfilter), not ocserv-fw",
    ),
    _o(
        "restrict-user-to-ports",
        _S,
        _VU,
        parse=parse_restrict_user_to_ports,
        field="restrict_user_to_ports",
        user_applied=True,
        note="ocgate's packet filter; LOW-HIGH port ranges are an ocgate extension",
    ),
    _o("tls-priorities", Kind.TLS_PRIORITIES, _V, field="tls_priorities"),
    _o("mtu", _I, _VU, parse=parse_optional_uint, field="mtu", user_applied=True),
    _o(
        "net-priority",
        _I,
        _VU,
        parse=parse_net_priority,
        ignore="packets keep the default socket priority and TOS",
        user_ignore="packets keep the default socket priority and TOS",
    ),
    _o("output-buffer", _I, _V, ignore="the kernel's default socket send buffer is used"),
    _o(
        "rx-data-per-sec",
        _I,
        _VU,
        field="rx_data_per_sec",
        default=0,
        user_applied=True,
        note="bytes/s from each client; packets over the rate are dropped (token bucket)",
    ),
    _o(
        "tx-data-per-sec",
        _I,
        _VU,
        field="tx_data_per_sec",
        default=0,
        user_applied=True,
        note="bytes/s to each client; packets over the rate are dropped (token bucket)",
    ),
    _o(
        "deny-roaming",
        _B,
        _VU,
        field="deny_roaming",
        default=False,
        user_applied=True,
        note="a cookie is refused at CONNECT from another address than the login's",
    ),
    _o("stats-report-time", _I, _VU, field="stats_report_time", user_applied=True),
    _o(
        "rekey-time",
        _I,
        _V,
        field="rekey_time",
        default=172800,
        note=(
            "sent as X-CSTP-Rekey-Time (±29 s above 30 s, as ocserv) and X-DTLS-Rekey-Time "
            "(10 s later); 0 sends no rekey headers (never the method none, which Cisco Secure "
            "Client rejects); a TLS renegotiation sooner than half of it after the previous one "
            "closes the connection (as ocserv), a DTLS one ends DTLS only (ocserv ends the session)"
        ),
    ),
    _o(
        "rekey-method",
        Kind.CHOICE,
        _V,
        parse=parse_rekey_method,
        field="rekey_method",
        default="ssl",
        note=(
            "ssl: TLS 1.2 clients that offer secure renegotiation renegotiate in place (others "
            "are told new-tunnel), TLS 1.3 clients send KeyUpdate and get ours back, DTLS "
            "rehandshakes in the established session (also in legacy mode, where ocserv 1.1.6 "
            "drops the session); new-tunnel: the client reconnects with its cookie"
        ),
    ),
    _o("cookie-timeout", _I, _V, field="cookie_timeout", default=300),
    _o(
        "persistent-cookies",
        _B,
        _V,
        default=False,
        harmless=False,
        ignore="a logout always ends the session and its cookie (stricter than asked)",
    ),
    _o(
        "session-timeout",
        _I,
        _VU,
        parse=parse_optional_uint,
        field="session_timeout",
        user_applied=True,
    ),
    _o("auth-timeout", _I, _G, field="auth_timeout", default=240),
    _o("idle-timeout", _I, _VU, parse=parse_optional_uint, field="idle_timeout", user_applied=True),
    _o(
        "mobile-idle-timeout",
        _I,
        _VU,
        parse=parse_optional_uint,
        field="mobile_idle_timeout",
        user_applied=True,
    ),
    _o("max-clients", _I, _G, field="max_clients", default=0),
    _o("min-reauth-time", _I, _G, field="ban_time", replaced_by="ban-time"),
    _o("ban-time", _I, _G, field="ban_time", default=300),
    _o("ban-reset-time", _I, _G, field="ban_reset_time", default=1200),
    _o("max-ban-score", _I, _G, field="max_ban_score", default=80),
    _o("ban-points-wrong-password", _I, _G, field="ban_points_wrong_password", default=10),
    _o("ban-points-connection", _I, _G, field="ban_points_connection", default=1),
    _o("ban-points-kkdcp", _I, _G, field="ban_points_kkdcp", default=1),
    _o("max-same-clients", _I, _VU, field="max_same_clients", default=0, user_applied=True),
    _o("device", Kind.DEVICE, _G, field="device", default="vpns"),
    _o("cgroup", _S, _VU, ignore="ocserv removed it in 1.5.0"),
    _o("proxy-url", _S, _V, ignore="X-CSTP-MSIE-Proxy-Pac-URL is not sent to clients"),
    _o(
        "ipv4-network",
        Kind.NETWORK,
        _VU,
        parse=_net.parse_ipv4_network,
        implemented=True,
        note=_USER_POOL,
        user_applied=True,
    ),
    _o(
        "ipv4-netmask",
        Kind.NETWORK,
        _VU,
        parse=_net.parse_ipv4_netmask,
        implemented=True,
        note=_USER_POOL,
        user_applied=True,
    ),
    _o(
        "ipv6-network",
        Kind.NETWORK,
        _VU,
        parse=_net.parse_ipv6_network,
        implemented=True,
        note=_USER_POOL,
        user_applied=True,
    ),
    _o("ipv6-prefix", Kind.PREFIX, _V, parse=_net.parse_ipv6_prefix, implemented=True),
    _o(
        "ipv6-subnet-prefix",
        Kind.PREFIX,
        _VU,
        parse=_net.parse_ipv6_subnet_prefix,
        implemented=True,
        default=128,
        note=_USER_POOL,
        user_applied=True,
    ),
    _o("custom-header", _S, _V, multi=True, ignore="custom headers are not sent to clients"),
    _o("split-dns", Kind.DOMAIN, _VU, field="split_dns", multi=True, user_applied=True),
    _o(
        "included-http-headers",
        _S,
        _V,
        parse=parse_http_header,
        field="included_http_headers",
        multi=True,
        raw=True,
        note="added to every HTTP response (ocserv add_owasp_headers)",
    ),
    _o("route", Kind.ROUTE, _VU, implemented=True, multi=True, user_applied=True),
    _o(
        "no-route",
        Kind.ROUTE,
        _VU,
        parse=_net.parse_no_route,
        implemented=True,
        multi=True,
        user_applied=True,
    ),
    _o("default-select-group", _S, _V, field="default_select_group"),
    _o(
        "select-group-by-url",
        _B,
        _V,
        default=False,
        harmless=False,
        ignore="the group is chosen in the login form (membership is checked all the same)",
    ),
    _o("auto-select-group", _B, _V, field="auto_select_group", default=False),
    _o("select-group", _S, _V, field="select_group", multi=True),
    _o("dns", Kind.ADDRESS, _VU, field="dns", multi=True, user_applied=True),
    _o("ipv4-dns", Kind.ADDRESS, _VU, field="dns", multi=True, user_applied=True),
    _o("ipv6-dns", Kind.ADDRESS, _VU, field="dns", multi=True, user_applied=True),
    _o("nbns", Kind.ADDRESS, _VU, field="nbns", multi=True, user_applied=True),
    _o("ipv4-nbns", Kind.ADDRESS, _VU, field="nbns", multi=True, user_applied=True),
    _o("ipv6-nbns", Kind.ADDRESS, _VU, field="nbns", multi=True, user_applied=True),
    _o("route-add-cmd", _S, _G, ignore=_ROUTE_CMD),
    _o("route-del-cmd", _S, _G, ignore=_ROUTE_CMD),
    _o("config-per-user", _P, _V, field="config_per_user"),
    _o("config-per-group", _P, _V, field="config_per_group"),
    _o(
        "expose-iroutes",
        _B,
        _V,
        default=False,
        harmless=False,
        ignore="other users' iroutes are not sent to clients as routes",
    ),
    _o("default-user-config", _P, _V, field="default_user_config"),
    _o("default-group-config", _P, _V, field="default_group_config"),
    _o(
        "camouflage",
        _B,
        _V,
        default=False,
        field="camouflage",
        note="without ?SECRET in the URL (or a webvpn cookie) the answer is 401 or 404",
    ),
    _o("camouflage_secret", _S, _V, field="camouflage_secret"),
    _o("camouflage_realm", _S, _V, parse=parse_realm, field="camouflage_realm"),
    # Listed by ocserv-compatibility.md §4.7/§4.10 (accepted by ocserv, internal housekeeping).
    _o("sec-mod-db-cleanup-time", _I, _G, ignore="expired sessions are removed every 5 s"),
    _o(
        "syslog-facility",
        _W,
        _G,
        default="daemon",
        harmless="daemon",
        ignore="syslog lines use the daemon facility",
    ),
    # Per-user / per-group only (src/sup-config/file.c); ignored in ocserv.conf, as ocserv does.
    # iroute per user: packets from these networks are admitted from the client (the source
    # check of ocgate.ipfilter), and the supervisor routes them through the client's TUN device
    # while the tunnel is up (ocgate.tun._route).
    _o(
        "iroute",
        Kind.ROUTE,
        _U,
        parse=parse_iroute,
        multi=True,
        ignore=_ONLY_PER_USER,
        user_applied=True,
    ),
    _o("explicit-ipv4", Kind.ADDRESS, _U, ignore=_ONLY_PER_USER, user_applied=True),
    _o("explicit-ipv6", Kind.ADDRESS, _U, ignore=_ONLY_PER_USER, user_applied=True),
    _o("hostname", _W, _U, ignore=_ONLY_PER_USER, user_applied=True),
    _o(
        "no-udp",
        _B,
        _VU,
        field="no_udp",
        default=False,
        user_applied=True,
        note="no X-DTLS-* headers and no DTLS for the session (also per vhost)",
    ),
)


def _index(specs: tuple[OptionSpec, ...]) -> Mapping[str, OptionSpec]:
    table: dict[str, OptionSpec] = {}
    for spec in specs:
        if spec.name in table:  # pragma: no cover - a programming error in the table above.
            raise AssertionError(f"duplicate option {spec.name!r}")
        table[spec.name] = spec
    return table


OPTIONS: Mapping[str, OptionSpec] = _index(_SPECS)
"""Every ocserv.conf key, by name."""

KNOWN_OCSERV_KEYS: frozenset[str] = frozenset(OPTIONS)
"""The names of every key ocserv 1.5 accepts in ocserv.conf or per-user/group files."""

COLLECTOR_KEYS: frozenset[str] = frozenset(name for name, spec in OPTIONS.items() if spec.collector)
"""The keys of the NVM collector: ``nvm-*`` and ``metrics-listen``."""
