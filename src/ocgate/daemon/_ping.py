"""``ping-leases``: does an address answer a ping? Run by the supervisor for the auth service.

ocserv's main process (root) sends an ICMP echo to each address it is about to lease
(``src/icmp-ping.c``) and skips an address that answers: a host that squats on a pool address
would otherwise lose its traffic to the client. In ocgate the address is chosen by sec-mod, which
runs as ``nobody`` without ``CAP_NET_RAW``; an unprivileged ICMP datagram socket would need the
gid in ``net.ipv4.ping_group_range`` (``1 0`` — nobody — on many hosts and containers). So sec-mod
asks the supervisor (:class:`~ocgate.ipc.messages.PingAddress`), which holds ``CAP_NET_RAW`` as
root, and the supervisor runs the system ``ping(8)`` (iputils) rather than reading ICMP replies
itself: it never parses network bytes, and only the exit status crosses back (0 = a reply came).

One echo with a one-second wait (ocserv sends two echoes, to the client and server ends, and
waits up to ``PING_TIMEOUT``, 3 s); a CONNECT with a new lease waits that long per address family.
A missing ``ping`` binary or any other failure counts as "no answer", so the lease goes ahead as
without ``ping-leases``; a missing binary is logged once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import subprocess

__all__ = ["PING_WAIT", "address_answers"]

log = logging.getLogger("ocgate.ping")

PING_WAIT = 1
"""Seconds to wait for the echo reply."""

_warned = False


async def address_answers(address: str) -> bool:
    """Whether ``address`` (an IPv4 or IPv6 literal) answers one ICMP echo within ``PING_WAIT``.

    :raises ValueError: ``address`` is not an IP address literal.
    """
    global _warned
    ip = ipaddress.ip_address(address)  # Validated before it reaches an argv.
    ping = shutil.which("ping")
    if ping is None:
        if not _warned:
            log.warning("event=ping-unavailable reason='no ping(8) in PATH; ping-leases is off'")
            _warned = True
        return False
    argv = [ping, "-n", "-q", "-c", "1", "-W", str(PING_WAIT), f"-{ip.version}", str(ip)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        status = await asyncio.wait_for(proc.wait(), PING_WAIT + 4)
    except (OSError, TimeoutError) as exc:
        log.warning("event=ping-failed address=%s reason=%r", ip, str(exc))
        return False
    return status == 0
