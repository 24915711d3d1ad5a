"""Routes through a client's TUN device (``iroute``), added over rtnetlink.

Theory of operation
-------------------
ocserv's main process runs ``route-add-cmd`` (by default ``ip route add %{R} dev %{D}``) for each
``iroute`` network of a user when the user's tunnel comes up, so that traffic for the LAN behind the
client goes into that client's tunnel, and ``route-del-cmd`` when it goes down. ocgate's supervisor
does the same without a shell: :func:`add_device_routes` sends one ``RTM_NEWROUTE`` per network
(``NLM_F_CREATE | NLM_F_EXCL``, main table, link scope, ``RTA_DST`` + ``RTA_OIF``: exactly what
``ip route add NET dev DEV`` asks for) and reads the kernel's acknowledgement.

Removal needs no message: the TUN device is not persistent, so when the tunnel's descriptor is
closed the kernel deletes the link and, with it, every route through it. A route that names the
device can therefore never outlive the tunnel, even if the supervisor is killed.

A network the kernel refuses (typically ``EEXIST``: another connected user has the same iroute, or
the administrator routed it elsewhere) is reported back and the others are still added, as ocserv
carries on when ``route-add-cmd`` fails. A reconnecting session's new device is up before its old
one is closed: the caller asks for those networks to be *replaced* (``NLM_F_REPLACE``, ``ip route
replace``), so the route moves to the new device instead of failing and then vanishing with the
old one.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Collection, Sequence
from ipaddress import IPv4Network, IPv6Network

__all__ = ["add_device_routes"]

# <linux/netlink.h>, <linux/rtnetlink.h>
NETLINK_ROUTE = 0
RTM_NEWROUTE = 24
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3  # What `ip route add` sets.
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
RTA_DST = 1
RTA_OIF = 4
NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; flags
RTMSG = struct.Struct("=BBBBBBBBI")
RTATTR = struct.Struct("=HH")
NLMSGERR = struct.Struct("=i")


def _attr(kind: int, data: bytes) -> bytes:
    size = RTATTR.size + len(data)
    return RTATTR.pack(size, kind) + data + bytes(-size % 4)


def _new_route(
    seq: int, network: IPv4Network | IPv6Network, ifindex: int, *, replace: bool = False
) -> bytes:
    family = socket.AF_INET if isinstance(network, IPv4Network) else socket.AF_INET6
    body = RTMSG.pack(
        family, network.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_LINK, RTN_UNICAST, 0
    )
    body += _attr(RTA_DST, network.network_address.packed)
    body += _attr(RTA_OIF, struct.pack("=i", ifindex))
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_NEWROUTE, flags, seq, 0) + body


def _acks(data: bytes) -> dict[int, int]:
    """``seq -> errno`` (0 for success) of the ``NLMSG_ERROR`` messages in one datagram."""
    found: dict[int, int] = {}
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _, seq, _ = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size:
            break
        if kind == NLMSG_ERROR and length >= NLMSGHDR.size + NLMSGERR.size:
            (error,) = NLMSGERR.unpack_from(data, offset + NLMSGHDR.size)
            found[seq] = -error
        offset += (length + 3) & ~3
    return found


def add_device_routes(
    device: str,
    networks: Sequence[IPv4Network | IPv6Network],
    *,
    replace: Collection[IPv4Network | IPv6Network] = (),
) -> list[tuple[IPv4Network | IPv6Network, OSError]]:
    """Route each network through ``device`` (``ip route add NET dev DEVICE``).

    Blocking (one netlink round trip per network); safe to call from any thread.

    :param replace: networks to take over from whatever device routes them now (``ip route
        replace``): the caller knows the route belongs to an older tunnel of the same session.

    :returns: the networks the kernel refused, each with its error (the others are routed).
    :raises OSError: ``device`` does not exist, or no netlink socket could be opened.
    """
    if not networks:
        return []
    ifindex = socket.if_nametoindex(device)
    failed: list[tuple[IPv4Network | IPv6Network, OSError]] = []
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
    ) as s:
        s.bind((0, 0))
        s.settimeout(5.0)
        for seq, network in enumerate(networks, start=1):
            s.send(_new_route(seq, network, ifindex, replace=network in replace))
            while True:
                acks = _acks(s.recv(65536))
                if seq in acks:
                    break
            code = acks[seq]
            if code:
                failed.append(
                    (network, OSError(code, f"{network} dev {device}: {os.strerror(code)}"))
                )
    return failed
