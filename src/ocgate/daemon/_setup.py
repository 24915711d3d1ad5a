"""What the supervisor and its children agree on: the set-up message and a few shared facts.

Kept small on purpose: the supervisor imports this, not the workers' protocol stacks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ocgate.config import Config

if TYPE_CHECKING:
    from OpenSSL import SSL

__all__ = [
    "TUNNEL_IDS_PER_WORKER",
    "ChildSetup",
    "bind_udp_socket",
    "server_addresses",
    "tls_context",
    "tls_files",
    "vhost_tls_context",
]

TUNNEL_IDS_PER_WORKER = 1_000_000
"""Tunnel ids are ``generation * TUNNEL_IDS_PER_WORKER + n``: unique, and they name the worker."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSetup:
    """What a child needs to know (pickled, supervisor → child only)."""

    config: Config
    log_level: int
    log_stderr: bool
    log_json: bool
    log_facility: str = "daemon"
    """``--syslog-facility``: where syslog lines go when not logging to standard error."""
    account: object = None
    """The :class:`ocgate.sandbox.Account` to become (``None``: keep the current identity)."""
    cookie_key: bytes = b""
    store_path: str = ""
    console_tokens: dict[bytes, str] = dataclasses.field(default_factory=dict, repr=False)
    """The console API's bearer tokens as SHA-256 digests, with their roles (console only)."""


def server_addresses(
    config: Config,
) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
    """The gateway's own tunnel addresses: the first host of each pool (ocserv's rule)."""
    from ocgate.session import Ipv4Pool, Ipv6Pool

    v4 = (
        Ipv4Pool(config.ipv4_network, predictable=True).server_address
        if config.ipv4_network
        else None
    )
    v6 = (
        Ipv6Pool(config.ipv6_network, config.ipv6_subnet_prefix, predictable=True).server_address
        if config.ipv6_network
        else None
    )
    return v4, v6


def bind_udp_socket(
    host: str, port: int, family: int, *, connect: tuple[str, int] | None = None
) -> socket.socket:
    """A UDP socket on the DTLS port (the supervisor binds: the port may be privileged)."""
    if family == 0:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):  # Best effort: the kernel caps it at rmem_max.
                sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)
        sock.bind((host, port))
        if connect is not None:
            sock.connect(connect)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def tls_context(config: Config) -> tuple[SSL.Context, tuple[str, ...]]:
    """The server TLS context ``config`` asks for (client certificates included), and the
    warnings of its priority string.

    Imports the TLS stack on call: the supervisor only needs it in a short-lived check child.

    :raises ConfigError: a certificate, key or CA file cannot be used.
    """
    from ocgate.certauth import CertRequest, cert_request_mode, configure_client_cert_request
    from ocgate.tls import build_server_context, translate_priorities

    policy = translate_priorities(
        config.tls_priorities, cisco_client_compat=config.cisco_client_compat
    )
    ctx = build_server_context(
        cert_files=config.server_cert,
        key_files=config.server_key,
        policy=policy,
        renegotiation=config.rekey_method == "ssl" and config.rekey_time > 0,
    )
    mode = cert_request_mode(config)
    if mode is not CertRequest.IGNORE and config.ca_cert is not None:
        configure_client_cert_request(
            ctx, required=mode is CertRequest.REQUIRE, ca_file=config.ca_cert
        )
    return ctx, tuple(policy.warnings)


def tls_files(config: Config) -> list[str]:
    """The files the workers' TLS contexts are made of, in the order the supervisor passes them
    as memory files: for the default host, then each vhost, its first certificate, its key and,
    when it has one, its CA. Without vhosts: certificate, key, CA, as before vhosts existed."""
    paths: list[str] = []
    for host in config.hosts():
        paths += [host.server_cert[0], host.server_key[0]]
        if host.ca_cert is not None:
            paths.append(host.ca_cert)
    return paths


def vhost_tls_context(config: Config, paths: list[str]) -> tuple[SSL.Context, tuple[str, ...]]:
    """The TLS context of the default host with every vhost's behind it, chosen by SNI
    (:func:`ocgate.tls.serve_by_server_name`), from the files of :func:`tls_files` found at
    ``paths`` (a worker's memory files), and the warnings of the priority strings.

    :raises ConfigError: a certificate, key or CA cannot be used; too few files.
    """
    from ocgate.errors import ConfigError
    from ocgate.tls import serve_by_server_name

    files = iter(paths)
    contexts: dict[str | None, SSL.Context] = {}
    warnings: list[str] = []
    try:
        for host in config.hosts():
            cert, key = next(files), next(files)
            ca = next(files) if host.ca_cert is not None else None
            host = dataclasses.replace(host, server_cert=(cert,), server_key=(key,), ca_cert=ca)
            contexts[host.vhost_name], found = tls_context(host)
            warnings += [w for w in found if w not in warnings]
    except StopIteration:
        raise ConfigError(
            "fewer TLS files than the configuration names", key="server-cert"
        ) from None
    default = contexts[None]
    if config.vhosts:
        serve_by_server_name(default, lambda name: contexts[config.vhost(name).vhost_name])
    return default, tuple(warnings)
