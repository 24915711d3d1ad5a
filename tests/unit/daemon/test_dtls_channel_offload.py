"""The worker's DTLS channel with its data path on the C thread, against the event-loop channel.

Two channels complete the same handshake (seeded, so their keys are equal) with the test client of
tests/unit/dtls. The *reference* channel takes every client datagram on the event loop
(``datagram_received``, as in test_dtls_channel_fast.py); the *offloaded* one gets a real
:class:`ocgate.daemon._offload.Offload` (the worker's thread, ``ocgate._fastpath.Engine``) and a
socketpair as its steered socket, and another as its TUN device: the test writes the client's
datagrams into the socket, the thread reads them, and what it hands back (the lane) reaches the
channel through the event loop, as in a worker. Packets delivered to the tunnel, counters, drops
and the DPD answers must be the same. AEAD suites only: a CBC state with the test's seeded IV
source stays on the event loop (the thread draws CBC IVs from its own pool), which
``test_cbc_with_its_own_iv_source_stays_on_the_loop`` checks.
"""

from __future__ import annotations

import asyncio
import random
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.daemon import _dtls as channel_module
from ocgate.daemon import _offload
from ocgate.daemon._dtls import DtlsChannel
from ocgate.daemon._offload import Offload, TunnelSide
from ocgate.dtls import DtlsAssociation, LegacyMode, PskMode, _epoch
from tests.unit.daemon.test_dtls_channel_fast import ADDR, MODES, Rig, client_datagrams

pytestmark = pytest.mark.skipif(not _offload.ENABLED, reason="no compiled data-path thread")

LEASE4 = bytes((10, 77, 0, 9))
NO_SOURCE6 = bytes(17)
AEAD = ["psk", "oc-dtls12-aes256-gcm"]


class Steered:
    """A steered socket for the channel: its server end, the thread reads it while lent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent: list[bytes] = []
        self.lent = False
        self.channel: DtlsChannel | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def lend(self) -> None:
        self.lent = True

    def take_back(self) -> None:
        self.lent = False

    def datagram_received(self, data: bytes, addr: object) -> None:
        assert self.channel is not None
        self.channel.datagram_received(data, ADDR)

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.sent.append(data)

    def send_many(self, datagrams: list[bytes]) -> None:
        self.sent += datagrams


class OffloadRig(Rig):
    """A :class:`Rig` whose channel moves its data on the worker's thread."""

    def __init__(self, mode: LegacyMode | PskMode, offload: Offload, sources: bytes) -> None:
        self.udp_server, self.udp_client = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.tun_server, self.tun_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (self.udp_server, self.tun_server, self.tun_peer, self.udp_client):
            sock.setblocking(False)
        self.steered = Steered(self.udp_server)
        self.to_client: list[bytes] = []
        self.tun_lent: list[bool] = []
        side = TunnelSide(
            offload=offload,
            tun_fd=self.tun_server.fileno(),
            sources=(sources, NO_SOURCE6),
            lend_tun=lambda: self.tun_lent.append(True),
            return_tun=lambda: self.tun_lent.append(False),
            to_client=self.to_client.extend,
        )
        super().__init__(mode, offload=side)
        self.sender = self.steered  # type: ignore[assignment]
        self.steered.channel = self.channel

    def close(self) -> None:
        self.channel.close()
        for sock in (self.udp_server, self.udp_client, self.tun_server, self.tun_peer):
            sock.close()


@contextmanager
def seeded(seed: int = 3) -> Iterator[None]:
    rng = random.Random(seed)

    def make(**kwargs: object) -> DtlsAssociation:
        return DtlsAssociation(random_bytes=rng.randbytes, **kwargs)  # type: ignore[arg-type]

    saved = channel_module.DtlsAssociation
    channel_module.DtlsAssociation = make  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        channel_module.DtlsAssociation = saved  # type: ignore[misc]


def _reference(mode_name: str) -> Rig:
    mode = MODES[mode_name]
    with seeded(), _using_c():
        rig = Rig(mode)
        rig.handshake(mode)
    return rig


def _offloaded(mode_name: str, offload: Offload, sources: bytes = b"") -> OffloadRig:
    mode = MODES[mode_name]
    with seeded(), _using_c():
        rig = OffloadRig(mode, offload, sources)
        rig.handshake(mode)
    return rig


@contextmanager
def _using_c() -> Iterator[None]:
    saved = _epoch.DEFAULT[0]
    _epoch.DEFAULT[0] = _epoch.IMPLEMENTATIONS["c"]
    try:
        yield
    finally:
        _epoch.DEFAULT[0] = saved


async def _until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Let the event loop run (it drains the thread's lane) until ``predicate`` holds."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "the thread did not hand everything back"
        await asyncio.sleep(0.002)


def _tun_packets(rig: OffloadRig) -> list[bytes]:
    packets = []
    while select.select([rig.tun_peer], [], [], 0)[0]:
        packets.append(rig.tun_peer.recv(65536))
    return packets


OPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([0, 0, 0, 3, 4, 7, 9]), st.binary(max_size=40)),
        st.tuples(st.just(-1), st.integers(0, 40)),  # replay an earlier datagram
        st.tuples(st.just(-2), st.integers(0, 255)),  # flip a byte of a DATA record
        st.tuples(st.just(-3), st.binary(max_size=30)),  # garbage
        st.tuples(st.just(-4), st.integers(0, 1200)),  # an IPv4 packet from the lease
    ),
    max_size=25,
)


def _admitted(packet: bytes) -> bool:
    """The filter's fast path for a session whose only source is ``LEASE4`` (no IPv6)."""
    if len(packet) < 20 or packet[0] != 0x45:
        return False
    return packet[12:16] == LEASE4 and 20 <= int.from_bytes(packet[2:4]) <= len(packet)


def _ipv4(size: int, source: bytes = LEASE4) -> bytes:
    total = 28 + size
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 17, 0, source, bytes(4))
    return header + struct.pack("!HHHH", 1000, 2000, 8 + size, 0) + bytes(size)


@pytest.mark.parametrize("admit", [False, True], ids=["lane", "admitted"])
@pytest.mark.parametrize("mode", AEAD)
@settings(max_examples=15, deadline=None)
@given(ops=OPS)
def test_the_thread_matches_the_event_loop(
    mode: str, admit: bool, ops: list[tuple[int, object]]
) -> None:
    reference = _reference(mode)

    async def main() -> None:
        offload = Offload.start()
        assert offload is not None
        rig = _offloaded(mode, offload, LEASE4 if admit else b"")
        try:
            assert rig.steered.lent
            assert rig.tun_lent == [True]
            client = reference.client
            datagrams = client_datagrams(client, ops, _ipv4)
            # The last one, a DPD request, comes back through the lane after all the others.
            sentinel = b"\x03" + b"sentinel"
            datagrams.append(client.raw_record(23, 1, sentinel))
            reference.sender.sent.clear()
            rig.steered.sent.clear()
            for datagram in datagrams:
                reference.channel.datagram_received(datagram, ADDR)
                rig.udp_client.send(datagram)
            answered = len(reference.sender.sent)
            await _until(lambda: len(rig.steered.sent) >= answered)
            tun = _tun_packets(rig)
            rig.channel.refresh()
            if admit:  # From the lease: written by the thread; the rest: the channel's.
                assert tun == [p for p in reference.packets if _admitted(p)]
                assert rig.packets == [p for p in reference.packets if not _admitted(p)]
            else:
                assert tun == []
                assert rig.packets == reference.packets
            ch, ref = rig.channel, reference.channel
            assert (ch.rx_packets, ch.rx_bytes, ch.dropped) == (
                ref.rx_packets,
                ref.rx_bytes,
                ref.dropped,
            )
            assert bool(rig.activity) == bool(reference.activity)
            # The same DPD answers, byte for byte (same keys, same sequence numbers).
            assert rig.steered.sent == reference.sender.sent
        finally:
            rig.close()
            offload.close()

    asyncio.run(main())


@pytest.mark.parametrize("mode", AEAD)
def test_tun_packets_reach_the_client_and_oversized_ones_go_to_cstp(mode: str) -> None:
    async def main() -> None:
        offload = Offload.start()
        assert offload is not None
        rig = _offloaded(mode, offload, LEASE4)
        try:
            packets = [_ipv4(i * 37 % 1300) for i in range(40)] + [bytes(1401)]
            for packet in packets:
                rig.tun_peer.send(packet)
            await _until(lambda: rig.to_client == [bytes(1401)])
            deadline = time.monotonic() + 5
            records: list[bytes] = []
            while len(records) < 40 and time.monotonic() < deadline:
                if select.select([rig.udp_client], [], [], 0.05)[0]:
                    records.append(rig.udp_client.recv(65536))
            for record in records:
                rig.client.receive_datagram(record, 0.0)
            assert rig.client.received == [b"\x00" + p for p in packets[:40]]
            rig.channel.refresh()
            assert rig.channel.tx_packets == 40
            assert rig.channel.tx_bytes == sum(map(len, packets[:40]))
            # Closing the channel gives both descriptors back before anything else.
            rig.channel.close()
            assert not rig.steered.lent
            assert rig.tun_lent == [True, False]
            rig.tun_peer.send(packets[0])
            await asyncio.sleep(0.05)
            assert rig.tun_server.recv(65536) == packets[0]  # Nobody else read it.
        finally:
            rig.close()
            offload.close()

    asyncio.run(main())


def test_cbc_with_its_own_iv_source_stays_on_the_loop() -> None:
    async def main() -> None:
        offload = Offload.start()
        assert offload is not None
        rig = _offloaded("aes256-sha", offload, LEASE4)
        try:
            assert not rig.steered.lent
            # The tunnel lends its device before the pipe is asked for (its own TLS pipe lets go
            # of it first) and has it back at once when the state cannot go.
            assert rig.tun_lent == [True, False]
            assert rig.channel.usable(time.monotonic())
        finally:
            rig.close()
            offload.close()

    asyncio.run(main())
