"""What the data-path thread targets (``fuzz_dtls_thread``, ``fuzz_tls_thread``) share.

Theory of operation.

* Both drive one pipe of ``ocgate._fastpath.Engine`` per input with operations whose kind is the
  tag modulo 16, the spare kinds 13-15 standing for three of the others (:func:`operations`).
* The client's packets come from a source the fuzzer picks (:func:`ip_packet`): the session's
  IPv4 lease or IPv6 /64 (:data:`LEASE`, :data:`LEASE6`), another address, a bad IPv4 length or
  raw bytes, so the thread's source check sees both what it admits and what it hands back.
* After each operation the target waits (:func:`wait_for_thread`) until the thread has handed
  over what its model predicts, polling the TUN peer, ``engine.fileno()`` and the client's socket,
  then compares; a missing item is a finding once :data:`WAIT` seconds have passed.
* This module must not import ``ocgate`` (as ``_harness``): a module imported before the target's
  ``instrument_imports()`` block would carry no coverage feedback.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Iterable, Iterator
from ipaddress import IPv4Address, IPv6Network

import _harness

LEASE = IPv4Address("10.77.0.5")
LEASE6 = IPv6Network("fd00:77:0:5::/64")
OTHER4 = IPv4Address("192.0.2.99").packed
OTHER6 = bytes.fromhex("20010db8000000000000000000000001")
DST4 = IPv4Address("10.77.0.1").packed
WAIT = 3.0
"""Seconds the thread gets to hand over what the model predicts (it takes microseconds)."""


def operations(data: bytes, repeats: dict[int, int]) -> Iterator[tuple[int, int, bytes]]:
    """The input's operations (:func:`_harness.ops`) as ``(kind, tag, payload)``: the kind is the
    tag modulo 16, or the kind ``repeats`` maps it to (13-15 repeat others)."""
    for tag, payload in _harness.ops(data):
        kind = tag % 16
        yield repeats.get(kind, kind), tag, payload


def ip_packet(kind: int, body: bytes) -> bytes:
    """An IP packet around ``body`` from the source ``kind`` picks."""
    kind %= 6
    if kind in (0, 1, 5):
        src = LEASE.packed if kind != 1 else OTHER4
        total = 20 + len(body) + (kind == 5)
        head = bytes((0x45, 0)) + (total & 0xFFFF).to_bytes(2, "big") + bytes(4)
        return head + bytes((64, body[0] if body else 17)) + bytes(2) + src + DST4 + body
    if kind in (2, 3):
        src = LEASE6.network_address.packed[:8] + bytes(7) + b"\x09" if kind == 2 else OTHER6
        head = b"\x60" + bytes(3) + (len(body) & 0xFFFF).to_bytes(2, "big") + b"\x11\x40"
        return head + src + OTHER6 + body
    return body


def wait_for_thread(
    collect: Callable[[], bool],
    fds: Iterable[int],
    *,
    quiet: bool,
    silence: float,
    step: float,
) -> None:
    """Call ``collect()`` (it takes what arrived and says whether all the model predicts has)
    until it says so, or, when ``quiet``, until then nothing arrives on ``fds`` for ``silence``
    seconds; between calls, wait for ``fds`` (``step`` seconds at most). :data:`WAIT` seconds at
    most in all: the caller's comparison then finds what is missing."""
    deadline = time.monotonic() + WAIT
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    while True:
        done = collect()
        if done and not quiet:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if not poller.poll(1000 * (silence if done else min(left, step))) and done:
            return


def short(items: list[bytes] | list[tuple[int, bytes]]) -> str:
    """A few items, cut short, for an assertion's message."""
    shown = [x[:24] if isinstance(x, bytes) else (x[0], x[1][:24]) for x in items[:4]]
    return f"{len(items)} items {shown!r}"
