"""Point-to-point TUN devices, one per client, like ocserv (ocserv-compatibility §4.6 ``device``).

Theory of operation
-------------------
* :func:`open_tun` opens ``/dev/net/tun`` and issues ``TUNSETIFF`` with ``IFF_TUN | IFF_NO_PI`` and
  the name template ``<prefix>%d``, so the kernel picks the first free ``vpns0``, ``vpns1``, …; the
  name the kernel chose is read back from the ioctl result. The descriptor is non-blocking and
  close-on-exec. The device is not persistent: closing the descriptor deletes the link, so
  :func:`remove_tun` only closes (it never deletes a link by name, which could hit a device that a
  newer tunnel has just been given under the same name).
* :func:`configure_tun` uses the classic interface ioctls (``SIOCSIFMTU``, ``SIOCSIFADDR``,
  ``SIOCSIFDSTADDR``, ``SIOCSIFFLAGS``, ``SIOCADDRT``), as ocserv does: microseconds per device,
  safe to run in any thread. Failures are raised as :class:`OSError` with the kernel's errno.
* One packet per ``read()``/``write()``: with ``IFF_NO_PI`` the payload is the bare IP packet.
  :meth:`TunDevice.read_batch` and :meth:`TunDevice.write_batch` move a batch in one call
  (:mod:`ocgate.tun._batch`, in C when the compiled fast path is installed).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import struct
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from types import TracebackType

from ocgate.errors import ConfigError
from ocgate.tun._batch import read_many, write_many

__all__ = ["TunDevice", "configure_tun", "open_tun", "remove_tun"]

TUN_PATH = "/dev/net/tun"
# linux/if_tun.h: TUNSETIFF = _IOW('T', 202, int); the IFF_* flags of struct ifreq.ifr_flags.
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
# struct ifreq (linux/if.h): char ifr_name[IFNAMSIZ]; short ifr_flags; padded to the 40-byte union.
IFREQ = struct.Struct("16sH22x")
READ_SIZE = 65536
"""Larger than any packet a tun can hand us (the IP total length field is 16 bits)."""

# Room for the kernel's unit number: "vpns" + up to 3 digits stays under IFNAMSIZ - 1.
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]{1,12}")


class TunDevice:
    """An open, non-blocking TUN device.

    :ivar fd: the descriptor (for ``loop.add_reader``); -1 once closed.
    :ivar name: the interface name the kernel gave, e.g. ``vpns3``.
    """

    __slots__ = ("fd", "name")

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name

    def __repr__(self) -> str:
        return f"TunDevice(name={self.name!r}, fd={self.fd})"

    def fileno(self) -> int:
        """The descriptor, for selectors."""
        return self.fd

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self.fd < 0

    def read(self) -> bytes | None:
        """Read one IP packet, or ``None`` if none is waiting."""
        try:
            return os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return None

    def read_batch(self, limit: int) -> list[bytes]:
        """Read up to ``limit`` packets (fewer when the queue empties): one call per wake-up."""
        return read_many(self.fd, limit)

    def write_batch(self, packets: Sequence[bytes]) -> int:
        """Hand each packet to the kernel; return how many it took (see :meth:`write`)."""
        return write_many(self.fd, packets)

    def write(self, packet: bytes | bytearray | memoryview) -> bool:
        """Hand one IP packet to the kernel; return ``False`` if it was dropped.

        A packet is dropped (not raised) when the device queue is full or the kernel rejects the
        packet as malformed (``EINVAL``: not IPv4/IPv6), since clients can send anything.
        """
        try:
            os.write(self.fd, packet)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return False
            raise
        return True

    def close(self) -> None:
        """Close the descriptor; the kernel then deletes the (non-persistent) link. Idempotent."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def detach(self) -> int:
        """Give up the descriptor without closing it (the caller closes it); -1 if closed."""
        fd, self.fd = self.fd, -1
        return fd

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_tun(prefix: str) -> TunDevice:
    """Create a TUN device named ``<prefix><n>`` with the first free ``n``.

    :param prefix: the ``device`` option, e.g. ``vpns``.
    :raises ConfigError: ``prefix`` is not a usable interface name prefix.
    :raises OSError: the kernel refused (no ``/dev/net/tun``, no ``CAP_NET_ADMIN``, …).
    """
    if _PREFIX_RE.fullmatch(prefix) is None:
        raise ConfigError(
            f"{prefix!r} cannot prefix an interface name",
            key="device",
            expected="1 to 12 of A-Z a-z 0-9 _ . -",
        )
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        request = IFREQ.pack(f"{prefix}%d".encode("ascii"), IFF_TUN | IFF_NO_PI)
        reply = fcntl.ioctl(fd, TUNSETIFF, request)
    except BaseException:
        os.close(fd)
        raise
    name = reply[:IFNAMSIZ].split(b"\0", 1)[0].decode("ascii")
    return TunDevice(fd, name)


def remove_tun(dev: TunDevice) -> None:
    """Delete a device made by :func:`open_tun` by closing it (the kernel removes the link)."""
    dev.close()


def configure_tun(
    name: str,
    *,
    mtu: int,
    local4: IPv4Address | None = None,
    peer4: IPv4Address | None = None,
    local6: IPv6Address | None = None,
    peer6: IPv6Network | None = None,
) -> None:
    """Set up a client's tun: MTU, point-to-point addresses, link up, route to the client's IPv6.

    IPv4: ``local4`` with peer ``peer4`` (``ip addr add LOCAL peer PEER/32``). IPv6: ``local6/128``
    and a route to ``peer6`` through the device. Keep ``mtu`` at 1280 or more when using IPv6 (below
    that the kernel disables IPv6 on the link). Blocking; safe to call from any thread.

    The classic interface ioctls do it, as ocserv's ``tun.c`` does: a handful of system calls,
    a few microseconds each, where netlink through a library costs milliseconds per device — and
    the supervisor creates every tunnel's device.

    :raises OSError: no such device, or the kernel refused a change (``errno`` is the kernel's;
        ``EEXIST`` when the IPv4 peer or the IPv6 address is already configured on the device).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
        index = _ifindex(s4, name)
        _ioctl(s4, SIOCSIFMTU, struct.pack("16si20x", _ifname(name), mtu), name)
        if local4 is not None:
            if peer4 is not None and _has_dstaddr(s4, name, peer4):
                raise OSError(errno.EEXIST, f"{name}: {peer4} is already the peer")
            _ioctl(s4, SIOCSIFADDR, _ifreq_in(name, local4), name)
            _ioctl(s4, SIOCSIFNETMASK, _ifreq_in(name, IPv4Address("255.255.255.255")), name)
            _ioctl(
                s4, SIOCSIFDSTADDR, _ifreq_in(name, peer4 if peer4 is not None else local4), name
            )
        flags = struct.unpack_from("16sH", _ioctl(s4, SIOCGIFFLAGS, _ifreq_flags(name, 0), name))[1]
        if local6 is None:
            _ioctl(s4, SIOCSIFFLAGS, _ifreq_flags(name, flags | IFF_UP), name)
            return
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
        # IPv6 comes alive with the link: bring it up first, then address and route.
        _ioctl(s6, SIOCSIFFLAGS, _ifreq_flags(name, flags | IFF_UP), name)
        _ioctl(s6, SIOCSIFADDR, IN6_IFREQ.pack(local6.packed, 128, index), name)
        if peer6 is not None:
            flags6 = RTF_UP | (RTF_HOST if peer6.prefixlen == 128 else 0)
            route = IN6_RTMSG.pack(
                peer6.network_address.packed, bytes(16), bytes(16), 0, peer6.prefixlen, 0, 1, 0,
                flags6, index,
            )  # fmt: skip
            _ioctl(s6, SIOCADDRT, route, name)


# <linux/sockios.h>, <linux/if.h>, <linux/ipv6_route.h>, <linux/route.h>
SIOCADDRT = 0x890B
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCGIFDSTADDR = 0x8917
SIOCSIFDSTADDR = 0x8918
SIOCSIFNETMASK = 0x891C
SIOCSIFMTU = 0x8922
SIOCGIFINDEX = 0x8933
IFF_UP = 0x1
RTF_UP = 0x0001
RTF_HOST = 0x0004
# struct in6_ifreq { struct in6_addr; __u32 prefixlen; int ifindex; }
IN6_IFREQ = struct.Struct("=16sIi")
# struct in6_rtmsg { dst, src, gateway; __u32 type; __u16 dst_len, src_len; __u32 metric;
#                    unsigned long info; __u32 flags; int ifindex; }
IN6_RTMSG = struct.Struct("@16s16s16sIHHIQIi")


def _ifname(name: str) -> bytes:
    return name.encode("ascii")[: IFNAMSIZ - 1]


def _ifreq_in(name: str, address: IPv4Address) -> bytes:
    # struct ifreq with a struct sockaddr_in: family, port, address, zero padding (40 bytes).
    return struct.pack("16sHH4s16x", _ifname(name), socket.AF_INET, 0, address.packed)


def _ifreq_flags(name: str, flags: int) -> bytes:
    return struct.pack("16sH22x", _ifname(name), flags)


def _ifindex(sock: socket.socket, name: str) -> int:
    reply = _ioctl(sock, SIOCGIFINDEX, struct.pack("16si20x", _ifname(name), 0), name)
    return int(struct.unpack_from("16si", reply)[1])


def _has_dstaddr(sock: socket.socket, name: str, peer: IPv4Address) -> bool:
    try:
        reply = fcntl.ioctl(sock.fileno(), SIOCGIFDSTADDR, _ifreq_in(name, IPv4Address(0)))
    except OSError:
        return False  # EADDRNOTAVAIL: no address yet.
    return bytes(reply[20:24]) == peer.packed


def _ioctl(sock: socket.socket, request: int, arg: bytes, name: str) -> bytes:
    try:
        return bytes(fcntl.ioctl(sock.fileno(), request, arg))
    except OSError as exc:
        raise OSError(exc.errno, f"{name}: {exc.strerror}") from None
