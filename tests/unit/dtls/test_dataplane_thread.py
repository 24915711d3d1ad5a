"""The C data-path thread (``ocgate._fastpath.Engine``, src/ocgate/_dataplane.c) against the
Python code it stands in for.

The thread works on any descriptors, so an AF_UNIX SOCK_DGRAM socketpair plays the connected UDP
socket and another the TUN device (one packet per read or write, non-blocking on the thread's side
as a real TUN device is). The client is a pure-Python :class:`~ocgate.dtls._epoch.PyEpochState`
with the mirrored key block; the server's state is the compiled one (``os.urandom``, as attach
requires). Every wait is a short poll on the test's ends of the pairs or on ``engine.fileno()``
with a deadline.

What each group holds the thread to (the Python reference it mirrors):

* UDP→TUN: a fresh authentic DATA record from the session's address reaches the TUN device byte for
  byte, as ``EpochState.open_batch_untrusted`` followed by ``PacketFilter.admit_untrusted``'s fast
  path would deliver it; ``take_stats`` counts it and restarts; the idle clock moves exactly when
  ``ocgate.cstp.counts_for_idle_untrusted`` says so.
* The lane: everything else comes back byte-exact, in the kind the event loop's reference path
  needs: OPENED (an authentic non-DATA payload: what ``open_batch_untrusted`` returns as
  ``payload``), RX (a packet ``PacketFilter(...).fast_sources()`` does not admit: the full filter
  decides), RAW (the datagram ``open_batch_untrusted`` leaves to the reference path).
* TUN→UDP: what ``EpochState.seal_data(b"\\x00", ...)`` would send (the client opens it), with the
  same write sequence Python uses; TX (CSTP carries it) when DTLS must not (the MTU, ``tx_ok``,
  switch-to-tcp-timeout, as ``DtlsChannel.usable``/``send_packets`` decide on the event loop;
  exhausted sequence numbers, where ``seal_data`` raises). A burst sent with UDP GSO (a real
  loopback UDP socket) reaches the client one datagram per record, as ``seal_data``'s list would.
* The UDP socket's errors: one ICMP error is not the end of the association, as on the event loop
  (asyncio's datagram transport reports it and reads on); run in a network namespace of its own.
* configure(): a rekey's new state takes over at once; the old epoch's records are the reference
  path's.
* close(): the descriptors are the caller's again when it returns (``OffloadedPipe.close``'s
  promise); a closed engine has no thread and refuses pipes.
* The lane's bounds (``LANE_MAX_ITEMS``, ``LANE_MAX_BYTES``): a flood costs counted drops, never
  memory or the thread.
* Property: datagram by datagram (and all in one batch), the same verdicts and TUN packets as the
  pure-Python model, and the same replay window afterwards (``test_dtls_fastpath.py`` holds the
  model to the reference path).
* The shared state under ``fp_lock``: the event loop's seal/seal_data/open on an attached state
  while the thread runs never reuses a write sequence number (nor a CBC IV) and never accepts a
  record twice.

``test_an_icmp_error_does_not_stop_the_thread_reading`` found that an ICMP error whose errno was not
one of the "drop this packet" errors (EACCES, ENOPROTOOPT) made the thread stop reading the
client's socket; fixed the same day (``udp_ready`` now stops only for a descriptor it cannot read).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.cstp import counts_for_idle_untrusted
from ocgate.daemon import _offload
from ocgate.dtls import DTLS_CIPHERSUITES, CipherSuite, DtlsSuite, ProtocolVersion, _epoch
from ocgate.dtls._record import MAX_PLAINTEXT, SEQ_MASK, encode_record, records_untrusted
from ocgate.dtls._suites import KeyBlock, derive_key_block, protections
from ocgate.errors import BadRecord
from ocgate.ipfilter import PacketFilter

try:
    from ocgate import _fastpath  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on how the package was built
    _fastpath = None

pytestmark = pytest.mark.skipif(
    _fastpath is None or not hasattr(_fastpath, "Engine") or "c" not in _epoch.IMPLEMENTATIONS,
    reason="ocgate._fastpath has no Engine (or is disabled)",
)

SUITES = {
    "psk-aes256-gcm": DtlsSuite(
        "PSK-AES256-GCM", ProtocolVersion.DTLS1_2, CipherSuite.TLS_PSK_WITH_AES_256_GCM_SHA384
    ),
    "oc-dtls12-aes128-gcm": DTLS_CIPHERSUITES["OC-DTLS1_2-AES128-GCM"][0],
    "oc2-chacha20": DTLS_CIPHERSUITES["OC2-DTLS1_2-CHACHA20-POLY1305"][0],
    "dtls09-aes256-sha": DTLS_CIPHERSUITES["AES256-SHA"][0],
}
LEASE4 = IPv4Address("10.20.0.7")
LEASE6 = IPv6Network("fd00:20:0:7::/64")
OTHER4 = IPv4Address("10.20.0.8")
OTHER6 = IPv6Network("fd00:20:0:8::/64")
MTU = 1400
WAIT = 5.0
LANE_MAX_ITEMS = 4096
LANE_MAX_BYTES = 8 * 1024 * 1024
PIPE_LANE_MAX = 512
KINDS: dict[int, str] = {}
if _fastpath is not None and hasattr(_fastpath, "Engine"):
    KINDS = {
        _fastpath.KIND_RAW: "raw",
        _fastpath.KIND_OPENED: "opened",
        _fastpath.KIND_RX: "rx",
        _fastpath.KIND_TX: "tx",
    }


# -- packets ----------------------------------------------------------------------------------


def ipv4(
    src: IPv4Address = LEASE4,
    proto: int = 17,
    body: bytes = b"\x30\x39\x00\x35\x00\x0cdata",
    *,
    total: int | None = None,
    options: bytes = b"",
) -> bytes:
    """An IPv4 packet (checksum left zero: nothing on this path reads it)."""
    ihl = 5 + len(options) // 4
    length = 20 + len(options) + len(body) if total is None else total
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, length, 1, 0, 64, proto, 0, src.packed, bytes((10, 0, 0, 1))
    )
    return header + options + body


def ipv6(
    src: IPv6Network = LEASE6,
    next_header: int = 6,
    body: bytes = bytes(20),
    *,
    hop_by_hop_to: int | None = None,
) -> bytes:
    """An IPv6 packet from ``src``'s first host, behind a hop-by-hop header when asked."""
    if hop_by_hop_to is not None:
        body = bytes((hop_by_hop_to, 0, 5, 2, 0, 0, 1, 0)) + body  # Router alert, padded to 8.
        next_header = 0
    source = (src.network_address + 1).packed
    header = struct.pack(
        "!IHBB16s16s", 6 << 28, len(body), next_header, 64, source, bytes(15) + b"\x01"
    )
    return header + body


# -- the rig ----------------------------------------------------------------------------------


def key_block(suite: DtlsSuite, master: bytes = bytes(48)) -> KeyBlock:
    return derive_key_block(suite, master, bytes(range(32)), bytes(range(32, 64)))


def c_state(suite: DtlsSuite, keys: KeyBlock, epoch: int = 1) -> Any:
    return _epoch.IMPLEMENTATIONS["c"](suite, keys, os.urandom, epoch)


@contextlib.contextmanager
def udp_gso(on: bool | None) -> Iterator[None]:
    """Pipes attached inside send bursts with UDP GSO or not (``OCGATE_UDP_GSO``, read by attach;
    ``None``: the default, whatever the environment says)."""
    saved = os.environ.get("OCGATE_UDP_GSO")
    if on is None:
        os.environ.pop("OCGATE_UDP_GSO", None)
    else:
        os.environ["OCGATE_UDP_GSO"] = "on" if on else "off"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("OCGATE_UDP_GSO", None)
        else:
            os.environ["OCGATE_UDP_GSO"] = saved


class Rig:
    """One pipe on ``engine``: the test's ends of both pairs, the client and the server state."""

    def __init__(
        self,
        engine: Any,
        suite: DtlsSuite,
        *,
        state: object = "c",
        sources: tuple[bytes, bytes] | None = None,
        tx_ok: bool = True,
        mtu: int = MTU,
        switch_after: float = 0.0,
        udp_pair: tuple[socket.socket, socket.socket] | None = None,
        tun_pair: tuple[socket.socket, socket.socket] | None = None,
        gso: bool | None = None,
        before_attach: Callable[[Rig], None] | None = None,
    ) -> None:
        self.engine = engine
        self.suite = suite
        self.keys = key_block(suite)
        self.server: Any = c_state(suite, self.keys) if state == "c" else state
        self.model = _epoch.PyEpochState(suite, self.keys, os.urandom)
        self.client = _epoch.PyEpochState(suite, self.keys.swapped(), os.urandom)
        self.client_read, self.client_write = protections(suite, self.keys.swapped(), os.urandom)
        self.filter = PacketFilter(ipv4=LEASE4, ipv6=LEASE6)
        self.udp_peer, self.udp = udp_pair or socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.tun_peer, self.tun = tun_pair or socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for thread_end in (self.udp, self.tun):
            thread_end.setblocking(False)
        for peer in (self.udp_peer, self.tun_peer):
            peer.settimeout(WAIT)
        if before_attach is not None:
            before_attach(self)
        src4, src6 = self.filter.fast_sources() if sources is None else sources
        with udp_gso(gso):
            self.pipe = engine.attach(
                self.udp.fileno(),
                self.tun.fileno(),
                src4,
                src6,
                self.server,
                tx_ok,
                mtu,
                switch_after,
            )

    def record(self, plaintext: bytes, content_type: int = 23) -> bytes:
        """The client's next record (the sequence clamped into range: then a replay)."""
        self.client.write_seq = min(self.client.write_seq, SEQ_MASK)
        return self.client.seal(content_type, plaintext)

    def send(self, datagram: bytes) -> tuple[str, bytes]:
        """Send one datagram from the client: where the thread put it (``tun`` or a lane kind)."""
        self.udp_peer.send(datagram)
        return self.answer(self.tun_peer, "tun")

    def from_tun(self, packet: bytes) -> tuple[str, bytes]:
        """One packet from the TUN device: ``udp`` and the record, or a lane kind."""
        self.tun_peer.send(packet)
        return self.answer(self.udp_peer, "udp")

    def answer(self, peer: socket.socket, name: str) -> tuple[str, bytes]:
        lane = self.engine.fileno()
        deadline = time.monotonic() + WAIT
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([peer, lane], [], [], remaining)
            if peer in ready:
                return name, peer.recv(65536)
            if lane in ready:
                items = self.engine.drain()
                if items:
                    assert len(items) == 1, items
                    ((pipe_id, kind, data),) = items
                    assert pipe_id == self.pipe.id
                    return KINDS[kind], data
        raise AssertionError("the thread did not answer")

    def opened_by_client(self, record: bytes) -> tuple[int, bytes]:
        """``(epoch_seq, plaintext)`` of one record from the server, as the client reads it."""
        (parsed,) = records_untrusted(record)
        assert (parsed.content_type, parsed.version) == (23, int(self.suite.version))
        plaintext = self.client_read.open(parsed.epoch_seq, 23, parsed.version, parsed.fragment)
        return parsed.epoch_seq, plaintext

    def model_verdict(self, datagram: bytes) -> tuple[str, bytes]:
        """What the pure-Python path makes of one datagram (the model state's window moves)."""
        packets, _, payload = self.model.open_batch_untrusted([datagram], 0, 0)
        if packets:
            (packet,) = packets
            fast = [packet]
            return ("tun" if self.filter.admit_untrusted(fast) is fast else "rx"), packet
        if payload is not None:
            return "opened", payload
        return "raw", datagram

    def close(self) -> None:
        self.pipe.close()
        for s in (self.udp_peer, self.udp, self.tun_peer, self.tun):
            s.close()


@contextlib.contextmanager
def running_engine() -> Iterator[Any]:
    engine = _fastpath.Engine()
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def engine() -> Iterator[Any]:
    with running_engine() as e:
        yield e


@pytest.fixture
def rigs(engine: Any) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(suite: DtlsSuite, **kw: Any) -> Rig:
        rig = Rig(engine, suite, **kw)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


def test_kinds_are_the_event_loops() -> None:
    assert (_fastpath.KIND_RAW, _fastpath.KIND_OPENED, _fastpath.KIND_RX, _fastpath.KIND_TX) == (
        _offload.KIND_RAW, _offload.KIND_OPENED, _offload.KIND_RX, _offload.KIND_TX,
    )  # fmt: skip


# -- 1. UDP -> TUN ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SUITES))
def test_data_reaches_tun_unchanged_and_is_counted(rigs: Callable[..., Rig], name: str) -> None:
    rig = rigs(SUITES[name])
    _, _, _, _, _, attached_at, idle_before, _ = rig.pipe.take_stats()
    assert idle_before == 0.0
    packets = [ipv4(), ipv6(), ipv4(body=bytes(range(256)) * 5)]
    start = time.monotonic()
    for packet in packets:
        assert rig.send(rig.record(b"\x00" + packet)) == ("tun", packet)
    rx_packets, rx_bytes, tx_packets, tx_bytes, dropped, last_rx, idle, refused = (
        rig.pipe.take_stats()
    )
    assert (rx_packets, rx_bytes) == (3, sum(map(len, packets)))
    assert (tx_packets, tx_bytes, dropped, refused) == (0, 0, 0, 0)
    assert last_rx >= start > attached_at
    assert idle >= start
    assert rig.pipe.take_stats() == (0, 0, 0, 0, 0, last_rx, idle, 0)  # Counters restart.


IDLE_CASES = {
    "udp4": (ipv4(proto=17), True),
    "tcp4": (ipv4(proto=6), True),
    "icmp4": (ipv4(proto=1), False),
    "igmp4": (ipv4(proto=2), False),
    "tcp6": (ipv6(next_header=6), True),
    "icmp6": (ipv6(next_header=58), False),
    "mld-behind-hop-by-hop": (ipv6(hop_by_hop_to=58), False),
    "udp-behind-hop-by-hop": (ipv6(hop_by_hop_to=17), True),
}


@pytest.mark.parametrize("name", ["psk-aes256-gcm", "dtls09-aes256-sha"])
def test_idle_clock_moves_as_counts_for_idle_says(rigs: Callable[..., Rig], name: str) -> None:
    rig = rigs(SUITES[name])
    for case, (packet, counts) in IDLE_CASES.items():
        assert counts_for_idle_untrusted(packet) is counts, case  # The reference agrees.
        before = rig.pipe.take_stats()[6]
        start = time.monotonic()
        assert rig.send(rig.record(b"\x00" + packet)) == ("tun", packet), case
        _, _, _, _, _, last_rx, idle, _ = rig.pipe.take_stats()
        assert last_rx >= start, case
        assert (idle >= start) if counts else (idle == before), case


def test_idle_clock_moves_for_packets_sent_too(rigs: Callable[..., Rig]) -> None:
    rig = rigs(SUITES["psk-aes256-gcm"])
    before = rig.pipe.take_stats()[6]
    assert rig.from_tun(ipv4(proto=1))[0] == "udp"
    assert rig.pipe.take_stats()[6] == before
    start = time.monotonic()
    assert rig.from_tun(ipv4(proto=6))[0] == "udp"
    assert rig.pipe.take_stats()[6] >= start


# -- 2. the lane --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SUITES))
def test_authentic_payloads_that_are_not_data_come_back_opened(
    rigs: Callable[..., Rig], name: str
) -> None:
    rig = rigs(SUITES[name])
    for payload in (b"\x03dpd-request", b"\x04", b"\x07", b"", b"\x08compressed"):
        datagram = rig.record(payload)
        assert rig.model_verdict(datagram) == ("opened", payload)
        start = time.monotonic()
        assert rig.send(datagram) == ("opened", payload)
        rx_packets, _, _, _, _, last_rx, _, _ = rig.pipe.take_stats()
        assert rx_packets == 0
        assert last_rx >= start  # The client was heard.
        assert rig.send(datagram) == ("raw", datagram)  # Marked: now a replay.


def test_packets_the_tun_device_refuses_are_dropped_and_counted(rigs: Callable[..., Rig]) -> None:
    # Nobody reads the "TUN device" and its send buffer is the smallest the kernel allows: once
    # that is full it refuses writes with EAGAIN, as a TUN device refuses what it cannot take.
    rig = rigs(SUITES["psk-aes256-gcm"])
    rig.tun.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
    sent = 64
    for n in range(sent):
        rig.udp_peer.send(rig.record(b"\x00" + ipv4(body=n.to_bytes(2, "big"))))
    deadline = time.monotonic() + WAIT
    rx_packets = refused = 0
    while rx_packets < sent and time.monotonic() < deadline:
        stats = rig.pipe.take_stats()
        rx_packets, refused = rx_packets + stats[0], refused + stats[7]
        select.select([], [], [], 0.01)
    delivered = 0
    rig.tun_peer.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while rig.tun_peer.recv(65536):
            delivered += 1
    assert rx_packets == sent
    assert refused > 0
    assert delivered + refused == sent


RX_PACKETS = {
    "spoofed-ipv4": ipv4(OTHER4),
    "ipv4-options": ipv4(options=b"\x01\x01\x01\x00"),
    "ipv4-total-too-long": ipv4(total=200),
    "ipv4-total-too-short": ipv4(total=19),
    "ipv4-short": ipv4()[:19],
    "ipv6-outside-prefix": ipv6(OTHER6),
    "ipv6-payload-too-long": ipv6()[:50],
    "not-ip": b"\x12\x34\x56",
    "empty": b"",
}


@pytest.mark.parametrize("name", list(SUITES))
def test_packets_the_fast_filter_refuses_come_back_rx(rigs: Callable[..., Rig], name: str) -> None:
    rig = rigs(SUITES[name])
    for case, packet in RX_PACKETS.items():
        fast = [packet]
        assert rig.filter.admit_untrusted(fast) is not fast, case  # The filter's fast path too.
        assert rig.send(rig.record(b"\x00" + packet)) == ("rx", packet), case
    assert rig.pipe.take_stats()[:2] == (0, 0)


@pytest.mark.parametrize(
    ("ipv4_lease", "ipv6_lease", "packet", "where"),
    [
        (None, LEASE6, ipv4(), "rx"),  # src4 = b"": no IPv4 source is the client's.
        (None, LEASE6, ipv6(), "tun"),
        (LEASE4, None, ipv6(), "rx"),  # src6 = 17 bytes: none.
        (LEASE4, None, ipv4(), "tun"),
        (LEASE4, IPv6Network("fd00:20::/60"), ipv6(), "rx"),  # Not byte-aligned: full path.
    ],
)
def test_sources_are_the_filters_fast_sources(
    rigs: Callable[..., Rig],
    ipv4_lease: IPv4Address | None,
    ipv6_lease: IPv6Network | None,
    packet: bytes,
    where: str,
) -> None:
    flt = PacketFilter(ipv4=ipv4_lease, ipv6=ipv6_lease)
    sources = flt.fast_sources()
    fast = [packet]
    assert (flt.admit_untrusted(fast) is fast) is (where == "tun")
    rig = rigs(SUITES["psk-aes256-gcm"], sources=sources)
    assert rig.send(rig.record(b"\x00" + packet)) == (where, packet)


def _raw_cases(rig: Rig) -> dict[str, bytes]:
    """Datagrams the thread must leave to the reference path, built in order (some mark seqs)."""
    version = int(rig.suite.version)
    rig.client.write_seq = 500
    assert rig.send(rig.record(b"\x00" + ipv4())) == ("tun", ipv4())
    rig.client.write_seq = 480
    good = rig.record(b"\x00" + ipv4())
    assert rig.send(good) == ("tun", ipv4())  # In the window, behind the top: then a replay.
    rig.client.write_seq = 400
    behind = rig.record(b"\x00" + ipv4())
    rig.client.write_seq = 600
    flipped = bytearray(rig.record(b"\x00" + ipv4()))
    flipped[-1] ^= 1
    other_epoch = _epoch.PyEpochState(rig.suite, rig.keys.swapped(), os.urandom, 2)
    version_bytes = (0xFEFF if version == 0xFEFD else 0xFEFD).to_bytes(2, "big")
    wrong_version = bytearray(rig.record(b"\x00" + ipv4()))
    wrong_version[1:3] = version_bytes
    long_length = bytearray(rig.record(b"\x00" + ipv4()))
    long_length[11:13] = (len(long_length) - 12).to_bytes(2, "big")
    short_length = bytearray(rig.record(b"\x00" + ipv4()))
    short_length[11:13] = (len(short_length) - 14).to_bytes(2, "big")
    big_seq = (1 << 48) | 700
    oversize = encode_record(
        23, version, big_seq, rig.client_write.seal(big_seq, 23, version, bytes(MAX_PLAINTEXT + 1))
    )
    return {
        "bad-mac": bytes(flipped),
        "replay": good,
        "far-behind": behind,
        "other-epoch": other_epoch.seal(23, b"\x00" + ipv4()),
        "other-version": bytes(wrong_version),
        "length-too-long": bytes(long_length),
        "length-too-short": bytes(short_length),
        "two-records": rig.record(b"\x00" + ipv4()) + rig.record(b"\x00" + ipv4()),
        "handshake": rig.record(b"\x14\x00\x00\x0c", 22),
        "alert": rig.record(b"\x01\x00", 21),
        "change-cipher-spec": rig.record(b"\x01", 20),
        "truncated-header": rig.record(b"\x00" + ipv4())[:12],
        "oversize": oversize,
        "empty": b"",
        "garbage": os.urandom(40),
    }


@pytest.mark.parametrize("name", list(SUITES))
def test_what_does_not_open_comes_back_raw(rigs: Callable[..., Rig], name: str) -> None:
    rig = rigs(SUITES[name])
    for case, datagram in _raw_cases(rig).items():
        assert rig.send(datagram) == ("raw", datagram), case
    # Nothing of it moved the window: the next fresh record still goes through.
    rig.client.write_seq = 501
    assert rig.send(rig.record(b"\x00" + ipv6())) == ("tun", ipv6())
    assert rig.pipe.take_stats()[0] == 3


def test_without_a_state_everything_goes_to_the_lane(rigs: Callable[..., Rig]) -> None:
    rig = rigs(SUITES["psk-aes256-gcm"], state=None)
    datagram = rig.record(b"\x00" + ipv4())
    assert rig.send(datagram) == ("raw", datagram)
    assert rig.from_tun(ipv4()) == ("tx", ipv4())
    assert rig.pipe.take_stats()[:5] == (0, 0, 0, 0, 0)


def test_attach_refuses_what_must_stay_in_python(engine: Any) -> None:
    suite, cbc = SUITES["psk-aes256-gcm"], SUITES["dtls09-aes256-sha"]
    keys = key_block(suite)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        # A CBC state's IVs must come from its own random_bytes (a test's vectors): Python's.
        own_random = _epoch.IMPLEMENTATIONS["c"](cbc, key_block(cbc), lambda n: bytes(n))
        python_state = _epoch.PyEpochState(suite, keys, os.urandom)
        for state, error, match in [
            (own_random, ValueError, "own random_bytes"),
            (python_state, TypeError, "EpochState or None"),
        ]:
            with pytest.raises(error, match=match):
                engine.attach(a.fileno(), b.fileno(), b"", bytes(17), state, True, MTU, 0.0)
        for src4, src6 in [(b"abc", bytes(17)), (b"", bytes(18))]:
            with pytest.raises(ValueError, match="src4 is 0 or 4 bytes"):
                engine.attach(a.fileno(), b.fileno(), src4, src6, None, True, MTU, 0.0)
        with pytest.raises(OSError, match="Bad file descriptor"):
            engine.attach(a.fileno(), 999_999, b"", bytes(17), None, True, MTU, 0.0)


# -- 3. TUN -> UDP ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SUITES))
def test_tun_packets_go_to_the_client_as_one_record(rigs: Callable[..., Rig], name: str) -> None:
    rig = rigs(SUITES[name])
    packets = [ipv4(), ipv6(), bytes(MTU), b"\x45"]
    for seq, packet in enumerate(packets):
        where, record = rig.from_tun(packet)
        assert where == "udp"
        assert rig.opened_by_client(record) == ((1 << 48) | seq, b"\x00" + packet)
    _, _, tx_packets, tx_bytes, dropped, _, _, _ = rig.pipe.take_stats()
    assert (tx_packets, tx_bytes, dropped) == (4, sum(map(len, packets)), 0)
    assert rig.from_tun(bytes(MTU + 1)) == ("tx", bytes(MTU + 1))  # Over the MTU: CSTP's.
    assert rig.pipe.take_stats()[2] == 0


@pytest.mark.parametrize("name", ["oc-dtls12-aes128-gcm", "dtls09-aes256-sha"])
def test_sequence_numbers_are_shared_with_python(rigs: Callable[..., Rig], name: str) -> None:
    rig = rigs(SUITES[name])
    seqs = []
    for i in range(3):
        (record,) = rig.server.seal_data(b"\x00", [b"python %d" % i])
        seqs.append(rig.opened_by_client(record))
        where, record = rig.from_tun(ipv4(body=b"thread %d" % i))
        assert where == "udp"
        seqs.append(rig.opened_by_client(record))
        seqs.append(rig.opened_by_client(rig.server.seal(23, b"\x03dpd")))
    assert [epoch_seq for epoch_seq, _ in seqs] == [(1 << 48) | s for s in range(9)]
    assert rig.server.write_seq == 9
    rig.server.write_seq = 1000  # Python moves it: the thread follows.
    where, record = rig.from_tun(ipv4())
    assert rig.opened_by_client(record) == ((1 << 48) | 1000, b"\x00" + ipv4())


def test_tx_not_ok_sends_over_cstp(rigs: Callable[..., Rig]) -> None:
    rig = rigs(SUITES["psk-aes256-gcm"], tx_ok=False)
    assert rig.from_tun(ipv4()) == ("tx", ipv4())
    assert rig.send(rig.record(b"\x00" + ipv6())) == ("tun", ipv6())  # Receiving still works.
    rig.pipe.configure(rig.server, True, MTU, 0.0)
    assert rig.from_tun(ipv4())[0] == "udp"
    rig.pipe.configure(rig.server, True, 100, 0.0)
    assert rig.from_tun(ipv4(body=bytes(100))) == ("tx", ipv4(body=bytes(100)))
    assert rig.server.write_seq == 1


def test_switch_to_tcp_timeout(rigs: Callable[..., Rig]) -> None:
    switch_after = 0.5
    rig = rigs(SUITES["psk-aes256-gcm"], switch_after=switch_after)
    attached = rig.pipe.take_stats()[5]
    assert rig.from_tun(ipv4())[0] == "udp"  # Heard at attach.
    deadline = attached + switch_after
    while time.monotonic() <= deadline:
        select.select([], [], [], deadline - time.monotonic() + 0.01)
    assert rig.from_tun(ipv4()) == ("tx", ipv4())  # Not heard within it: CSTP.
    assert rig.send(rig.record(b"\x03")) == ("opened", b"\x03")  # A DPD: heard again.
    where, record = rig.from_tun(ipv4())
    assert where == "udp"
    assert rig.opened_by_client(record) == ((1 << 48) | 1, b"\x00" + ipv4())


@pytest.mark.parametrize("gso", [None, False], ids=["gso-default", "gso-off"])
@pytest.mark.parametrize("name", ["psk-aes256-gcm", "oc2-chacha20", "dtls09-aes256-sha"])
def test_a_burst_reaches_a_udp_client_one_datagram_per_record(
    engine: Any, name: str, gso: bool | None
) -> None:
    """A real connected UDP socket on loopback (UDP GSO by default, or OCGATE_UDP_GSO=off): a
    burst the thread reads in one batch arrives as one datagram per record, in order, each
    opening to its packet."""
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (client, server):
        s.bind(("127.0.0.1", 0))
    client.connect(server.getsockname())
    server.connect(client.getsockname())
    client.settimeout(WAIT)
    sizes = [100] * 20 + [50] + [100] * 10 + [700] * 9 + [1300] * 3 + [20]
    packets = [ipv4(body=bytes([i]) * size) for i, size in enumerate(sizes)]
    # Queued before the thread sees the TUN device: one batch.
    tun_peer, tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for packet in packets:
        tun_peer.send(packet)
    rig = Rig(engine, SUITES[name], udp_pair=(client, server), tun_pair=(tun_peer, tun), gso=gso)
    try:
        for seq, packet in enumerate(packets):
            assert rig.opened_by_client(client.recv(65536)) == ((1 << 48) | seq, b"\x00" + packet)
        assert not _readable(client, 0.05)
        _, _, tx_packets, tx_bytes, dropped, _, _, _ = rig.pipe.take_stats()
        assert (tx_packets, tx_bytes, dropped) == (len(packets), sum(sizes) + 20 * len(sizes), 0)
        # And one at a time afterwards.
        assert rig.from_tun(ipv6())[0] == "udp"
    finally:
        rig.close()


def test_a_burst_to_a_socket_that_is_not_udp_stays_one_datagram_per_record(engine: Any) -> None:
    """UDP GSO only where the socket is UDP: an AF_UNIX socket ignores UDP_SEGMENT and would
    carry the burst as one datagram (it did, before attach checked SO_PROTOCOL)."""
    packets = [ipv4(body=bytes([i]) * 100) for i in range(8)]
    tun_peer, tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for packet in packets:
        tun_peer.send(packet)
    rig = Rig(engine, SUITES["psk-aes256-gcm"], tun_pair=(tun_peer, tun), gso=None)
    try:
        got = [rig.udp_peer.recv(65536) for _ in packets[:1]]
        while _readable(rig.udp_peer, 0.2):
            got.append(rig.udp_peer.recv(65536))
        assert rig.pipe.take_stats()[2:5] == (8, 8 * 120, 0)
        assert len(got) == len(packets)
        assert [rig.opened_by_client(d)[1] for d in got] == [b"\x00" + p for p in packets]
    finally:
        rig.close()


@pytest.mark.parametrize("name", ["psk-aes256-gcm", "dtls09-aes256-sha"])
def test_exhausted_sequence_numbers_send_over_cstp(rigs: Callable[..., Rig], name: str) -> None:
    rig = rigs(SUITES[name])
    rig.server.write_seq = SEQ_MASK
    where, record = rig.from_tun(ipv4())
    assert where == "udp"
    assert rig.opened_by_client(record) == ((1 << 48) | SEQ_MASK, b"\x00" + ipv4())
    assert rig.from_tun(ipv6()) == ("tx", ipv6())  # As seal_data raises LocalProtocolError.
    assert rig.pipe.take_stats()[2:5] == (1, len(ipv4()), 0)


def test_pipes_keep_to_their_own_state_and_sources(rigs: Callable[..., Rig]) -> None:
    suite = SUITES["oc2-chacha20"]
    first = rigs(suite)
    second = rigs(suite, sources=PacketFilter(ipv4=OTHER4, ipv6=OTHER6).fast_sources())
    assert first.pipe.id != second.pipe.id
    assert first.send(first.record(b"\x00" + ipv4())) == ("tun", ipv4())
    assert second.send(second.record(b"\x00" + ipv4())) == ("rx", ipv4())  # Not its source.
    assert second.send(second.record(b"\x00" + ipv4(OTHER4))) == ("tun", ipv4(OTHER4))
    other_keys = key_block(suite, master=bytes([9]) * 48)
    stranger = _epoch.PyEpochState(suite, other_keys.swapped(), os.urandom)
    foreign = stranger.seal(23, b"\x00" + ipv4())
    assert first.send(foreign) == ("raw", foreign)
    assert first.pipe.take_stats()[0] == 1
    assert second.pipe.take_stats()[0] == 1


def _icmp_probe(reject: str) -> str:
    """Inside a fresh network namespace (``unshare -n``, root): the path answers one record the
    thread sends with an ICMP error (an nftables reject on loopback), then the client sends a
    record. Returns what became of it: ``delivered``, or ``not-read`` (the thread stopped
    watching the socket)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    family, host = (socket.AF_INET6, "::1") if "icmpv6" in reject else (socket.AF_INET, "127.0.0.1")
    client, server = (
        socket.socket(family, socket.SOCK_DGRAM),
        socket.socket(family, socket.SOCK_DGRAM),
    )
    for s in (client, server):
        s.bind((host, 0))
    client.connect(server.getsockname())
    server.connect(client.getsockname())
    port = client.getsockname()[1]
    with running_engine() as engine:
        rig = Rig(engine, SUITES["psk-aes256-gcm"], udp_pair=(client, server))
        try:
            assert rig.send(rig.record(b"\x00" + ipv4())) == ("tun", ipv4())
            rule = f"add rule inet t out udp dport {port} reject with {reject}"
            table = "add table inet t; add chain inet t out { type filter hook output priority 0; }"
            subprocess.run(["nft", f"{table}; {rule}"], check=True)
            rig.tun_peer.send(ipv4())  # Sent by the thread, refused by the path.
            deadline = time.monotonic() + WAIT
            while rig.pipe.take_stats()[4] == 0 and time.monotonic() < deadline:
                select.select([], [], [], 0.01)
            select.select([], [], [], 0.1)  # The ICMP error reaches the socket.
            subprocess.run(["nft", "delete table inet t"], check=True)
            client.send(rig.record(b"\x00" + ipv6()))
            return "delivered" if _readable(rig.tun_peer, 1.0) else "not-read"
        finally:
            rig.close()


NAMESPACES = pytest.mark.skipif(
    os.geteuid() != 0 or not all(map(shutil.which, ("unshare", "nft", "ip"))),
    reason="needs root, unshare, nft and ip (a network namespace of its own)",
)


@NAMESPACES
@pytest.mark.parametrize(
    "reject",
    [
        "icmp type port-unreachable",  # ECONNREFUSED
        "icmp type admin-prohibited",  # EHOSTUNREACH
        "icmpv6 type port-unreachable",  # ECONNREFUSED
        "icmpv6 type admin-prohibited",  # EACCES
        "icmp type prot-unreachable",  # ENOPROTOOPT
    ],
)
def test_an_icmp_error_does_not_stop_the_thread_reading(reject: str) -> None:
    """One ICMP error for one datagram to the client (a transient firewall, a NAT rebinding) is
    not the end of the association: the client's next record still reaches the TUN device, as
    it does on the event loop (asyncio's transport reports the error and reads on)."""
    probe = f"from {__name__} import _icmp_probe; print(_icmp_probe({reject!r}))"
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1:] == ["delivered"]


# -- 4. configure(): a rekey ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SUITES))
def test_rekey_swaps_the_state(rigs: Callable[..., Rig], name: str) -> None:
    rig = rigs(SUITES[name])
    suite = SUITES[name]
    assert rig.send(rig.record(b"\x00" + ipv4())) == ("tun", ipv4())
    keys = key_block(suite, master=bytes([7]) * 48)
    new_server = c_state(suite, keys, epoch=2)
    new_client = _epoch.PyEpochState(suite, keys.swapped(), os.urandom, 2)
    new_read, _ = protections(suite, keys.swapped(), os.urandom)
    rig.pipe.configure(new_server, True, MTU, 0.0)
    assert rig.send(new_client.seal(23, b"\x00" + ipv6())) == ("tun", ipv6())
    old = rig.record(b"\x00" + ipv4())
    assert rig.send(old) == ("raw", old)  # The old epoch is the reference path's now.
    where, record = rig.from_tun(ipv4())
    assert where == "udp"
    (parsed,) = records_untrusted(record)
    assert parsed.epoch_seq == 2 << 48
    assert new_read.open(parsed.epoch_seq, 23, parsed.version, parsed.fragment) == (
        b"\x00" + ipv4()
    )
    # The old state is Python's alone again and still works (a late old-epoch record).
    (old_parsed,) = records_untrusted(old)
    assert rig.server.open(old_parsed.epoch_seq, 23, old_parsed.fragment) == b"\x00" + ipv4()
    rig.pipe.configure(None, True, MTU, 0.0)
    fresh = new_client.seal(23, b"\x00" + ipv4())
    assert rig.send(fresh) == ("raw", fresh)
    with pytest.raises(TypeError):
        rig.pipe.configure(object(), True, MTU, 0.0)


# -- 5. close() -------------------------------------------------------------------------------


def _readable(sock: socket.socket, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def test_close_gives_the_descriptors_back(engine: Any, rigs: Callable[..., Rig]) -> None:
    suite = SUITES["psk-aes256-gcm"]
    rig = Rig(engine, suite)
    witness = rigs(suite)
    assert rig.send(rig.record(b"\x00" + ipv4())) == ("tun", ipv4())
    rig.pipe.close()
    datagram, packet = rig.record(b"\x00" + ipv4()), ipv6()
    rig.udp_peer.send(datagram)
    rig.tun_peer.send(packet)
    # The witness pipe's answer means the thread went through epoll after both were queued.
    assert witness.send(witness.record(b"\x00" + ipv4())) == ("tun", ipv4())
    assert witness.from_tun(ipv4())[0] == "udp"
    assert _readable(rig.udp, WAIT)
    assert _readable(rig.tun, WAIT)
    assert rig.udp.recv(65536) == datagram  # Still there: the thread did not read them.
    assert rig.tun.recv(65536) == packet
    assert not _readable(rig.tun_peer, 0.05)
    assert not _readable(rig.udp_peer, 0)
    assert engine.drain() == []
    for s in (rig.udp, rig.tun, rig.udp_peer, rig.tun_peer):
        s.close()
    with pytest.raises(ValueError, match="the pipe is closed"):
        rig.pipe.configure(None, True, MTU, 0.0)
    with pytest.raises(ValueError, match="the pipe is closed"):
        rig.pipe.take_stats()
    rig.pipe.close()  # Again: nothing.
    # The witness still works on descriptors that may now have the closed ones' numbers.
    assert witness.send(witness.record(b"\x00" + ipv6())) == ("tun", ipv6())


def _threads() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def test_engine_close_stops_the_thread() -> None:
    before = _threads()
    engine = _fastpath.Engine()
    started = _threads() - before
    assert len(started) == 1  # The data-path thread.
    rig = Rig(engine, SUITES["psk-aes256-gcm"])
    assert rig.send(rig.record(b"\x00" + ipv4())) == ("tun", ipv4())
    engine.close()
    assert not started & _threads()
    datagram = rig.record(b"\x00" + ipv4())
    rig.udp_peer.send(datagram)
    assert _readable(rig.udp, WAIT)
    assert rig.udp.recv(65536) == datagram  # Nobody reads it any more.
    assert engine.drain() == []
    with pytest.raises(ValueError, match="the engine is closed"):
        engine.attach(rig.udp.fileno(), rig.tun.fileno(), b"", bytes(17), None, True, MTU, 0.0)
    assert rig.pipe.take_stats()[0] == 1  # The pipe still answers, then closes.
    rig.close()
    engine.close()  # Again: nothing.


# -- 6. the lane's bound ------------------------------------------------------------------------


def test_lane_is_bounded_and_the_thread_goes_on(rigs: Callable[..., Rig], engine: Any) -> None:
    # Nine pipes, each within its own bound, together over the lane's: the lane keeps the first
    # LANE_MAX_ITEMS, counts the rest, and every pipe's items stay in their order.
    flooders = [rigs(SUITES["psk-aes256-gcm"]) for _ in range(LANE_MAX_ITEMS // PIPE_LANE_MAX + 1)]
    for n, rig in enumerate(flooders):
        for i in range(PIPE_LANE_MAX):
            rig.udp_peer.send(b"junk %d %d" % (n, i))  # Blocks while the queue is full.
    extra = len(flooders) * PIPE_LANE_MAX - LANE_MAX_ITEMS
    deadline = time.monotonic() + WAIT
    while engine.lane_dropped < extra and time.monotonic() < deadline:
        select.select([], [], [], 0.01)
    assert engine.lane_dropped == extra
    items = engine.drain()
    assert len(items) == LANE_MAX_ITEMS
    assert {kind for _, kind, _ in items} == {_fastpath.KIND_RAW}
    for n, rig in enumerate(flooders):
        mine = [data for pipe_id, _, data in items if pipe_id == rig.pipe.id]
        numbers = [int(data.split()[2]) for data in mine]
        assert numbers == sorted(numbers), n
        assert all(data.startswith(b"junk %d " % n) for data in mine)
    rig = flooders[-1]
    assert rig.send(rig.record(b"\x00" + ipv4())) == ("tun", ipv4())
    assert rig.send(b"after") == ("raw", b"after")
    assert engine.lane_dropped == extra


def test_a_pipe_with_its_bound_waiting_is_not_read_until_drained(
    rigs: Callable[..., Rig], engine: Any
) -> None:
    # One client's flood: the thread stops reading its socket once PIPE_LANE_MAX of its items
    # wait (the datagrams stay in the socket's queue, which fills), so it cannot crowd the lane
    # that every tunnel shares; once Python drains, the thread reads on, in order.
    rig = rigs(SUITES["psk-aes256-gcm"])
    other = rigs(SUITES["psk-aes256-gcm"])
    rig.udp_peer.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 1.0
    while sent < 3 * PIPE_LANE_MAX and time.monotonic() < deadline:
        try:
            rig.udp_peer.send(b"junk %d" % sent)
            sent += 1
        except BlockingIOError:  # The socket's queue is full: the thread stopped reading it.
            select.select([], [], [], 0.01)
    assert sent > PIPE_LANE_MAX
    other.udp_peer.send(b"other")  # Another pipe is not held up.
    time.sleep(0.2)
    drained = engine.drain()
    assert (other.pipe.id, _fastpath.KIND_RAW, b"other") in drained
    items = [i for i in drained if i[0] == rig.pipe.id]
    assert len(items) == PIPE_LANE_MAX < sent
    # The read that reached the bound may have held more datagrams: those are dropped (UDP).
    assert engine.lane_dropped < 64
    received = [data for _, _, data in items]
    deadline = time.monotonic() + WAIT
    while len(received) + engine.lane_dropped < sent and time.monotonic() < deadline:
        select.select([engine.fileno()], [], [], 0.05)
        received += [data for pipe_id, _, data in engine.drain() if pipe_id == rig.pipe.id]
    assert len(received) + engine.lane_dropped == sent
    numbers = [int(data.split()[1]) for data in received]
    assert numbers == sorted(numbers)


def test_lane_is_bounded_in_bytes_too(rigs: Callable[..., Rig], engine: Any) -> None:
    rig = rigs(SUITES["psk-aes256-gcm"])
    size, count = 60_000, 150
    kept = LANE_MAX_BYTES // size
    for i in range(count):
        rig.udp_peer.send(bytes([i]) * size)
    deadline = time.monotonic() + WAIT
    while engine.lane_dropped < count - kept and time.monotonic() < deadline:
        select.select([], [], [], 0.01)
    assert engine.lane_dropped == count - kept
    items = engine.drain()
    assert [data for _, _, data in items] == [bytes([i]) * size for i in range(kept)]
    assert rig.send(b"small") == ("raw", b"small")


# -- 7. property: the thread against the pure-Python model --------------------------------------

PACKETS = st.one_of(
    st.builds(
        ipv4, st.sampled_from([LEASE4, OTHER4]), st.sampled_from([1, 6, 17]), st.binary(max_size=40)
    ),
    st.builds(
        ipv6,
        st.sampled_from([LEASE6, OTHER6]),
        st.sampled_from([6, 17, 58]),
        st.binary(max_size=40),
    ),
    st.builds(lambda p, n: p[:n], st.builds(ipv4), st.integers(0, 60)),
    st.builds(ipv4, total=st.integers(0, 80)),
    st.binary(max_size=48),
)
OPS = st.one_of(
    st.tuples(st.just("data"), PACKETS),
    st.tuples(st.just("payload"), st.sampled_from([3, 4, 7, 8, 9]), st.binary(max_size=16)),
    st.tuples(st.just("empty")),
    st.tuples(st.just("seq"), st.integers(0, 300) | st.integers(0, SEQ_MASK)),
    st.tuples(st.just("back"), st.integers(0, 130)),
    st.tuples(st.just("ahead"), st.integers(0, 130)),
    st.tuples(st.just("replay"), st.integers(0, 1 << 16)),
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(1, 255)),
    st.tuples(st.just("multi"), st.integers(2, 3)),
    st.tuples(st.just("epoch"), st.integers(0, 0xFFFF)),
    st.tuples(st.just("version"), st.sampled_from([0x0100, 0xFEFF, 0xFEFD, 0])),
    st.tuples(st.just("length"), st.integers(0, 0xFFFF)),
    st.tuples(st.just("cut"), st.integers(0, 60)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("type"), st.sampled_from([0, 20, 21, 22, 24])),
    st.tuples(st.just("garbage"), st.binary(max_size=64)),
)


def _datagram(rig: Rig, op: tuple[Any, ...], sent: list[bytes]) -> bytes | None:
    kind, client = op[0], rig.client
    if kind == "data":
        return rig.record(b"\x00" + op[1])
    if kind == "payload":
        return rig.record(bytes((op[1],)) + op[2])
    if kind == "empty":
        return rig.record(b"")
    if kind == "seq":
        client.write_seq = op[1]
    elif kind == "back":
        client.write_seq = max(0, client.write_seq - op[1])
    elif kind == "ahead":
        client.write_seq = min(SEQ_MASK, client.write_seq + op[1])
    elif kind == "replay":
        return sent[op[1] % len(sent)] if sent else None
    elif kind == "flip":
        base = bytearray(rig.record(b"\x00" + ipv4()))
        base[op[1] % len(base)] ^= op[2]
        return bytes(base)
    elif kind == "multi":
        return b"".join(rig.record(b"\x00" + ipv4()) for _ in range(op[1]))
    elif kind in ("epoch", "version", "length", "type"):
        offset, size = {"epoch": (3, 2), "version": (1, 2), "length": (11, 2), "type": (0, 1)}[kind]
        base = bytearray(rig.record(b"\x00" + ipv4()))
        base[offset : offset + size] = op[1].to_bytes(size, "big")
        return bytes(base)
    elif kind == "cut":
        return rig.record(b"\x00" + ipv4())[: op[1]]
    elif kind == "extend":
        return rig.record(b"\x00" + ipv4()) + bytes(op[1])
    elif kind == "garbage":
        return bytes(op[1])
    return None


def _collect(
    rig: Rig, tun_count: int, lane_count: int
) -> tuple[list[bytes], list[tuple[str, bytes]]]:
    """What the thread wrote to the TUN device and handed back, waiting for the counts given."""
    tun: list[bytes] = []
    lane: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + WAIT
    while (len(tun) < tun_count or len(lane) < lane_count) and time.monotonic() < deadline:
        ready, _, _ = select.select([rig.tun_peer, rig.engine.fileno()], [], [], 0.05)
        if rig.tun_peer in ready:
            tun.append(rig.tun_peer.recv(65536))
        for pipe_id, kind, data in rig.engine.drain() if ready else []:
            assert pipe_id == rig.pipe.id
            lane.append((KINDS[kind], data))
    return tun, lane


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "one-batch"])
@pytest.mark.parametrize("name", list(SUITES))
@settings(max_examples=40, deadline=None)
@given(ops=st.lists(OPS, max_size=20))
def test_thread_matches_the_python_model(
    name: str, batch: bool, ops: list[tuple[Any, ...]]
) -> None:
    """One by one: each datagram's verdict. One batch: all of them queued before attach, so the
    thread takes them in one recvmmsg; the TUN packets and the lane each in the model's order."""
    sent: list[bytes] = []

    def make(rig: Rig) -> None:
        for op in ops:
            datagram = _datagram(rig, op, sent)
            if datagram is not None:
                sent.append(datagram)
                if batch:
                    rig.udp_peer.send(datagram)

    with running_engine() as engine:
        rig = Rig(engine, SUITES[name], before_attach=make)
        try:
            expected = [rig.model_verdict(d) for d in sent]
            if batch:
                tun_expected = [p for where, p in expected if where == "tun"]
                lane_expected = [v for v in expected if v[0] != "tun"]
                tun, lane = _collect(rig, len(tun_expected), len(lane_expected))
                assert (tun, lane) == (tun_expected, lane_expected)
            else:
                assert [rig.send(d) for d in sent] == expected
            # Both windows end alike: fresh records around every sequence number used.
            seqs: set[int] = set()
            for datagram in sent:
                with contextlib.suppress(BadRecord):
                    seqs |= {r.epoch_seq & SEQ_MASK for r in records_untrusted(datagram)}
            around = sorted({s + d for s in seqs for d in (-65, -64, -1, 0, 1, 64)})
            for seq in [s for s in around if 0 <= s <= SEQ_MASK][:40]:
                rig.client.write_seq = seq
                probe = rig.record(b"\x00" + ipv4())
                assert rig.send(probe) == rig.model_verdict(probe)
            assert rig.pipe.take_stats()[2:5] == (0, 0, 0)
        finally:
            rig.close()


# -- 8. the shared state under the lock -------------------------------------------------------


def test_python_and_the_thread_share_one_state_safely(rigs: Callable[..., Rig]) -> None:
    """Both directions run on the thread while this thread seals and opens with the same state:
    every write sequence number is used once, every record from the client is accepted once."""
    rig = rigs(SUITES["dtls09-aes256-sha"])
    count = 600
    thread_records: list[bytes] = []
    stop = threading.Event()

    def collect() -> None:  # The client's socket: everything the thread sends.
        while not stop.is_set():
            if _readable(rig.udp_peer, 0.05):
                thread_records.append(rig.udp_peer.recv(65536))

    def pump() -> None:  # The TUN device: packets in, and what the thread writes out.
        for i in range(count):
            rig.tun_peer.send(ipv4(body=b"to client %d" % i))
            while _readable(rig.tun_peer, 0):
                rig.tun_peer.recv(65536)

    workers = [threading.Thread(target=collect), threading.Thread(target=pump)]
    for w in workers:
        w.start()
    python_records: list[bytes] = []
    accepted_by_python = 0
    stats = [0] * 5
    try:
        for i in range(count):
            record = rig.record(b"\x00" + ipv4(body=b"from client %d" % i))
            rig.udp_peer.send(record)  # The thread and this thread race for it.
            (parsed,) = records_untrusted(record)
            if rig.server.open(parsed.epoch_seq, 23, parsed.fragment) is not None:
                accepted_by_python += 1
            if i % 3 == 0:
                python_records.append(rig.server.seal(23, b"\x03dpd"))
            else:
                python_records += rig.server.seal_data(b"\x00", [b"a", b"b"])
            if i % 50 == 0:
                stats = [a + b for a, b in zip(stats, rig.pipe.take_stats()[:5], strict=False)]
        workers[1].join(WAIT)
        raw = 0
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            raw += sum(1 for _, kind, _ in rig.engine.drain() if kind == _fastpath.KIND_RAW)
            stats = [a + b for a, b in zip(stats, rig.pipe.take_stats()[:5], strict=False)]
            if stats[0] + raw == count and stats[2] == count:
                break
            select.select([], [], [], 0.01)
        rx_packets, _, tx_packets, _, tx_dropped = stats
        assert rx_packets + raw == count  # Every datagram answered once (TUN or the lane).
        assert rx_packets + accepted_by_python == count  # ... and accepted exactly once.
        assert tx_packets == count
        while len(thread_records) < tx_packets - tx_dropped and time.monotonic() < deadline:
            select.select([], [], [], 0.01)
    finally:
        stop.set()
        for w in workers:
            w.join(WAIT)
    assert len(thread_records) == tx_packets - tx_dropped
    records = thread_records + python_records
    seqs = [rig.opened_by_client(r)[0] for r in records]
    assert len(set(seqs)) == len(seqs)
    ivs = {r[13:29] for r in records}  # CBC: both threads draw explicit IVs from one pool.
    assert len(ivs) == len(records)
    assert max(seqs) & SEQ_MASK < rig.server.write_seq
    assert rig.engine.lane_dropped == 0


def test_an_epoch_state_is_initialised_once() -> None:
    """``__init__`` again would swap the cipher contexts under a thread that may be using them."""
    from ocgate import _fastpath  # type: ignore[attr-defined]

    args = (1, 0xFEFD, bytes(32), bytes(32), bytes(4), bytes(4), b"", b"", os.urandom)
    state = _fastpath.EpochState(*args)
    with pytest.raises(TypeError, match="initialised once"):
        state.__init__(*args)
    assert state.seal(23, b"still usable")[:3] == bytes((23, 0xFE, 0xFD))
