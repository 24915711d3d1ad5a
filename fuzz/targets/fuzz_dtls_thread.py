"""The DTLS data-path thread (``ocgate._fastpath.Engine``, src/ocgate/_dataplane.c) against a model.

One engine (one C thread) per process; each input attaches one pipe to it: an ``AF_UNIX``
``SOCK_DGRAM`` socket pair stands in for the association's connected UDP socket (the target holds
the client's end) and another for the TUN device (the target holds the kernel's end), both
non-blocking on the thread's side as in the worker. The first byte picks the suite (AES-GCM,
ChaCha20, AES-CBC and 3DES, DTLS 0.9 and 1.2; value % 6), the session's sources (bits 3-4: the
IPv4 lease, the IPv6 /64, or both) and ``tx_ok`` (bit 7). The target holds the client's keys of
every epoch. Then operations, tag % 16:

0. an authenticated record of the client's current epoch (or, with bit 4 of the first payload
   byte, an older one): a packet from a source the fuzzer picks (the lease, another IPv4 or IPv6
   address, the /64, a bad IPv4 length, raw bytes) behind a payload type byte (mostly DATA);
1. the client's next sequence number: absolute (48 bits), far ahead or far behind;
2. the thread's write sequence number jumps close to exhaustion (its model's too);
3. an empty operation;
4. several DATA records, as one burst of datagrams (the thread's ``recvmmsg`` batch);
5. up to eight TUN packets of lengths the fuzzer picks (empty, over the MTU, over 2^14);
6. ``configure``: ``tx_ok``, the MTU, ``switch_after`` and the state (the same, none, or a new
   epoch with new keys: a rekey);
7. a DATA record with one byte changed (a forgery);
8. a DATA record cut short or with bytes appended;
9. a record built from scratch and authentic under the client's keys: content type, version,
   epoch, sequence number, length field and plaintext (up to past 2^14) from the fuzzer;
10. an earlier datagram again (a replay);
11. two to four DATA records in one datagram;
12. the payload as a datagram, raw;
13-15. as 0, 4 and 5.

After each operation the target waits until the thread has handed over what the model predicts
(bounded: a missing item is a finding), polling the TUN peer, ``engine.fileno()`` and the
client's socket.

Oracle (``AssertionError`` on any difference). A pure-Python model, ``PyEpochState`` with the
pipe's keys and the session's ``PacketFilter`` (its fast path: ``admit_untrusted`` returns its
argument itself), predicts every datagram's fate: a fresh authentic DATA record from an admitted
source is written to the TUN device, byte for byte its plaintext after the type byte, and nothing
else ever is; an authentic DATA packet the fast path does not admit comes back as ``KIND_RX``; an
authentic record of another payload type as ``KIND_OPENED`` with its whole plaintext; every other
datagram (replays, forgeries, other epochs, versions, types, lengths, several records, without a
state) as ``KIND_RAW``, byte-identical to what was sent. Every TUN packet that fits the MTU (and
2^14) while DTLS may carry data reaches the client as one record that opens with the client's
keys of the pipe's epoch, holds ``0x00`` + the packet, has the model's sequence number (and, for
AEAD suites, the model's bytes); every other one comes back as ``KIND_TX``. The pipe's counters
agree (nothing dropped), and at the end a fresh epoch still carries one packet each way (the
thread is alive) and nothing more arrives.

Coverage feedback comes from the Python side only (the model, the filter, this target): the C
thread is not instrumented, so the structured operations above are what reaches its branches.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass, field

import _harness
import atheris
from _datapath import LEASE, LEASE6, ip_packet, operations, short, wait_for_thread

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate import _fastpath  # type: ignore[attr-defined]
    from ocgate.dtls import DTLS12_CIPHERSUITES, DTLS_CIPHERSUITES, DtlsSuite
    from ocgate.dtls._epoch import IMPLEMENTATIONS, PyEpochState
    from ocgate.dtls._record import MAX_PLAINTEXT, SEQ_MASK
    from ocgate.dtls._suites import (
        BulkCipher,
        KeyBlock,
        RecordProtection,
        derive_key_block,
        protections,
    )
    from ocgate.errors import LocalProtocolError
    from ocgate.ipfilter import PacketFilter

SUITES: list[DtlsSuite] = [
    DTLS_CIPHERSUITES["OC-DTLS1_2-AES256-GCM"][0],
    DTLS_CIPHERSUITES["OC-DTLS1_2-AES128-GCM"][0],
    DTLS_CIPHERSUITES["OC2-DTLS1_2-CHACHA20-POLY1305"][0],
    DTLS_CIPHERSUITES["AES256-SHA"][0],
    DTLS12_CIPHERSUITES["AES128-SHA"][0],
    DTLS_CIPHERSUITES["DES-CBC3-SHA"][0],
]
QUIET = 0.003
"""Seconds of silence that end an input (nothing more may arrive)."""
BURST = 8
"""Datagrams or TUN packets per operation at most: an AF_UNIX datagram socket queues only
``net.unix.max_dgram_qlen`` (often 10) before a non-blocking write fails and the thread drops."""
BURST_BYTES = 96 * 1024
MAX_DATAGRAM = 65507
"""The largest UDP payload over IPv4: longer datagrams are cut (the thread reads 64 KiB)."""
MAX_TUN_PACKET = 20000

ENGINE = _fastpath.Engine()
"""One thread for the whole process (a worker has one too); each input attaches a pipe."""


def _keys(suite: DtlsSuite, epoch: int) -> KeyBlock:
    """A different key block per epoch (a rekey's new keys)."""
    client_random = epoch.to_bytes(2, "big") + bytes(range(30))
    return derive_key_block(suite, bytes(range(48)), client_random, bytes(range(32, 64)))


@dataclass
class Epoch:
    """One epoch's states: the pipe's (compiled), its model, the client's, the client's raw
    write protection (for records built from scratch)."""

    number: int
    server: object
    model: PyEpochState
    client: PyEpochState
    client_write: RecordProtection

    @classmethod
    def new(cls, suite: DtlsSuite, number: int) -> Epoch:
        keys = _keys(suite, number)
        server = IMPLEMENTATIONS["c"](suite, keys, os.urandom, number)
        model = PyEpochState(suite, keys, os.urandom, number)
        client = PyEpochState(suite, keys.swapped(), os.urandom, number)
        _, client_write = protections(suite, keys.swapped(), os.urandom)
        return cls(number, server, model, client, client_write)


@dataclass
class Expected:
    """What the thread must hand over for the operations since the last check."""

    tun: list[bytes] = field(default_factory=list)
    lane: list[tuple[int, bytes]] = field(default_factory=list)
    client: list[tuple[Epoch, bytes, bytes | None]] = field(default_factory=list)
    """(the epoch that seals it, the packet, the record's exact bytes where they are known)"""


class Rig:
    """The pipe, both socket pairs, the model and what came out."""

    def __init__(self, selector: int) -> None:
        self.suite = SUITES[selector % len(SUITES)]
        sources = selector >> 3 & 3  # 1: the IPv4 lease only, 2: the IPv6 /64 only, else both
        with_v4, with_v6 = sources != 2, sources != 1
        self.filter = PacketFilter(
            ipv4=LEASE if with_v4 else None, ipv6=LEASE6 if with_v6 else None
        )
        self.udp, self.client_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.tun, self.tun_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (self.udp, self.tun, self.client_sock, self.tun_peer):
            sock.setblocking(False)
        self.epochs = [Epoch.new(self.suite, 1)]
        self.state: Epoch | None = self.epochs[0]
        self.tx_ok = bool(selector & 0x80)
        self.mtu = 1400
        self.switch_after = 0.0
        self.pipe = ENGINE.attach(
            self.udp.fileno(),
            self.tun.fileno(),
            *self.filter.fast_sources(),
            self.state.server,
            self.tx_ok,
            self.mtu,
            self.switch_after,
        )
        self.expected = Expected()
        self.rx = self.tx = 0
        self.history: list[bytes] = []

    def close(self) -> None:
        self.pipe.close()  # The thread lets go of the descriptors before they close.
        for sock in (self.udp, self.tun, self.client_sock, self.tun_peer):
            sock.close()

    # -- the model --------------------------------------------------------------------------------

    def send(self, datagrams: list[bytes]) -> None:
        """The client sends; the model says what becomes of each datagram."""
        for datagram in datagrams:
            datagram = datagram[:MAX_DATAGRAM]
            self.history.append(datagram)
            self._predict(datagram)
            self.client_sock.send(datagram)

    def _predict(self, datagram: bytes) -> None:
        if self.state is None:
            self.expected.lane.append((_fastpath.KIND_RAW, datagram))
            return
        packets, _, payload = self.state.model.open_batch_untrusted([datagram], 0, 0)
        if packets:
            batch = [packets[0]]
            if self.filter.admit_untrusted(batch) is batch:
                self.expected.tun.append(packets[0])
                self.rx += 1
            else:
                self.expected.lane.append((_fastpath.KIND_RX, packets[0]))
        elif payload is not None:
            self.expected.lane.append((_fastpath.KIND_OPENED, payload))
        else:
            self.expected.lane.append((_fastpath.KIND_RAW, datagram))

    def write_tun(self, packets: list[bytes]) -> None:
        """The kernel routes packets into the tunnel; the model says where each goes."""
        for packet in packets:
            self.tun_peer.send(packet)
            if not packet:
                continue  # A read of 0 bytes (no TUN device gives one) carries nothing.
            state = self.state
            if (
                state is not None
                and self.tx_ok
                and len(packet) <= self.mtu
                and len(packet) + 1 <= MAX_PLAINTEXT
                and state.model.write_seq <= SEQ_MASK
            ):
                if self.suite.params.bulk in (BulkCipher.AES_GCM, BulkCipher.CHACHA20_POLY1305):
                    (record,) = state.model.seal_data(b"\x00", [packet])
                    self.expected.client.append((state, packet, record))
                else:
                    state.model.write_seq += 1
                    self.expected.client.append((state, packet, None))
                self.tx += 1
            else:
                self.expected.lane.append((_fastpath.KIND_TX, packet))

    def configure(self, state: Epoch | None, tx_ok: bool, mtu: int, switch_after: float) -> None:
        self.state, self.tx_ok, self.mtu, self.switch_after = state, tx_ok, mtu, switch_after
        server = state.server if state is not None else None
        self.pipe.configure(server, tx_ok, mtu, switch_after)

    def rekey(self) -> Epoch:
        epoch = Epoch.new(self.suite, self.epochs[-1].number + 1)
        self.epochs.append(epoch)
        return epoch

    # -- waiting for the thread and checking ------------------------------------------------------

    def check(self, *, quiet: bool = False) -> None:
        """Wait until the thread handed over what the model predicts, then compare."""
        want, self.expected = self.expected, Expected()
        tun: list[bytes] = []
        lane: list[tuple[int, bytes]] = []
        records: list[bytes] = []

        def collect() -> bool:
            _take(self.tun_peer, tun)
            lane.extend((kind, data) for pipe, kind, data in ENGINE.drain() if pipe == self.pipe.id)
            _take(self.client_sock, records)
            return (
                len(tun) >= len(want.tun)
                and len(lane) >= len(want.lane)
                and len(records) >= len(want.client)
            )

        fds = (self.tun_peer.fileno(), ENGINE.fileno(), self.client_sock.fileno())
        wait_for_thread(collect, fds, quiet=quiet, silence=QUIET, step=0.05)
        assert tun == want.tun, f"TUN writes {short(tun)} != model {short(want.tun)}"
        assert lane == want.lane, f"lane {short(lane)} != model {short(want.lane)}"
        assert len(records) == len(want.client), (
            f"{len(records)} records reached the client, the model sent {len(want.client)}"
        )
        for record, (epoch, packet, exact) in zip(records, want.client, strict=True):
            opened, _, _ = epoch.client.open_batch_untrusted([record], 0, 0)
            assert opened == [packet], f"record {record[:16].hex()} is not 0x00 + the packet"
            if exact is not None:
                assert record == exact, "the AEAD record differs from the model's"
        rx_packets, _, tx_packets, _, tx_dropped, _, _, refused = self.pipe.take_stats()
        counters = (rx_packets, tx_packets, tx_dropped, refused)
        assert counters == (self.rx, self.tx, 0, 0), (
            f"counters {counters} != model {(self.rx, self.tx, 0, 0)}"
        )
        self.rx = self.tx = 0

    # -- what the client sends --------------------------------------------------------------------

    def data_record(self, epoch: Epoch, plaintext: bytes) -> bytes | None:
        try:
            return epoch.client.seal(23, plaintext[:MAX_PLAINTEXT])
        except LocalProtocolError:
            return None  # The client's sequence numbers are exhausted.

    def admitted(self, body: bytes) -> bytes:
        """A packet the fast path admits (from whichever source the session has)."""
        src4, _ = self.filter.fast_sources()
        return ip_packet(0 if src4 else 2, body)


def _take(sock: socket.socket, out: list[bytes]) -> None:
    while True:
        try:
            out.append(sock.recv(70000))
        except BlockingIOError:
            return


def _craft(rig: Rig, epoch: Epoch, payload: bytes) -> bytes:
    """A record from scratch, authentic under ``epoch``'s client keys for its own header."""
    content = payload[0] if payload else 23
    version = int(rig.suite.version)
    choice = payload[1] if len(payload) > 1 else 0
    if choice % 4 == 1:
        version = 0xFEFD if version == 0x0100 else 0x0100
    elif choice % 4 == 2:
        version = _harness.number(payload[2:4])
    number = epoch.number
    if choice >> 2 & 3 == 1:
        number = (number + 1) & 0xFFFF
    elif choice >> 2 & 3 == 2:
        number = _harness.number(payload[2:4])
    seq = epoch.client.write_seq if choice & 0x10 else _harness.number(payload[4:10]) & SEQ_MASK
    if choice & 0x10:
        epoch.client.write_seq = min(seq + 1, SEQ_MASK)
    epoch_seq = number << 48 | seq
    delta = int.from_bytes(payload[10:11] or b"\x00", "big", signed=True)
    plaintext = payload[11 : 11 + MAX_PLAINTEXT + 16]
    fragment = epoch.client_write.seal(epoch_seq, content, version, plaintext)
    length = (len(fragment) + (delta if choice & 0x20 else 0)) & 0xFFFF
    return struct.pack("!BHQH", content, version, epoch_seq, length) + fragment


def test_one_input(data: bytes) -> None:
    if not data:
        return
    rig = Rig(data[0])
    try:
        _run(rig, data[1:])
    finally:
        rig.close()


def _run(rig: Rig, data: bytes) -> None:
    for kind, _tag, payload in operations(data, {13: 0, 14: 4, 15: 5}):
        epoch = rig.epochs[-1]
        if kind == 0:
            flags = payload[0] if payload else 0
            if flags & 0x10:
                epoch = rig.epochs[(flags >> 5) % len(rig.epochs)]
            ptype = 0 if len(payload) < 2 or payload[1] < 0xC0 else payload[1] & 0x0F
            packet = ip_packet(flags, payload[2:])
            record = rig.data_record(epoch, bytes((ptype,)) + packet)
            if record is not None:
                rig.send([record])
        elif kind == 1:
            how, value = (payload[0] % 3 if payload else 0), _harness.number(payload[1:7])
            seq = epoch.client.write_seq
            seq = value if how == 0 else seq + value if how == 1 else seq - value
            epoch.client.write_seq = min(max(seq, 0), SEQ_MASK)
        elif kind == 2 and rig.state is not None:
            seq = max(rig.state.model.write_seq, SEQ_MASK + 1 - (payload[0] if payload else 0))
            rig.state.model.write_seq = seq
            rig.state.server.write_seq = seq  # type: ignore[attr-defined]
        elif kind == 4:
            count = 1 + (payload[0] % BURST if payload else 0)
            body = payload[1:]
            step = max(1, len(body) // count)
            source = payload[0] >> 3 if payload else 0
            records = [
                rig.data_record(epoch, b"\x00" + ip_packet(source, body[i * step : (i + 1) * step]))
                for i in range(count)
            ]
            rig.send([r for r in records if r is not None])
        elif kind == 5:
            count = 1 + (payload[0] % BURST if payload else 0)
            body = payload[1 + 2 * count :] or b"\x45"
            packets, total = [], 0
            for i in range(count):
                size = _harness.number(payload[1 + 2 * i : 3 + 2 * i]) % (MAX_TUN_PACKET + 1)
                size = min(size, BURST_BYTES - total)
                packets.append((body * (size // len(body) + 1))[:size])
                total += size
            rig.write_tun(packets)
        elif kind == 6:
            flags = payload[0] if payload else 0
            action = flags >> 1 & 3
            state = None if action == 1 else rig.rekey() if action == 2 else rig.state
            mtu = _harness.number(payload[1:3], 1400)
            rig.configure(state, bool(flags & 1), mtu, 3600.0 if flags & 8 else 0.0)
        elif kind == 7:
            record = rig.data_record(epoch, b"\x00" + rig.admitted(payload[3:]))
            if record is not None:
                changed = bytearray(record)
                changed[_harness.number(payload[1:3]) % len(changed)] ^= (
                    payload[0] | 1 if payload else 1
                )
                rig.send([bytes(changed)])
        elif kind == 8:
            record = rig.data_record(epoch, b"\x00" + rig.admitted(payload[2:34]))
            if record is not None:
                cut = _harness.number(payload[:2]) % (len(record) + 1)
                rig.send([record[:cut] + payload[34:]])
        elif kind == 9:
            rig.send([_craft(rig, epoch, payload)])
        elif kind == 10 and rig.history:
            rig.send([rig.history[_harness.number(payload[:2]) % len(rig.history)]])
        elif kind == 11:
            count = 2 + (payload[0] % 3 if payload else 0)
            records = [
                rig.data_record(epoch, b"\x00" + rig.admitted(payload[1:])) for _ in range(count)
            ]
            rig.send([b"".join(r for r in records if r is not None)])
        elif kind == 12:
            rig.send([payload])
        rig.check()
    # The thread is alive: a new epoch carries one packet each way, and then nothing more comes.
    final = rig.rekey()
    rig.configure(final, True, 1400, 0.0)
    packet = rig.admitted(b"still alive")
    record = rig.data_record(final, b"\x00" + packet)
    assert record is not None
    rig.send([record])
    rig.write_tun([packet])
    assert rig.expected.tun == [packet], "the final record is not predicted to pass"
    rig.check(quiet=True)


def seeds() -> list[bytes]:
    """Traffic like openconnect's both ways (tests/vectors/cstp), a rekey, replays, forgeries,
    sequence jumps, oversized TUN packets and every suite."""
    packet = _harness.hex_vector(_harness.VECTORS / "cstp" / "oc_data_ipv4_udp.hex")[8:]
    body = packet[20:]
    sizes = b"".join(n.to_bytes(2, "big") for n in (0, 100, 1400, 1401, 16384))
    traffic = (
        _harness.op(0, b"\x00\x00" + body)
        + _harness.op(0, b"\x01\x00" + body)
        + _harness.op(0, b"\x02\xc3" + bytes(8))
        + _harness.op(4, b"\x03" + body * 4)
        + _harness.op(5, b"\x04" + sizes + body)
        + _harness.op(10, b"\x00\x00")
        + _harness.op(7, b"\x01\x00\x05" + body)
        + _harness.op(8, b"\x00\x10" + body)
        + _harness.op(11, b"\x01" + body)
    )
    out = [bytes((0x80 | index,)) + traffic for index in range(len(SUITES))]
    out.append(bytes((0x08,)) + traffic + _harness.op(6, b"\x05\x05\xdc") + traffic)  # rekey
    out.append(bytes((0x90,)) + _harness.op(6, b"\x01\x40\x00") + _harness.op(5, b"\x01\x40\x00"))
    out.append(
        b"\x80"
        + _harness.op(1, b"\x01" + (1 << 40).to_bytes(6, "big"))
        + _harness.op(0, b"\x00\x00" + body)
        + _harness.op(1, b"\x02" + (1 << 40).to_bytes(6, "big"))
        + _harness.op(0, b"\x00\x00" + body)
        + _harness.op(2, b"\x02")
        + _harness.op(5, b"\x02\x00\x10\x00\x10" + body)
        + _harness.op(6, b"\x02")
        + _harness.op(0, b"\x10\x00" + body)
        + _harness.op(6, b"\x05")
        + _harness.op(5, b"\x00\x00\x10")
    )
    out.append(
        b"\x81"
        + _harness.op(9, b"\x16\x10" + bytes(9) + b"handshake")
        + _harness.op(9, b"\x17\x11" + bytes(9) + b"\x00" + packet)
        + _harness.op(9, b"\x17\x30" + bytes(8) + b"\x01\x00" + packet)
        + _harness.op(9, b"\x17\x14" + bytes(9) + b"\x00" + packet)
        + _harness.op(12, b"\x17\xfe\xfd" + bytes(10))
    )
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
