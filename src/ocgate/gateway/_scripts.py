"""The environment of ``connect-script``, ``disconnect-script`` and ``host-update-script``.

Variable names and value forms follow ocserv ``src/main-user.c`` (``call_script`` and
``export_fw_info``): lists are space-separated with a trailing space, routes keep their configured
form (IPv4 as ``net/dotted-mask``), ``IP_LOCAL``/``IP_REMOTE`` are the tunnel ends (the IPv6 ones
when there is no IPv4), and the disconnect call adds ``STATS_BYTES_IN`` (from the client),
``STATS_BYTES_OUT`` (to the client) and ``STATS_DURATION``. With ``restrict-user-to-routes`` or
``restrict-user-to-ports`` ocserv also exports ``OCSERV_RESTRICT_TO_ROUTES`` and
``OCSERV_ALLOW_PORTS``/``OCSERV_DENY_PORTS`` (for its ``ocserv-fw``); ocgate enforces those
restrictions itself (``ocgate.ipfilter``) and still exports the variables for scripts that read
them. Newer ocserv versions add ``VHOST``, ``USER_AGENT``, ``DEVICE_TYPE``, ``DEVICE_PLATFORM`` and
``REMOTE_HOSTNAME``; so does ocgate (1.1.6 sets them too). ocserv 1.1.6 leaves ``IP_LOCAL`` and
``IP_REMOTE`` unset for an IPv6-only tunnel (it tests the buffer it has just filled); its code means
the IPv6 ends, which ocgate gives.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ocgate.config import Config, IPAddress, IPNetwork
from ocgate.ipfilter import PortRule

__all__ = ["ScriptContext", "script_environment"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptContext:
    """What is known about a tunnel when a script runs."""

    reason: str
    """``connect``, ``disconnect`` or ``host-update``."""
    tunnel_id: int
    username: str
    groupname: str
    hostname: str
    device: str
    user_agent: str
    device_type: str
    device_platform: str
    remote_ip: str
    local_ip: str
    ipv4: ipaddress.IPv4Address | None
    server_ipv4: ipaddress.IPv4Address | None
    ipv6: ipaddress.IPv6Network | None
    server_ipv6: ipaddress.IPv6Address | None
    bytes_in: int = 0
    bytes_out: int = 0
    duration: int | None = None
    device_platform_version: str = ""
    """What the login said of the machine beyond ocserv's two (ocgate additions)."""
    device_computer_name: str = ""
    device_unique_id: str = ""


def _route_text(net: IPNetwork) -> str:
    if isinstance(net, ipaddress.IPv4Network):
        return f"{net.network_address}/{net.netmask}"
    return str(net)


def _spaced(items: Iterable[str]) -> str:
    return "".join(f"{item} " for item in items)


def _export_split(env: dict[str, str], name: str, values: list[str]) -> None:
    """``NAME`` (all), ``NAME4`` and ``NAME6`` as ocserv's ``export_fw_info`` writes them."""
    v4 = [v for v in values if ":" not in v]
    v6 = [v for v in values if ":" in v]
    for suffix, chosen in (("", values), ("4", v4), ("6", v6)):
        if chosen:
            env[f"{name}{suffix}"] = _spaced(chosen)


def script_environment(config: Config, ctx: ScriptContext) -> dict[str, str]:
    """The variables a script gets (to be added to a minimal base environment)."""
    env: dict[str, str] = {
        "REASON": ctx.reason,
        "ID": str(ctx.tunnel_id),
        "VHOST": config.vhost_label,
        "USERNAME": ctx.username,
        "GROUPNAME": ctx.groupname,
        "HOSTNAME": ctx.hostname,
        "REMOTE_HOSTNAME": ctx.hostname,
        "DEVICE": ctx.device,
        "USER_AGENT": ctx.user_agent,
        "DEVICE_TYPE": ctx.device_type,
        "DEVICE_PLATFORM": ctx.device_platform,
        "IP_REAL": ctx.remote_ip,
        "IP_REAL_LOCAL": ctx.local_ip,
    }
    # ocgate additions: the rest of what the login said of the machine, when it said it.
    for name, value in (
        ("DEVICE_PLATFORM_VERSION", ctx.device_platform_version),
        ("DEVICE_COMPUTER_NAME", ctx.device_computer_name),
        ("DEVICE_UNIQUE_ID", ctx.device_unique_id),
    ):
        if value:
            env[name] = value
    if ctx.ipv4 is not None and ctx.server_ipv4 is not None:
        env["IP_LOCAL"] = str(ctx.server_ipv4)
        env["IP_REMOTE"] = str(ctx.ipv4)
    if ctx.ipv6 is not None and ctx.server_ipv6 is not None:
        env["IPV6_LOCAL"] = str(ctx.server_ipv6)
        env["IPV6_REMOTE"] = str(ctx.ipv6.network_address)
        env["IPV6_PREFIX"] = str(ctx.ipv6.prefixlen)
        env.setdefault("IP_LOCAL", env["IPV6_LOCAL"])
        env.setdefault("IP_REMOTE", env["IPV6_REMOTE"])
    routes = [] if config.route_default else [_route_text(r) for r in config.route]
    _export_split(env, "OCSERV_ROUTES", routes)
    _export_split(env, "OCSERV_NO_ROUTES", [_route_text(r) for r in config.no_route])
    _export_split(env, "OCSERV_DNS", [_address_text(a) for a in config.dns])
    if config.restrict_user_to_routes:
        env["OCSERV_RESTRICT_TO_ROUTES"] = "1"
    ports = config.restrict_user_to_ports
    if ports is not None and ports.rules:
        name = "OCSERV_DENY_PORTS" if ports.deny else "OCSERV_ALLOW_PORTS"
        env[name] = _spaced(_port_text(rule) for rule in ports.rules)
    if ctx.reason == "disconnect":
        env["STATS_BYTES_IN"] = str(ctx.bytes_in)
        env["STATS_BYTES_OUT"] = str(ctx.bytes_out)
        if ctx.duration is not None:
            env["STATS_DURATION"] = str(ctx.duration)
    return env


def _port_text(rule: PortRule) -> str:
    """ocserv's ``PROTO PORT`` pairs (``tcp 443``); a range as ``LOW:HIGH`` (iptables' form, which
    ocserv's ``ocserv-fw`` passes to ``--dport``); ``icmp all`` for the protocols without ports."""
    name = rule.proto.name.lower()
    if rule.low == 0:
        return f"{name} all"
    if rule.low == rule.high:
        return f"{name} {rule.low}"
    return f"{name} {rule.low}:{rule.high}"


def _address_text(address: IPAddress) -> str:
    return str(address)
