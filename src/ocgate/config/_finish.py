"""Turn a :class:`Draft` into a :class:`Config`: cross-key rules and ocserv's fatal checks.

Theory of operation: keys whose option row names a ``field`` are copied generically (repeated keys
collected in file order, otherwise the last line wins). Then each finisher, in order, applies one
group of rules that involve several keys or a missing key, following ocserv ``src/config.c``
(``check_cfg``, ``figure_auth_funcs``) and mutating the keyword arguments for ``Config``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
from collections.abc import Callable
from typing import Any

from ocgate.config._auth import check_auth
from ocgate.config._collector import collector_settings
from ocgate.config._draft import Draft
from ocgate.config._model import AuthMethod, Config, IPNetwork
from ocgate.config._net import AddressWithPrefix, RouteValue
from ocgate.config._options import OPTIONS
from ocgate.config._profile import ProfileFile
from ocgate.errors import ConfigError

__all__ = ["build_config"]

Kwargs = dict[str, Any]

_DEFAULTS: dict[str, object] = {
    f.name: f.default for f in dataclasses.fields(Config) if f.default is not dataclasses.MISSING
}


def _finish_auth(draft: Draft, kwargs: Kwargs) -> None:
    lines = [("auth", e) for e in draft.all("auth", AuthMethod)]
    lines += [("enable-auth", e) for e in draft.all("enable-auth", AuthMethod)]
    if not any(key == "auth" for key, _ in lines):
        raise draft.error(
            "auth",
            None,
            "no authentication method is configured",
            'at least one line such as auth = "plain[passwd=/etc/ocserv/ocpasswd]"',
        )
    lines.sort(key=lambda item: item[1][0])
    primary: list[AuthMethod] = []
    alternatives: list[AuthMethod] = []
    for key, (line, method) in lines:
        (primary if key == "auth" else alternatives).append(method)
        try:
            check_auth(primary, alternatives)
        except ConfigError as exc:
            raise draft.error(key, line, exc.message, exc.expected) from None


def _finish_certificates(draft: Draft, kwargs: Kwargs) -> None:
    certs, keys = draft.all("server-cert", str), draft.all("server-key", str)
    expected = "server-cert = /path/to/cert.pem followed by server-key = /path/to/key.pem"
    for name, found in (("server-cert", certs), ("server-key", keys)):
        if not found:
            raise draft.error(name, None, f"no {name} is configured", expected)
    if len(certs) != len(keys):
        last = (("server-cert", certs[-1][0]), ("server-key", keys[-1][0]))
        key, line = max(last, key=lambda item: item[1])
        raise draft.error(
            key,
            line,
            f"{len(certs)} server-cert line(s) but {len(keys)} server-key line(s)",
            "one server-key after each server-cert",
        )


def _combine_prefix(
    draft: Draft, network_key: str, prefix_key: str, expected: str
) -> tuple[int, AddressWithPrefix, int] | None:
    """The network's line, its address and the prefix given inline or by ``prefix_key``."""
    network, separate = draft.last(network_key, AddressWithPrefix), draft.last(prefix_key, int)
    if network is None:
        if separate is not None:
            draft.warn(prefix_key, separate[0], f"ignored: there is no {network_key}")
        return None
    line, spec = network
    prefix = spec.prefix
    if separate is not None:
        if prefix is not None and prefix != separate[1]:
            key, at = max((network_key, line), (prefix_key, separate[0]), key=lambda x: x[1])
            message = f"/{separate[1]} from {prefix_key} contradicts /{prefix} in {network_key}"
            raise draft.error(key, at, message, expected)
        prefix = separate[1]
    if prefix is None:
        raise draft.error(network_key, line, f"the network has no prefix or {prefix_key}", expected)
    return line, spec, prefix


def _pool(draft: Draft, key: str, line: int, spec: AddressWithPrefix, prefix: int) -> IPNetwork:
    network = ipaddress.ip_network((spec.address, prefix), strict=False)
    if network.network_address != spec.address:
        draft.warn(key, line, f"host bits set in {spec.address}/{prefix}; using {network}")
    return network


def _finish_ipv4(draft: Draft, kwargs: Kwargs) -> None:
    expected = "ipv4-network = 192.168.1.0/24, or ipv4-network = 192.168.1.0 with ipv4-netmask"
    found = _combine_prefix(draft, "ipv4-network", "ipv4-netmask", expected)
    if found is not None:
        kwargs["ipv4_network"] = _pool(draft, "ipv4-network", *found)


def _finish_ipv6(draft: Draft, kwargs: Kwargs) -> None:
    expected = "ipv6-network = fd00:1234::/48 (or ipv6-network with ipv6-prefix)"
    found = _combine_prefix(draft, "ipv6-network", "ipv6-prefix", expected)
    subnets = [(line, prefix) for line, prefix in draft.all("ipv6-subnet-prefix", int) if prefix]
    subnet_line, subnet = subnets[-1] if subnets else (None, 128)
    kwargs["ipv6_subnet_prefix"] = subnet
    if found is None:
        return
    line, spec, prefix = found
    kwargs["ipv6_network"] = _pool(draft, "ipv6-network", line, spec, prefix)
    if subnet <= prefix:
        key = "ipv6-network" if subnet_line is None else "ipv6-subnet-prefix"
        raise draft.error(
            key,
            line if subnet_line is None else subnet_line,
            f"the subnet prefix (/{subnet}) must be longer than the network's (/{prefix})",
            f"ipv6-subnet-prefix between {prefix + 1} and 128",
        )


def _networks(draft: Draft, key: str) -> tuple[list[IPNetwork], int | None]:
    """Routes of ``key`` without duplicates, and the line of the first default route."""
    networks: list[IPNetwork] = []
    default_line: int | None = None
    for line, route in draft.all(key, RouteValue):
        if route.network is None:
            default_line = line if default_line is None else default_line
            continue
        if route.host_bits is not None:
            draft.warn(key, line, f"host bits set in {route.host_bits}; using {route.network}")
        if route.network not in networks:
            networks.append(route.network)
    return networks, default_line


def _finish_routes(draft: Draft, kwargs: Kwargs) -> None:
    routes, default_line = _networks(draft, "route")
    if default_line is not None:
        if routes:
            draft.warn(
                "route",
                default_line,
                f"full tunnel (default route): the other {len(routes)} route(s) are ignored",
            )
        routes = []
        kwargs["route_default"] = True
        kwargs["tunnel_all_dns"] = True  # ocserv: a default route tunnels all DNS.
    kwargs["route"] = tuple(routes)
    kwargs["no_route"] = tuple(_networks(draft, "no-route")[0])


def _finish_timers(draft: Draft, kwargs: Kwargs) -> None:
    if kwargs.get("mobile_dpd") == 0:  # ocserv check_cfg: 0 means "same as dpd".
        kwargs["mobile_dpd"] = kwargs.get("dpd", _DEFAULTS["dpd"])
    if "mobile-idle-timeout" not in draft.entries:  # Unset falls back to idle-timeout.
        kwargs["mobile_idle_timeout"] = kwargs.get("idle_timeout")


def _last_bool(draft: Draft, key: str, default: bool) -> tuple[int | None, bool]:
    found = draft.last(key, bool)
    return (None, default) if found is None else found


def _finish_compat(draft: Draft, kwargs: Kwargs) -> None:
    # 'always-require-cert = false' was the old spelling of 'cisco-client-compat = true'.
    settings = draft.all("cisco-client-compat", bool)
    settings += [(line, True) for line, v in draft.all("always-require-cert", bool) if not v]
    if settings:
        kwargs["cisco_client_compat"] = max(settings)[1]  # The last line wins.
    cisco = bool(kwargs.get("cisco_client_compat", False))
    svc_line, svc = _last_bool(draft, "cisco-svc-client-compat", False)
    match_line, match = _last_bool(draft, "match-tls-dtls-ciphers", False)
    legacy = _last_bool(draft, "dtls-legacy", True)[1] or cisco or svc
    kwargs["dtls_legacy"] = legacy
    kwargs["cisco_svc_client_compat"] = svc
    if match and legacy:
        raise draft.error(
            "match-tls-dtls-ciphers",
            match_line,
            "cannot be used while 'dtls-legacy' or 'cisco-client-compat' is on",
            "dtls-legacy = false, and neither cisco-client-compat nor cisco-svc-client-compat",
        )
    udp_port = kwargs.get("udp_port")
    if svc and udp_port is not None and udp_port != 443:
        raise draft.error(
            "cisco-svc-client-compat",
            svc_line,
            f"needs udp-port 443, not {udp_port}",
            "udp-port = 443",
        )


def _finish_camouflage(draft: Draft, kwargs: Kwargs) -> None:
    # Camouflage without a secret would hide the VPN from every client, AnyConnect included.
    found = draft.last("camouflage", bool)
    if found is not None and found[1] and not kwargs.get("camouflage_secret"):
        raise draft.error(
            "camouflage",
            found[0],
            "camouflage = true needs camouflage_secret",
            'camouflage_secret = "SECRET" (clients then connect to https://host/?SECRET)',
        )


def _finish_collector(draft: Draft, kwargs: Kwargs) -> None:
    # The embedded collector runs when a listener is set: check its keys and files now, with
    # their lines, as ``ocgate nvm serve`` does, rather than fail when the gateway starts.
    if draft.entries.get("nvm-listen") or draft.entries.get("nvm-dtls-listen"):
        collector_settings(draft)


def _finish_console(draft: Draft, kwargs: Kwargs) -> None:
    # The console refuses to start without its administrators; their files are checked now,
    # with their lines, rather than when the console process starts.
    found = draft.last("admin-listen", str)
    if found is None:
        return
    from ocgate.console._accounts import check_admin_files
    from ocgate.console._tokens import load_admin_tokens

    for key in ("admin-passwd", "admin-otp"):
        if not kwargs.get(key.replace("-", "_")):
            raise draft.error(
                "admin-listen",
                found[0],
                f"the web console needs {key}",
                "admin-passwd = FILE (roles admin/readonly) and admin-otp = FILE (TOTP entries)",
            )
    if (kwargs.get("admin_server_cert") is None) != (kwargs.get("admin_server_key") is None):
        raise draft.error(
            "admin-listen",
            found[0],
            "admin-server-cert and admin-server-key go together",
            "both (the console's own certificate) or neither (the gateway's)",
        )
    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise draft.error(
            "admin-listen",
            found[0],
            f"the web console needs the ocgate[api] extra (missing: {', '.join(missing)})",
            "pip install 'ocgate[api]', or no admin-listen line",
        )
    check_admin_files(kwargs["admin_passwd"], kwargs["admin_otp"])
    if kwargs.get("admin_token_file"):
        load_admin_tokens(kwargs["admin_token_file"])


def _finish_profiles(draft: Draft, kwargs: Kwargs) -> None:
    # Profiles are downloaded by file name (/profiles/NAME): two with one name would hide one.
    seen: dict[str, str] = {}
    for key in ("user-profile", "service-profile-vpn-mgmt", "service-profile-nvm"):
        found = draft.last(key, ProfileFile)
        if found is None:
            continue
        line, profile = found
        if profile.name in seen:
            raise draft.error(
                key,
                line,
                f"{seen[profile.name]} already serves a file named {profile.name!r}",
                "profile files with distinct names (they are downloaded as /profiles/NAME)",
            )
        seen[profile.name] = key


_FINISHERS: tuple[Callable[[Draft, Kwargs], None], ...] = (
    _finish_auth,
    _finish_certificates,
    _finish_ipv4,
    _finish_ipv6,
    _finish_routes,
    _finish_timers,
    _finish_compat,
    _finish_camouflage,
    _finish_collector,
    _finish_console,
    _finish_profiles,
)


def build_config(draft: Draft) -> Config:
    """Apply the cross-key rules and build the :class:`Config`.

    :raises ConfigError: a fatal check failed; it names the key and, where there is one, the line.
    """
    kwargs = draft.fields(OPTIONS.values())
    for finish in _FINISHERS:
        finish(draft, kwargs)
    warnings = tuple(sorted(draft.warnings, key=lambda warning: warning.line))
    return Config(source=draft.source, warnings=warnings, **kwargs)
