"""Per-user and per-group configuration files (``config-per-user``, ``config-per-group``,
``default-user-config``, ``default-group-config``; ocserv ``src/sup-config/file.c``).

Theory of operation:

* A file has ocserv.conf syntax. Only the keys of :data:`PER_USER_KEYS` are allowed there (the
  list of ocserv-compatibility §4.5); other keys are logged and skipped, as ocserv does. Values are
  parsed with the same parsers as ocserv.conf, so a bad value is a :class:`ConfigError` naming the
  file and the line, and the caller refuses that user's session. The option row's ``user_status``
  decides the rest: applied, ignored with a warning, or (a key that grants or restricts access and
  that ocgate cannot honour per user) a ``ConfigError`` as well.
* The file is named after the user or the group. The name must be a single, safe path component
  (:func:`check_name_component`): ocserv 1.5.1 fixed a path traversal there. The file is opened
  relative to its directory with ``O_NOFOLLOW``, so a symbolic link cannot lead elsewhere.
* :func:`load_session_layers` returns the group layer first, then the user layer; a directory
  without a matching file falls back to ``default-group-config`` / ``default-user-config``; a
  configured default file that is missing or broken refuses the session (ocserv 1.5.1).
* :func:`apply_layers` merges the layers as ocserv does (multi-value lines of the group and the
  user file add up, a single value of the user file wins) and applies the result to the global
  :class:`Config` with :func:`dataclasses.replace`: each value **replaces** the global one, except
  routes and no-routes with ``append-routes = true``, which are followed by the global ones.
* Address pools (``ipv4-network``/``ipv4-netmask``, ``ipv6-network``/``ipv6-subnet-prefix``):
  the session's network replaces the host's, and sec-mod leases from a pool of that network
  (ocserv ``src/ip-lease.c``: the user's network, its first address the gateway's end). The
  network is checked here, naming the file and the line: a prefix (CIDR or ``ipv4-netmask``),
  room for a client, and no partial overlap with the host's own pool (the same network shares
  that pool; an overlapping one could lease an address twice). The same network with another
  ``ipv6-subnet-prefix`` than the host's pool is refused for the same reason.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from ocgate.config._lexer import Assignment, tokenize
from ocgate.config._load import refusal
from ocgate.config._model import Config, ConfigWarning, IPNetwork
from ocgate.config._net import AddressWithPrefix, RouteValue
from ocgate.config._options import OPTIONS, OptionSpec, Status
from ocgate.config._values import ParseContext
from ocgate.errors import ConfigError

__all__ = [
    "MAX_USER_CONFIG_BYTES",
    "PER_USER_KEYS",
    "UserConfig",
    "apply_layers",
    "check_name_component",
    "load_session_layers",
    "load_user_config_file",
    "parse_user_config",
]

MAX_USER_CONFIG_BYTES = 64 * 1024
"""A per-user file larger than this is refused (they are a few lines long)."""

PER_USER_KEYS = frozenset(name for name, spec in OPTIONS.items() if spec.user_status is not None)
"""Keys ocserv accepts in per-user / per-group files (``src/sup-config/file.c``): the option rows
with a ``user_status``."""

# Keys ocgate applies, by the Config field they set (routes and DNS are handled apart).
_SCALAR_FIELDS: Mapping[str, str] = {
    "tunnel-all-dns": "tunnel_all_dns",
    "stats-report-time": "stats_report_time",
    "session-timeout": "session_timeout",
    "mtu": "mtu",
    "dpd": "dpd",
    "mobile-dpd": "mobile_dpd",
    "idle-timeout": "idle_timeout",
    "mobile-idle-timeout": "mobile_idle_timeout",
    "keepalive": "keepalive",
    "max-same-clients": "max_same_clients",
    "no-udp": "no_udp",
    "deny-roaming": "deny_roaming",
    "rx-data-per-sec": "rx_data_per_sec",
    "tx-data-per-sec": "tx_data_per_sec",
    "restrict-user-to-routes": "restrict_user_to_routes",
    "restrict-user-to-ports": "restrict_user_to_ports",
    "client-bypass-protocol": "client_bypass_protocol",
    "user-profile": "user_profile",
}
_LIST_FIELDS: Mapping[str, str] = {
    "dns": "dns",
    "ipv4-dns": "dns",
    "ipv6-dns": "dns",
    "nbns": "nbns",
    "ipv4-nbns": "nbns",
    "ipv6-nbns": "nbns",
    "split-dns": "split_dns",
}
_LIST_TARGETS = frozenset(_LIST_FIELDS.values())
_ROUTE_KEYS = frozenset({"route", "no-route"})
_OWN_KEYS = frozenset({"explicit-ipv4", "explicit-ipv6", "hostname"})
_POOL_KEYS = frozenset({"ipv4-network", "ipv4-netmask", "ipv6-network", "ipv6-subnet-prefix"})
_FORBIDDEN_NAMES = frozenset({"", ".", ".."})


def check_name_component(name: str, what: str = "name") -> None:
    """Refuse a user or group name that is not one safe path component.

    :raises ConfigError: the name is empty, ``.``, ``..``, or contains ``/`` or a NUL.
    """
    if name in _FORBIDDEN_NAMES or "/" in name or "\0" in name:
        raise ConfigError(
            f"{what} {name!r} is not a single path component",
            expected="a name without '/', not '.' or '..'",
        )


def _empty() -> Mapping[str, object]:
    return MappingProxyType({})


def _no_pool() -> Mapping[str, tuple[int, object]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class UserConfig:
    """One parsed per-user or per-group file.

    :param source: the file it was read from.
    :param values: ``Config`` field → value, for the keys the file sets.
    :param routes: ``route`` lines (``None`` when the file has none); a default route is
        ``RouteValue(None)``.
    :param no_routes: ``no-route`` lines (``None`` when the file has none).
    :param explicit_ipv4: ``explicit-ipv4``: the address this user always gets.
    :param explicit_ipv6: ``explicit-ipv6``.
    :param hostname: ``hostname``.
    :param iroutes: ``iroute`` lines: networks behind the client (valid tunnel sources).
    :param pool: the address-pool keys the file sets (``ipv4-network``, ``ipv4-netmask``,
        ``ipv6-network``, ``ipv6-subnet-prefix``): key → (line, parsed value).
    :param warnings: skipped keys, for the log.
    """

    source: str
    values: Mapping[str, object] = field(default_factory=_empty)
    routes: tuple[RouteValue, ...] | None = None
    no_routes: tuple[RouteValue, ...] | None = None
    explicit_ipv4: ipaddress.IPv4Address | None = None
    explicit_ipv6: ipaddress.IPv6Address | None = None
    hostname: str | None = None
    iroutes: tuple[IPNetwork, ...] = ()
    pool: Mapping[str, tuple[int, object]] = field(default_factory=_no_pool)
    warnings: tuple[ConfigWarning, ...] = ()


def _located(exc: ConfigError, source: str, token: Assignment) -> ConfigError:
    return ConfigError(
        exc.message, file=source, line=token.line, key=token.key, expected=exc.expected
    )


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[str, object] = {}
        self.lists: dict[str, list[object]] = {}
        self.routes: dict[str, list[RouteValue]] = {}
        self.own: dict[str, object] = {}
        self.iroutes: list[IPNetwork] = []
        self.pool: dict[str, tuple[int, object]] = {}
        self.warnings: list[ConfigWarning] = []

    def warn(self, token: Assignment, message: str) -> None:
        self.warnings.append(
            ConfigWarning(file=self.source, line=token.line, key=token.key, message=message)
        )

    def add(self, token: Assignment, value: object) -> None:
        key = token.key
        if key in _SCALAR_FIELDS:
            self.values[_SCALAR_FIELDS[key]] = value
        elif key in _LIST_FIELDS:
            self.lists.setdefault(_LIST_FIELDS[key], []).append(value)
        elif key in _ROUTE_KEYS:
            assert isinstance(value, RouteValue)
            self.routes.setdefault(key, []).append(value)
        elif key in _OWN_KEYS:
            self.own[key] = value
        elif key in _POOL_KEYS:
            if key == "ipv6-subnet-prefix" and not value:
                return  # 0: unset, as in ocserv.conf.
            self.pool[key] = (token.line, value)
        elif key == "iroute":
            assert isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network)
            if value not in self.iroutes:
                self.iroutes.append(value)
        else:  # A no-op here (a refused key never gets this far: _check_refused).
            spec = OPTIONS[key]
            if not spec.is_harmless(value):
                self.warn(token, f"ignored by ocgate: {spec.user_reason}")

    def build(self) -> UserConfig:
        values = dict(self.values)
        for name, items in self.lists.items():
            values[name] = tuple(dict.fromkeys(items))
        explicit4 = self.own.get("explicit-ipv4")
        explicit6 = self.own.get("explicit-ipv6")
        hostname = self.own.get("hostname")
        routes = self.routes.get("route")
        no_routes = self.routes.get("no-route")
        return UserConfig(
            source=self.source,
            values=MappingProxyType(values),
            routes=None if routes is None else tuple(routes),
            no_routes=None if no_routes is None else tuple(no_routes),
            explicit_ipv4=explicit4 if isinstance(explicit4, ipaddress.IPv4Address) else None,
            explicit_ipv6=explicit6 if isinstance(explicit6, ipaddress.IPv6Address) else None,
            hostname=hostname if isinstance(hostname, str) else None,
            iroutes=tuple(self.iroutes),
            pool=MappingProxyType(dict(self.pool)),
            warnings=tuple(self.warnings),
        )


def parse_user_config(text: str, *, source: str, base_dir: str = "/") -> UserConfig:
    """Parse the text of a per-user or per-group file.

    :raises ConfigError: a malformed line or value (with file, line and key).
    """
    builder = _Builder(source)
    ctx = ParseContext(base_dir=base_dir)
    for token in tokenize(text, source=source):
        if not isinstance(token, Assignment):
            raise ConfigError(
                "sections are not allowed here",
                file=source,
                line=token.line,
                expected="key = value",
            )
        spec = OPTIONS.get(token.key)
        if spec is None or token.key not in PER_USER_KEYS:
            builder.warn(token, "not allowed in per-user/per-group files; ignored")
            continue
        if not token.value:
            builder.warn(token, "empty value; ignored")
            continue
        try:
            value = spec.parse(token.value, ctx)
        except ConfigError as exc:
            raise _located(exc, source, token) from None
        if token.key in {"explicit-ipv4", "explicit-ipv6"}:
            _check_family(token, value, source)
        _check_refused(spec, token, value, source)
        builder.add(token, value)
    return builder.build()


def _check_refused(spec: OptionSpec, token: Assignment, value: object, source: str) -> None:
    """A key ocgate cannot honour per user refuses the session (as it refuses the start globally).

    :raises ConfigError: with the file, the line and the reason.
    """
    if spec.user_status is Status.REFUSED and not spec.is_harmless(value):
        message, expected = refusal(spec, per_user=True)
        raise ConfigError(message, file=source, line=token.line, key=token.key, expected=expected)


def _check_family(token: Assignment, value: object, source: str) -> None:
    want = ipaddress.IPv4Address if token.key == "explicit-ipv4" else ipaddress.IPv6Address
    if not isinstance(value, want):
        raise ConfigError(
            f"not an IPv{4 if want is ipaddress.IPv4Address else 6} address",
            file=source,
            line=token.line,
            key=token.key,
            expected="an address of that family",
        )


def _read_relative(directory: str, name: str) -> str | None:
    """Read ``directory/name`` without following a symbolic link; ``None`` if it is missing."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as stream:
            data = stream.read(MAX_USER_CONFIG_BYTES + 1)
    finally:
        os.close(dir_fd)
    if len(data) > MAX_USER_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_USER_CONFIG_BYTES} bytes")
    return data.decode("utf-8")


def _load(path_for_messages: str, directory: str, name: str) -> UserConfig | None:
    try:
        text = _read_relative(directory, name)
    except ConfigError as exc:
        raise ConfigError(exc.message, file=path_for_messages) from None
    except OSError as exc:
        reason = "a symbolic link" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
        raise ConfigError(f"cannot read: {reason}", file=path_for_messages) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=path_for_messages) from None
    if text is None:
        return None
    return parse_user_config(text, source=path_for_messages, base_dir=directory)


def load_user_config_file(path: str) -> UserConfig:
    """Read a ``default-user-config`` / ``default-group-config`` file.

    :raises ConfigError: the file is missing, unreadable or invalid.
    """
    directory, name = os.path.split(os.path.abspath(path))
    found = _load(path, directory, name)
    if found is None:
        raise ConfigError("no such file", file=path)
    return found


def _layer(
    directory: str | None, default: str | None, name: str | None, what: str
) -> UserConfig | None:
    if directory is not None and name is not None:
        check_name_component(name, what)
        found = _load(os.path.join(directory, name), directory, name)
        if found is not None:
            return found
    if default is not None and (directory is None or name is not None):
        return load_user_config_file(default)
    return None


def load_session_layers(config: Config, *, username: str, group: str | None) -> list[UserConfig]:
    """The group file (or ``default-group-config``), then the user file (or
    ``default-user-config``) that apply to a session.

    :raises ConfigError: a bad user/group name, or a missing default or broken file.
    """
    layers: list[UserConfig] = []
    group_layer = _layer(config.config_per_group, config.default_group_config, group, "group")
    if group_layer is not None:
        layers.append(group_layer)
    user_layer = _layer(config.config_per_user, config.default_user_config, username, "user")
    if user_layer is not None:
        layers.append(user_layer)
    return layers


def _networks(routes: Sequence[RouteValue]) -> tuple[list[IPNetwork], bool]:
    networks: list[IPNetwork] = []
    default = False
    for route in routes:
        if route.network is None:
            default = True
        elif route.network not in networks:
            networks.append(route.network)
    return networks, default


def _apply_routes(
    config: Config,
    routes: Sequence[RouteValue] | None,
    no_routes: Sequence[RouteValue] | None,
    append: bool,
) -> dict[str, object]:
    """The route changes of the session's own ``route``/``no-route`` lines (ocserv main.c
    ``apply_default_config`` and ``append_routes``): they replace the global ones; with
    ``append-routes`` the global routes and no-routes follow them."""
    changes: dict[str, object] = {}
    if routes is not None:
        networks, default = _networks(routes)
        if default:
            changes.update(route=(), route_default=True, tunnel_all_dns=True)
        elif append and not config.route_default:
            changes["route"] = tuple(dict.fromkeys((*networks, *config.route)))
        elif not append:
            changes.update(route=tuple(networks), route_default=False)
    if no_routes is not None:
        networks, _ = _networks(no_routes)
        base = config.no_route if append else ()
        changes["no_route"] = tuple(dict.fromkeys((*networks, *base)))
    return changes


def apply_layers(config: Config, layers: Sequence[UserConfig]) -> Config:
    """``config`` with the session's layers applied, as ocserv does (``sup-config/file.c``).

    ocserv reads the group file, then the user file, into one set of values: a single-value key
    of the user file overrides the group's, while the lines of a multi-value key (``route``,
    ``no-route``, ``dns``, ``split-dns``, …) of both files add up. Only then are the globals
    filled in: each key the files set replaces the global value, except that ``append-routes``
    appends the global routes and no-routes.
    """
    changes: dict[str, object] = {}
    lists: dict[str, tuple[object, ...]] = {}
    routes: list[RouteValue] | None = None
    no_routes: list[RouteValue] | None = None
    for layer in layers:
        for name, value in layer.values.items():
            if name in _LIST_TARGETS and isinstance(value, tuple):
                lists[name] = tuple(dict.fromkeys((*lists.get(name, ()), *value)))
            else:
                changes[name] = value
        if layer.routes is not None:
            routes = [*(routes or ()), *layer.routes]
        if layer.no_routes is not None:
            no_routes = [*(no_routes or ()), *layer.no_routes]
    changes.update(lists)
    changes.update(_apply_routes(config, routes, no_routes, config.append_routes))
    changes.update(_pool_changes(config, layers))
    if not changes:
        return config
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


_Found = dict[str, tuple[str, int, object]]
"""Pool keys of the layers: key → (file, line, parsed value); a later layer (the user's) wins."""


def _pool_error(found: _Found, key: str, message: str, expected: str) -> ConfigError:
    source, line, _ = found[key]
    return ConfigError(message, file=source, line=line, key=key, expected=expected)


def _check_overlap(found: _Found, key: str, network: IPNetwork, host: IPNetwork | None) -> None:
    """A session's network is the host's (it shares that pool) or apart from it: two pools over
    one range would lease an address twice, or the gateway's own end of one to a client."""
    if host is not None and network != host and network.overlaps(host):
        raise _pool_error(
            found,
            key,
            f"{network} overlaps the pool {host} without being it (an address could be leased "
            "twice)",
            f"the same network as the pool ({host}), or a network apart from it",
        )


def _ipv4_pool(config: Config, found: _Found) -> ipaddress.IPv4Network | None:
    expected = "ipv4-network = 10.0.0.0/24, or ipv4-network = 10.0.0.0 with ipv4-netmask"
    if "ipv4-network" not in found:
        if "ipv4-netmask" in found:
            raise _pool_error(found, "ipv4-netmask", "ipv4-netmask without an ipv4-network in "
                              "the per-user or per-group files", expected)  # fmt: skip
        return None
    spec = found["ipv4-network"][2]
    assert isinstance(spec, AddressWithPrefix)
    prefix = spec.prefix
    if "ipv4-netmask" in found:
        mask = found["ipv4-netmask"][2]
        assert isinstance(mask, int)
        if prefix is not None and prefix != mask:
            message = f"/{mask} from ipv4-netmask contradicts /{prefix} in ipv4-network"
            raise _pool_error(found, "ipv4-netmask", message, expected)
        prefix = mask
    if prefix is None:
        raise _pool_error(found, "ipv4-network", "the network has no prefix or ipv4-netmask",
                          expected)  # fmt: skip
    network = ipaddress.IPv4Network((spec.address, prefix), strict=False)
    if prefix > 30:
        message = f"{network} leaves no address for clients"
        raise _pool_error(found, "ipv4-network", message, "/30 or larger")
    _check_overlap(found, "ipv4-network", network, config.ipv4_network)
    return network


def _ipv6_pool(config: Config, found: _Found) -> dict[str, object]:
    changes: dict[str, object] = {}
    subnet = config.ipv6_subnet_prefix
    if "ipv6-subnet-prefix" in found:
        value = found["ipv6-subnet-prefix"][2]
        assert isinstance(value, int)
        subnet = changes["ipv6_subnet_prefix"] = value
    network = config.ipv6_network
    if "ipv6-network" in found:
        spec = found["ipv6-network"][2]
        assert isinstance(spec, AddressWithPrefix)
        if spec.prefix is None:
            raise _pool_error(found, "ipv6-network", "the network has no prefix",
                              "ipv6-network = fd00:1234::/64")  # fmt: skip
        network = ipaddress.IPv6Network((spec.address, spec.prefix), strict=False)
        changes["ipv6_network"] = network
        _check_overlap(found, "ipv6-network", network, config.ipv6_network)
    if network is None:
        return changes
    key = "ipv6-subnet-prefix" if "ipv6-subnet-prefix" in found else "ipv6-network"
    if not network.prefixlen < subnet <= 128 or network.prefixlen > 126:
        message = f"{network} with subnet prefix {subnet} leaves nothing for clients"
        expected = f"ipv6-subnet-prefix {network.prefixlen + 1}..128, a network of /126 or larger"
        raise _pool_error(found, key, message, expected)
    if network == config.ipv6_network and subnet != config.ipv6_subnet_prefix:
        message = (
            f"/{subnet} leases of {network}, whose pool leases /{config.ipv6_subnet_prefix} "
            "(one network has one pool)"
        )
        expected = "the pool's ipv6-subnet-prefix, or an ipv6-network of this user's or group's own"
        raise _pool_error(found, key, message, expected)
    return changes


def _pool_changes(config: Config, layers: Sequence[UserConfig]) -> dict[str, object]:
    """The session's address pool: ``ipv4_network``, ``ipv6_network`` and
    ``ipv6_subnet_prefix`` of the layers, checked (ocserv ``sup-config/file.c`` reads them; its
    ``ip-lease.c`` leases from the session's network when it has one).

    :raises ConfigError: a network without a prefix, too small, overlapping the host's pool, or
        an ``ipv6-subnet-prefix`` that does not fit (file, line and key of the value at fault).
    """
    found: _Found = {}
    for layer in layers:
        for key, (line, value) in layer.pool.items():
            found[key] = (layer.source, line, value)
    if not found:
        return {}
    changes = _ipv6_pool(config, found)
    network4 = _ipv4_pool(config, found)
    if network4 is not None:
        changes["ipv4_network"] = network4
    return changes
