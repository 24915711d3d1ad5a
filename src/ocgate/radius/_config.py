"""The radcli client config that ``radius[config=FILE]`` names, and the method's own options.

Theory of operation: radcli (``lib/config.c`` ``rc_read_config``) reads ``KEYWORD VALUE`` lines;
a line starting with ``#`` and an empty line are skipped, the keyword ends at the first blank
and the value is the rest of the line without surrounding blanks. ``authserver`` and
``acctserver`` take a list separated by commas or blanks and may be repeated; each entry is
``host[:port[:secret]]`` or ``[ipv6][:port[:secret]]``. A server without an inline secret takes
it from the ``servers`` file (lines ``host secret``; ``name1/name2`` pairs allowed).

Unlike radcli, ocgate resolves every secret while loading, so a missing one is a
:class:`~ocgate.errors.ConfigError` at startup and not a failed login later. Host names in the
servers file are matched by name (or by address when both sides are addresses), not by
resolving them. The ``dictionary`` is not read (see ``_dictionary.py``). Only the UDP transport
is implemented (``serv-type udp``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from ocgate.errors import ConfigError

__all__ = [
    "DEFAULT_ACCT_PORT",
    "DEFAULT_AUTH_PORT",
    "RadiusConfig",
    "RadiusServer",
    "load_radius_config",
    "parse_radcli_config",
    "parse_servers_file",
]

DEFAULT_AUTH_PORT = 1812
DEFAULT_ACCT_PORT = 1813
MAX_SERVERS = 8
"""radcli ``SERVER_MAX``."""

_SERVER_KEYS = frozenset({"authserver", "acctserver"})
_INT_KEYS = frozenset(
    {
        "radius_timeout",
        "radius_retries",
        "radius_deadtime",
        "radius_proto",
        "clientdebug",
        "login_tries",
        "login_timeout",
    }
)
_STR_KEYS = frozenset(
    {
        "config_file",
        "serv-type",
        "serv-auth-type",
        "tls-verify-hostname",
        "tls-ca-file",
        "tls-cert-file",
        "tls-key-file",
        "nas-identifier",
        "nas-ip",
        "servers",
        "dictionary",
        "default_realm",
        "bindaddr",
        "namespace",
        "login_radius",
        "seqfile",
        "mapfile",
        "auth_order",
        "nologin",
        "issue",
        "login_local",
    }
)
"""radcli ``lib/options.h`` keywords; the ones ocgate does not use are accepted and ignored."""

_METHOD_PARAMS = frozenset(
    {"config", "groupconfig", "nas-identifier", "group-separator", "override-interim-updates"}
)
_SEPARATORS = {"semicolon": ";", ";": ";", "comma": ",", ",": ","}


@dataclass(frozen=True, slots=True, kw_only=True)
class RadiusServer:
    """One RADIUS server.

    :param host: host name or address literal (IPv6 without brackets).
    :param port: UDP port.
    :param secret: the shared secret (never shown in ``repr``).
    """

    host: str
    port: int
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RadiusConfig:
    """Everything the RADIUS client needs: the radcli file plus the ``radius[...]`` options.

    :param source: the radcli config file it was read from.
    :param auth_servers: authentication servers, in failover order (at least one).
    :param acct_servers: accounting servers, in failover order (may be empty).
    :param timeout: seconds to wait for a reply to one transmission (``radius_timeout``).
    :param retries: transmissions per server before failing over (``radius_retries``).
    :param nas_identifier: NAS-Identifier (the method option, else radcli's ``nas-identifier``).
    :param nas_ip: NAS-IP-Address / NAS-IPv6-Address when the caller knows no local address.
    :param default_realm: appended as ``user@realm`` to names without ``@`` (ocserv does this).
    :param groupconfig: ``groupconfig=true``: groups come from Class (``OU=g1;g2``).
    :param group_separator: separator of the groups inside one Class value.
    :param override_interim_updates: ignore Acct-Interim-Interval from the server.
    """

    source: str
    auth_servers: tuple[RadiusServer, ...]
    acct_servers: tuple[RadiusServer, ...] = ()
    timeout: float = 10.0
    retries: int = 3
    nas_identifier: str | None = None
    nas_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    default_realm: str | None = None
    groupconfig: bool = False
    group_separator: str = ";"
    override_interim_updates: bool = False


@dataclass(frozen=True, slots=True)
class _ServerSpec:
    host: str
    port: int
    secret: bytes | None = field(repr=False)
    line: int


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=path) from None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def _parse_server_entry(entry: str, key: str) -> tuple[str, int, bytes | None]:
    default_port = DEFAULT_AUTH_PORT if key == "authserver" else DEFAULT_ACCT_PORT
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or not host:
            raise ValueError("unterminated [IPv6] address")
        if rest and not rest.startswith(":"):
            raise ValueError("':' expected after ']'")
        rest = rest[1:]
    else:
        host, _, rest = entry.partition(":")
    port_text, colon, secret_text = rest.partition(":")
    if not host:
        raise ValueError("empty host")
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad port {port_text!r}")
        port = int(port_text)
    secret = secret_text.encode() if colon and secret_text else None
    return host, port, secret


def _parse_servers(value: str, key: str, line: int) -> list[_ServerSpec]:
    specs = []
    for entry in value.replace(",", " ").split():
        try:
            host, port, secret = _parse_server_entry(entry, key)
        except ValueError as exc:
            raise ConfigError(
                f"{exc} in {entry!r}", line=line, key=key, expected="host[:port[:secret]]"
            ) from None
        specs.append(_ServerSpec(host, port, secret, line))
    return specs


def _parse_int(value: str, key: str, line: int) -> int:
    if not value.isdigit():
        raise ConfigError(f"not a number: {value!r}", line=line, key=key, expected="an integer")
    number = int(value)
    if key in ("radius_timeout", "radius_retries") and number <= 0:
        raise ConfigError("must be positive", line=line, key=key, expected="an integer > 0")
    return number


def parse_servers_file(text: str) -> dict[str, bytes]:
    """Parse a radcli ``servers`` file: ``host secret`` per line, ``#`` comments.

    :returns: secret by lower-cased host name; a ``name1/name2`` line gives both names.
    """
    secrets: dict[str, bytes] = {}
    for _, line in _lines(text):
        fields = line.split()
        if len(fields) < 2:
            continue  # radcli skips a line without a secret.
        for name in fields[0].split("/"):
            if name:
                secrets.setdefault(_host_key(name), fields[1].encode())
    return secrets


def _host_key(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host.lower()


def _resolve_secret(spec: _ServerSpec, key: str, secrets: Mapping[str, bytes] | None) -> bytes:
    if spec.secret is not None:
        return spec.secret
    if secrets is None:
        raise ConfigError(
            f"no secret for server {spec.host!r} and no 'servers' file",
            line=spec.line,
            key=key,
            expected="host:port:secret, or a 'servers' file line 'host secret'",
        )
    secret = secrets.get(_host_key(spec.host))
    if secret is None:
        raise ConfigError(
            f"server {spec.host!r} is not in the 'servers' file",
            line=spec.line,
            key=key,
            expected="a 'servers' file line 'host secret'",
        )
    return secret


@dataclass
class _Draft:
    servers: dict[str, list[_ServerSpec]] = field(
        default_factory=lambda: {"authserver": [], "acctserver": []}
    )
    ints: dict[str, int] = field(default_factory=dict)
    strings: dict[str, tuple[str, int]] = field(default_factory=dict)


def _read_lines(text: str) -> _Draft:
    draft = _Draft()
    for number, line in _lines(text):
        key, _, value = line.replace("\t", " ").partition(" ")
        value = value.strip()
        if key in _SERVER_KEYS:
            if not value:
                raise ConfigError("missing value", line=number, key=key, expected="a server list")
            draft.servers[key].extend(_parse_servers(value, key, number))
            if len(draft.servers[key]) > MAX_SERVERS:
                raise ConfigError(f"more than {MAX_SERVERS} servers", line=number, key=key)
        elif key in _INT_KEYS:
            draft.ints[key] = _parse_int(value, key, number)
        elif key in _STR_KEYS:
            draft.strings[key] = (value, number)
        else:
            raise ConfigError("unrecognized keyword", line=number, key=key)
    return draft


def _nas_ip(draft: _Draft) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "nas-ip" not in draft.strings:
        return None
    value, line = draft.strings["nas-ip"]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(
            f"not an IP address: {value!r}", line=line, key="nas-ip", expected="an IP address"
        ) from None


def _check_transport(draft: _Draft) -> None:
    for key in ("serv-type", "serv-auth-type"):
        if key in draft.strings:
            value, line = draft.strings[key]
            if value.lower() != "udp":
                raise ConfigError(
                    f"transport {value!r} is not supported", line=line, key=key, expected="udp"
                )


def parse_radcli_config(
    text: str, *, source: str, read_file: Callable[[str], str] = _read_text
) -> RadiusConfig:
    """Parse the text of a radcli ``radiusclient.conf``.

    :param text: the file's content.
    :param source: its path (for messages and to resolve a relative ``servers`` path).
    :param read_file: reads the ``servers`` file (injectable for tests).
    :raises ConfigError: with file and line.
    """
    try:
        draft = _read_lines(text)
        if not draft.servers["authserver"]:
            raise ConfigError("no authserver specified", key="authserver")
        _check_transport(draft)
        nas_ip = _nas_ip(draft)
    except ConfigError as exc:
        raise ConfigError(
            exc.message, file=source, line=exc.line, key=exc.key, expected=exc.expected
        ) from None
    secrets = None
    if "servers" in draft.strings:
        path = os.path.join(os.path.dirname(source), draft.strings["servers"][0])
        secrets = parse_servers_file(read_file(path))
    try:
        auth, acct = (
            tuple(
                RadiusServer(host=s.host, port=s.port, secret=_resolve_secret(s, key, secrets))
                for s in draft.servers[key]
            )
            for key in ("authserver", "acctserver")
        )
    except ConfigError as exc:
        raise ConfigError(
            exc.message, file=source, line=exc.line, key=exc.key, expected=exc.expected
        ) from None
    nas_identifier = draft.strings.get("nas-identifier", ("", 0))[0] or None
    default_realm = draft.strings.get("default_realm", ("", 0))[0] or None
    return RadiusConfig(
        source=source,
        auth_servers=auth,
        acct_servers=acct,
        timeout=float(draft.ints.get("radius_timeout", 10)),
        retries=draft.ints.get("radius_retries", 3),
        nas_identifier=nas_identifier,
        nas_ip=nas_ip,
        default_realm=default_realm,
    )


def _method_bool(params: Mapping[str, str], key: str) -> bool:
    return params.get(key, "false").lower() in ("true", "yes")


def load_radius_config(
    params: Mapping[str, str], *, read_file: Callable[[str], str] = _read_text
) -> RadiusConfig:
    """Load the config of a ``radius[...]`` auth or acct method.

    :param params: the bracket options (``AuthMethod.params``): ``config`` (required),
        ``groupconfig``, ``nas-identifier``, ``group-separator`` (``semicolon``/``comma``),
        ``override-interim-updates``.
    :param read_file: reads the radcli config and ``servers`` files (injectable for tests).
    :raises ConfigError: unknown option, unreadable file or invalid content.
    """
    unknown = sorted(set(params) - _METHOD_PARAMS)
    if unknown:
        raise ConfigError(
            f"radius: unknown option {unknown[0]!r}",
            expected=", ".join(sorted(_METHOD_PARAMS)),
        )
    path = params.get("config")
    if not path:
        raise ConfigError("radius: the 'config' option is missing", expected="radius[config=FILE]")
    separator = params.get("group-separator", "semicolon").lower()
    if separator not in _SEPARATORS:
        raise ConfigError(
            f"radius: bad group-separator {separator!r}", expected="semicolon or comma"
        )
    config = parse_radcli_config(read_file(path), source=path, read_file=read_file)
    return RadiusConfig(
        source=config.source,
        auth_servers=config.auth_servers,
        acct_servers=config.acct_servers,
        timeout=config.timeout,
        retries=config.retries,
        nas_identifier=params.get("nas-identifier") or config.nas_identifier,
        nas_ip=config.nas_ip,
        default_realm=config.default_realm,
        groupconfig=_method_bool(params, "groupconfig"),
        group_separator=_SEPARATORS[separator],
        override_interim_updates=_method_bool(params, "override-interim-updates"),
    )
