"""Batches of packets through descriptors that carry one packet per system call.

A TUN device (``IFF_TUN | IFF_NO_PI``) hands over one IP packet per ``read(2)`` and takes one per
``write(2)``; a connected UDP socket does the same with datagrams. The data path moves packets in
batches (one event-loop wake-up, several packets), so these two functions take or give a whole
batch in one call:

* :func:`read_many` reads until the descriptor is empty or ``limit`` packets were read;
* :func:`write_many` writes each packet and drops (does not raise) what the kernel refuses for
  that packet alone — a full queue (``EAGAIN``, ``ENOBUFS``), a malformed packet (``EINVAL``), a
  datagram too large (``EMSGSIZE``), an ICMP error reported for an earlier datagram
  (``ECONNREFUSED``, ``EHOSTUNREACH``, ``ENETUNREACH``), a firewall verdict (``EPERM``) — as a
  congested or filtering link would; anything else (a closed descriptor) raises.

With the compiled ``ocgate._fastpath`` the loops run in C: ``recvmmsg(2)``/``sendmmsg(2)`` for
sockets (one system call per batch), ``read(2)``/``write(2)`` otherwise, one ``bytes`` object per
packet and no other allocation. Without it (or with ``OCGATE_FASTPATH=python`` in the
environment), the same loops run here in Python.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence

__all__ = ["DROPPED_ERRNOS", "READ_SIZE", "read_many", "write_many"]

READ_SIZE = 65536
"""Larger than any packet a TUN device or a UDP socket can hand over (16-bit lengths)."""
DROPPED_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.ENOBUFS,
        errno.EINVAL,
        errno.EMSGSIZE,
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EPERM,
    }
)


def _py_read_many(fd: int, limit: int) -> list[bytes]:
    """Read up to ``limit`` packets; stop when none is waiting.

    :raises OSError: an error other than "nothing waiting" before the first packet (one after
        it ends the batch and is reported by the next call, if the kernel keeps it).
    """
    packets: list[bytes] = []
    read = os.read
    for _ in range(limit):
        try:
            packets.append(read(fd, READ_SIZE))
        except BlockingIOError:
            break
        except OSError:
            if packets:
                break
            raise
    return packets


def _py_write_many(fd: int, packets: Sequence[bytes]) -> int:
    """Write each packet; return how many the kernel took (the others were dropped)."""
    written = 0
    write = os.write
    for packet in packets:
        try:
            write(fd, packet)
        except OSError as exc:
            if exc.errno not in DROPPED_ERRNOS:
                raise
        else:
            written += 1
    return written


read_many: Callable[[int, int], list[bytes]] = _py_read_many
write_many: Callable[[int, Sequence[bytes]], int] = _py_write_many
if os.environ.get("OCGATE_FASTPATH", "").strip().lower() != "python":  # As ocgate.dtls._epoch.
    try:
        from ocgate import _fastpath  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - depends on how the package was built
        pass
    else:
        read_many = _fastpath.read_many
        write_many = _fastpath.write_many
