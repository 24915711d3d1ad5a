"""Point-to-point TUN devices, one per client, like ocserv (ocserv-compatibility §4.6 ``device``).

Theory of operation
-------------------
* :func:`open_tun` opens ``/dev/net/tun`` and issues ``TUNSETIFF`` with ``IFF_TUN | IFF_NO_PI`` and
  the name template ``<prefix>%d``, so the kernel picks the first free ``vpns0``, ``vpns1``, …; the
  name the kernel chose is read back from the ioctl result. The descriptor is non-blocking and
  close-on-exec. The device is not persistent: closing the descriptor deletes the link, so
  :func:`remove_tun` only closes (it never deletes a link by name, which could hit a device that a
  newer tunnel has just been given under the same name).
* :func:`configure_tun` talks rtnetlink through pyroute2 (the only module that uses it). Each call
  opens its own ``IPRoute`` and closes it before returning, so it is safe to run in any thread (the
  daemon calls it through ``asyncio.to_thread``). Netlink failures are raised as :class:`OSError`
  with the kernel's errno.
* One packet per ``read()``/``write()``: with ``IFF_NO_PI`` the payload is the bare IP packet.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import struct
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from types import TracebackType

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ocgate.errors import ConfigError

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

    :raises OSError: no such device, or netlink refused a change (``errno`` is the kernel's).
    """
    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise OSError(errno.ENODEV, f"no such device: {name}")
            index = found[0]
            ipr.link("set", index=index, mtu=mtu)
            if local4 is not None:
                ipr.addr(
                    "add",
                    index=index,
                    local=str(local4),
                    address=str(peer4 if peer4 is not None else local4),
                    prefixlen=32,
                )
            if local6 is not None:
                ipr.addr("add", index=index, address=str(local6), prefixlen=128)
            ipr.link("set", index=index, state="up")
            if peer6 is not None:
                ipr.route("add", dst=str(peer6), oif=index)
    except NetlinkError as exc:
        raise OSError(exc.code, f"{name}: {exc.args[1] if len(exc.args) > 1 else exc}") from exc
