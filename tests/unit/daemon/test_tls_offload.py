"""The TLS data path on the worker's C thread (TLS pipes) against the Python reference.

Theory of the rig: a real server :class:`ocgate.tls.TlsEndpoint` completes its handshake with a
real OpenSSL client (pyOpenSSL over memory BIOs, pumped by hand); the connection is then attached
to a real ``ocgate._fastpath.Engine`` (``Engine.attach_tls``) with an AF_UNIX stream socketpair
standing for the TCP connection and an AF_UNIX SOCK_SEQPACKET socketpair for the TUN device. The
test plays the client: it encrypts CSTP frames into records and writes them into the socket, reads
what the thread wrote and decrypts it record by record, and reads and writes the TUN peer.

What the thread does with the client's frames, as the tests state it: DATA the filter's fast path
admits goes to the TUN device, other DATA comes back as KIND_RX; DPD-RESP, KEEPALIVE and TERMINATE
only move ``last_rx`` (``CstpConnection._on_liveness``) and nothing comes back; a DPD request or a
frame of an unknown type comes back whole as KIND_CSTP. DISCONNECT and COMPRESSED end the thread's
part like a malformed, too long or split frame: the rest of that record's plaintext from the frame
on comes back as one KIND_CSTP item, then KIND_BACK with the received ciphertext the thread did not
read, and nothing after it reaches the TUN device. At most 512 (``PIPE_LANE_MAX``) KIND_CSTP/KIND_RX
items of one pipe wait in the lane: the rest of the record that reached the bound is dropped and
counted in ``Engine.lane_dropped``, and the thread reads no further record of that pipe until
Python drains; the items of a hand-back or a failure are never dropped. A TLS 1.3
close_notify is a hand-back too, after which ``TlsEndpoint.peer_closed()`` is true. ``Pipe.unsent``
is the ciphertext waiting for the socket (what the tunnel bounds its own frames by).

Everything the thread decides is checked against the Python path it replaces, byte for byte: the
client's frames go through :class:`ocgate.cstp.CstpConnection` and
:class:`ocgate.ipfilter.PacketFilter` (the tunnel's event-loop path), and what the thread sends is
what the client decrypts. Where the thread lets go (a hand-back: alerts, renegotiation, a frame it
does not take, EOF), the test does what ``ocgate.daemon._tunnel`` does: ``close()`` the pipe,
feed ``unread`` and the handed-back bytes to the endpoint, and checks that the connection goes on.

The Hypothesis property (``test_the_thread_matches_cstp_and_the_filter``) sends a random stream of
client frames (DATA from the lease and from elsewhere, control frames, DISCONNECT and COMPRESSED
anywhere, junk) cut into random records and the ciphertext into random writes. It requires the
lane and the TUN device to be exactly what a model of the rules above gives for those records
(``thread_model``), and the thread plus what the tunnel does with its lane to equal
``CstpConnection`` + ``PacketFilter`` on the whole stream: the same packets on the TUN device in
order, the same control frames, events and counters.

The TLS 1.3 KeyUpdate case needs a client that can send one: pyOpenSSL does not bind
``SSL_key_update``, so that case uses ``openssl s_client`` (its ``K`` command) over loopback TCP,
and skips where the command is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import select
import shutil
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from ocgate.cstp import CstpConnection, FrameDecoder, counts_for_idle_untrusted, encode_frame
from ocgate.cstp.events import ByeReceived, PacketsReceived, ProtocolFailed
from ocgate.daemon import _offload, _tunnel
from ocgate.daemon._offload import KIND_BACK, KIND_CSTP, KIND_FAILED, KIND_RX, KIND_TX, PipeStats
from ocgate.ipfilter import PacketFilter
from ocgate.tls import TlsEndpoint, build_server_context, translate_priorities
from tests.pki import make_pki

FASTPATH: Any = vars(_offload)["_fastpath"]
pytestmark = pytest.mark.skipif(
    not _offload.ENABLED or not hasattr(FASTPATH.Engine, "attach_tls"),
    reason="no compiled data-path thread with TLS pipes",
)

LEASE4 = ipaddress.IPv4Address("10.77.0.9")
LEASE6 = ipaddress.IPv6Network("fd00:77::/64")
OTHER4 = bytes((10, 66, 0, 1))
MAX_PAYLOAD = 1500
WAIT = 5.0

DATA, DPD_REQ, DPD_RESP, DISCONNECT, KEEPALIVE, COMPRESSED, TERMINATE = 0, 3, 4, 5, 7, 8, 9
LIVENESS = (DPD_RESP, KEEPALIVE, TERMINATE)
"""Frames the thread takes itself: they only prove the client alive (nothing comes back)."""
ENDING = (DISCONNECT, COMPRESSED)
"""Frames that end the thread's part of the stream (none was negotiated: COMPRESSED is an error)."""
ITEMS_PER_WAKE = 64
"""Items per record in the tests of the bound below (any number under it)."""
PIPE_LANE_MAX = 512
"""``PIPE_LANE_MAX`` (_dataplane.c): one pipe's KIND_CSTP/KIND_RX items waiting in the lane."""
TLS_OUT_HIGH = 256 * 1024
"""``TLS_OUT_HIGH`` (_dataplane.c): unsent ciphertext beyond which the TUN device is not read."""


@dataclass(frozen=True)
class Suite:
    version: int
    tls12: str = ""
    tls13: str = ""


SUITES = {
    "tls12-aes128-gcm": Suite(SSL.TLS1_2_VERSION, tls12="ECDHE-ECDSA-AES128-GCM-SHA256:"
                              "ECDHE-RSA-AES128-GCM-SHA256"),
    "tls12-chacha20": Suite(SSL.TLS1_2_VERSION, tls12="ECDHE-ECDSA-CHACHA20-POLY1305:"
                            "ECDHE-RSA-CHACHA20-POLY1305"),
    "tls13-aes256-gcm": Suite(SSL.TLS1_3_VERSION, tls13="TLS_AES_256_GCM_SHA384"),
    "tls13-chacha20": Suite(SSL.TLS1_3_VERSION, tls13="TLS_CHACHA20_POLY1305_SHA256"),
}  # fmt: skip
"""Each is the only suite the client offers, so the server (it prefers its own order) takes it."""
EXPECTED_CIPHER = {
    "tls12-aes128-gcm": "AES128-GCM",
    "tls12-chacha20": "CHACHA20",
    "tls13-aes256-gcm": "TLS_AES_256_GCM_SHA384",
    "tls13-chacha20": "TLS_CHACHA20_POLY1305_SHA256",
}


# -- packets and frames -------------------------------------------------------------------------


def frame(ptype: int, payload: bytes = b"") -> bytes:
    """A CSTP frame (anyconnect-protocol.md §7), built here rather than by the code under test."""
    return b"STF\x01" + struct.pack("!HBB", len(payload), ptype, 0) + payload


def ipv4(size: int, *, source: bytes = LEASE4.packed, proto: int = 17, tag: int = 0) -> bytes:
    """An IPv4 packet of ``20 + max(4, size)`` bytes; ``tag`` tells a test's packets apart."""
    body = tag.to_bytes(4, "big") + bytes(max(0, size - 4))
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), tag & 0xFFFF, 0, 64, proto,
                         0, source, bytes((10, 0, 0, 1)))  # fmt: skip
    return header + body


def ipv6(size: int, *, source: bytes | None = None, nxt: int = 17, tag: int = 0) -> bytes:
    """An IPv6 packet of ``40 + max(4, size)`` bytes, by default from the lease's prefix."""
    src = source if source is not None else LEASE6.network_address.packed[:8] + bytes(7) + b"\x05"
    body = tag.to_bytes(4, "big") + bytes(max(0, size - 4))
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), nxt, 64, src, bytes(15) + b"\x01") + body


def new_filter() -> PacketFilter:
    return PacketFilter(ipv4=LEASE4, ipv6=LEASE6)


def fast_admitted(packet: bytes) -> bool:
    """The filter's fast path alone (the one the thread ports): ``admit_untrusted`` returns the
    very list it was given only when every packet of it passes at a glance."""
    batch = [packet]
    return new_filter().admit_untrusted(batch) is batch


def ready(
    objs: list[socket.socket] | list[int], seconds: float, events: int = select.POLLIN
) -> list[int]:
    """The descriptors of ``objs`` ready for ``events`` within ``seconds`` (poll(2): select(2)
    refuses descriptors above 1023, which a long run of Hypothesis examples can reach)."""
    poller = select.poll()
    for obj in objs:
        poller.register(obj, events)
    return [fd for fd, _ in poller.poll(seconds * 1000)]


def split_records(wire: bytes) -> list[bytes]:
    """Whole TLS records of ``wire`` (which must end at a record boundary)."""
    records = []
    while wire:
        assert len(wire) >= 5, wire
        size = 5 + int.from_bytes(wire[3:5], "big")
        assert len(wire) >= size, "not at a record boundary"
        records.append(wire[:size])
        wire = wire[size:]
    return records


# -- the reference: the tunnel's event-loop path ------------------------------------------------


@dataclass
class Reference:
    """The client's plaintext stream through CstpConnection + PacketFilter (``_tunnel.py``)."""

    cstp: CstpConnection = field(
        default_factory=lambda: CstpConnection(
            now=0.0, dpd=0, keepalive=0, idle_timeout=None, session_deadline=None,
            max_payload=MAX_PAYLOAD,
        )
    )  # fmt: skip
    packets: list[bytes] = field(default_factory=list)
    """Every DATA packet the connection delivered, in order (before the filter)."""
    events: list[object] = field(default_factory=list)
    """Every other event."""

    def feed(self, plaintext: bytes) -> None:
        self.cstp.receive_data(plaintext, 1.0)
        while (event := self.cstp.next_event()) is not None:
            if isinstance(event, PacketsReceived):
                self.packets += event.packets
            else:
                self.events.append(event)

    def absorb(self, stats: PipeStats) -> None:
        """The thread's counters, as ``_tunnel._absorb_tls`` adds them."""
        rxp, rxb, txp, txb, _dropped, last_rx, last_activity, _refused = stats
        self.cstp.absorb(rxp, rxb, txp, txb, last_rx, last_activity)


def control_frames(plaintext: bytes) -> list[bytes]:
    """The reference decoder's frames of a well-formed stream that the thread passes on whole
    (neither DATA nor liveness), in order."""
    frames = FrameDecoder(MAX_PAYLOAD).feed_untrusted(plaintext)
    return [encode_frame(f.type, f.payload) for f in frames if f.type not in (DATA, *LIVENESS)]


# -- the rig ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    return str(pki.server.cert_path), str(pki.server.key_path)


class Client:
    """The tunnel's client: pyOpenSSL over memory BIOs."""

    def __init__(self, suite: Suite) -> None:
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(suite.version)
        ctx.set_max_proto_version(suite.version)
        if suite.tls12:
            ctx.set_cipher_list(suite.tls12.encode())
        if suite.tls13:
            ctx.set_tls13_ciphersuites(suite.tls13.encode())
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()

    def wire(self) -> bytes:
        out = b""
        with contextlib.suppress(SSL.WantReadError):
            while chunk := self.conn.bio_read(65536):
                out += chunk
        return out

    def seal(self, *plaintexts: bytes) -> bytes:
        """Each plaintext as one record."""
        for plaintext in plaintexts:
            assert self.conn.send(plaintext) == len(plaintext)
        return self.wire()

    def open(self, wire: bytes) -> list[bytes]:
        """The plaintext of each application_data record of ``wire``, one entry per record
        (records without data, as a NewSessionTicket or a KeyUpdate, give none)."""
        out = []
        for record in split_records(wire):
            self.conn.bio_write(record)
            try:
                plaintext = self.conn.recv(65536)
            except SSL.WantReadError:
                continue
            with contextlib.suppress(SSL.WantReadError):
                assert self.conn.recv(65536) == b"", "two records' data in one"
            out.append(plaintext)
        return out


def handshake(client: Client, server: TlsEndpoint) -> None:
    for _ in range(20):
        with contextlib.suppress(SSL.WantReadError):
            client.conn.do_handshake()
        out = client.wire()
        if out:
            assert server.receive_data(out, 0.0) == b""
        back = server.data_to_send()
        if back:
            client.conn.bio_write(back)
        if not out and not back:
            break
    assert server.handshake_complete


class Rig:
    """One established connection attached to a fresh engine."""

    def __init__(
        self,
        credentials: tuple[str, str],
        suite: str = "tls13-aes256-gcm",
        *,
        renegotiation: bool = False,
        sources: tuple[bytes, bytes] | None = None,
        engine: Any = None,
    ) -> None:
        """``engine``: another rig's, to attach to (its owner closes it); else a fresh one."""
        cert, key = credentials
        ctx = build_server_context(
            cert_files=(cert,), key_files=(key,), policy=translate_priorities(None),
            renegotiation=renegotiation,
        )  # fmt: skip
        self.server = TlsEndpoint(ctx)
        self.client = Client(SUITES[suite])
        handshake(self.client, self.server)
        self.client.open(b"")
        self.net, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.tun, self.tun_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (self.peer, self.tun_peer):
            sock.setblocking(False)
        assert _offload._bind_tls()
        self.own_engine = engine is None
        self.engine = FASTPATH.Engine() if engine is None else engine
        self.sources = sources if sources is not None else new_filter().fast_sources()
        self.pipe: Any = None
        self.stats: PipeStats = (0, 0, 0, 0, 0, 0.0, 0.0, 0)
        self.lane: list[tuple[int, bytes]] = []
        self.ciphertext = b""
        """Bytes the client received and did not decrypt yet (an incomplete record)."""
        self.attach()

    def attach(self) -> None:
        assert self.server.quiescent()
        self.pipe = self.engine.attach_tls(
            self.net.fileno(), self.tun.fileno(), *self.server.handles(), *self.sources,
            MAX_PAYLOAD,
        )  # fmt: skip
        self.pipe_id = self.pipe.id

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
        if self.own_engine:
            self.engine.close()
        for sock in (self.net, self.peer, self.tun, self.tun_peer):
            sock.close()

    # The client's side of the socket and the TUN peer.

    def send(self, *plaintexts: bytes) -> bytes:
        wire = self.client.seal(*plaintexts)
        self.peer.sendall(wire)
        return wire

    def received(self, count: int, within: float = WAIT) -> list[bytes]:
        """The plaintext of the next ``count`` records with data the thread sent."""
        out: list[bytes] = []
        deadline = time.monotonic() + within
        while len(out) < count:
            assert time.monotonic() < deadline, f"got {len(out)} of {count} records"
            ready([self.peer], 0.05)
            with contextlib.suppress(BlockingIOError):
                self.ciphertext += self.peer.recv(1 << 20)
            whole = self.whole_records()
            out += self.client.open(whole)
        return out

    def whole_records(self) -> bytes:
        pos, wire = 0, self.ciphertext
        while len(wire) - pos >= 5 and len(wire) - pos >= (
            size := 5 + int.from_bytes(wire[pos + 3 : pos + 5])
        ):
            pos += size
        self.ciphertext = wire[pos:]
        return wire[:pos]

    def tun_write(self, *packets: bytes) -> None:
        for packet in packets:
            self.tun_peer.send(packet)

    def tun_read(self, count: int, within: float = WAIT) -> list[bytes]:
        out: list[bytes] = []
        deadline = time.monotonic() + within
        while len(out) < count:
            assert time.monotonic() < deadline, f"got {len(out)} of {count} TUN packets"
            ready([self.tun_peer], 0.05)
            with contextlib.suppress(BlockingIOError):
                while True:
                    out.append(self.tun_peer.recv(65536))
        return out

    def settled(self) -> None:
        """The thread has read everything the client wrote into the socket (and, holding the
        lock from its read to the end of its batch, is done with it once close() gets the lock)."""
        deadline = time.monotonic() + WAIT
        while struct.unpack("i", fcntl.ioctl(self.net, termios.FIONREAD, bytes(4)))[0]:
            assert time.monotonic() < deadline, "the thread does not read the socket"
            time.sleep(0.005)

    def quiet(self, seconds: float = 0.1) -> None:
        """Nothing more arrives at the TUN peer or the client within ``seconds``."""
        readable = ready([self.tun_peer, self.peer], seconds)
        assert not readable, "unexpected traffic"

    def drain(self, until: Callable[[list[tuple[int, bytes]]], bool], within: float = WAIT) -> None:
        deadline = time.monotonic() + within
        while not until(self.lane):
            assert time.monotonic() < deadline, f"the lane holds only {self.lane!r:.300}"
            ready([self.engine.fileno()], 0.05)
            for pipe_id, kind, data in self.engine.drain():
                assert pipe_id == self.pipe_id
                self.lane.append((kind, data))

    def handed_back(self) -> bytes:
        """Wait for the hand-back; then what the tunnel feeds the endpoint: ``unread`` and the
        handed-back bytes (``_tunnel._disengage_tls``), then what its transport reads from the
        socket once it reads again (everything the client sent is there by now)."""
        self.drain(lambda lane: bool(lane) and lane[-1][0] in (KIND_BACK, KIND_FAILED))
        kind, data = self.lane[-1]
        assert kind == KIND_BACK
        unsent, unread = self.release()
        assert unsent == b""
        rest = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := self.net.recv(1 << 20):
                rest += chunk
        return unread + data + rest

    def release(self) -> tuple[bytes, bytes]:
        assert self.pipe is not None
        self.stats = self.pipe.take_stats()
        unsent, unread = self.pipe.close()
        self.pipe = None
        return unsent, unread

    def kinds(self) -> list[int]:
        return [kind for kind, _ in self.lane]


@pytest.fixture
def make_rig(credentials: tuple[str, str]) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(*args: object, **kwargs: object) -> Rig:
        rig = Rig(credentials, *args, **kwargs)  # type: ignore[arg-type]
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


# -- receive and send, against the reference -----------------------------------------------------


@pytest.mark.parametrize("suite", list(SUITES))
def test_frames_both_ways_match_the_reference(make_rig: Callable[..., Rig], suite: str) -> None:
    rig = make_rig(suite)
    assert EXPECTED_CIPHER[suite] in rig.server.cipher_name()
    good4, good6 = ipv4(60, tag=1), ipv6(80, tag=2)
    spoofed, v4_options = ipv4(40, source=OTHER4, tag=3), b"\x46" + ipv4(44, tag=4)[1:]
    records = [
        frame(DATA, good4),
        frame(DPD_REQ, b"probe") + frame(DATA, good6) + frame(KEEPALIVE),
        frame(DATA, spoofed) + frame(0x42, b"unknown type") + frame(DATA, v4_options),
        frame(DPD_RESP) + frame(DATA, b""),
    ]
    rig.send(*records)
    reference = Reference()
    for record in records:
        reference.feed(record)
    fast = [p for p in reference.packets if fast_admitted(p)]
    assert fast == [good4, good6]
    assert rig.tun_read(2) == fast
    rig.drain(lambda lane: len(lane) == 5)
    lane_rx = [data for kind, data in rig.lane if kind == KIND_RX]
    assert lane_rx == [p for p in reference.packets if not fast_admitted(p)]
    assert [data for kind, data in rig.lane if kind == KIND_CSTP] == control_frames(
        b"".join(records)
    )
    # The keepalive and the DPD answer only moved last_rx: nothing of theirs comes back.
    assert rig.kinds() == [KIND_CSTP, KIND_RX, KIND_CSTP, KIND_RX, KIND_RX]
    # What the tunnel then does with the lane: the control frames through its CstpConnection,
    # the other packets through its full filter, gives what the event loop alone would give.
    tunnel = Reference()
    for kind, data in rig.lane:
        if kind == KIND_CSTP:
            tunnel.feed(data)
    assert (
        tunnel.cstp.frames_to_send()
        == reference.cstp.frames_to_send()
        == [frame(DPD_RESP, b"probe")]
    )
    assert tunnel.cstp.rx_unknown_frames == reference.cstp.rx_unknown_frames == 1
    rx_filter, whole_filter = new_filter(), new_filter()
    assert fast + rx_filter.admit_untrusted(lane_rx) == whole_filter.admit_untrusted(
        reference.packets
    )
    assert rx_filter.dropped == whole_filter.dropped
    assert sum(whole_filter.dropped) == 2
    rxp, rxb, txp, txb, dropped, last_rx, last_activity, refused = rig.pipe.take_stats()
    assert (rxp, rxb) == (reference.cstp.rx_packets, reference.cstp.rx_bytes) == (5, 324)
    assert (txp, txb, dropped, refused) == (0, 0, 0, 0)
    assert 0 < last_rx <= time.monotonic()
    assert last_activity == last_rx
    rig.quiet()

    # Towards the client: one DATA frame per record, in order; what does not fit comes back.
    out = [ipv4(100, tag=10), ipv6(1400, tag=11), ipv4(MAX_PAYLOAD + 1 - 20, tag=12),
           ipv4(0, proto=1, tag=13)]  # fmt: skip
    rig.tun_write(*out)
    assert rig.received(3) == [frame(DATA, p) for p in (out[0], out[1], out[3])]
    rig.drain(lambda lane: len(lane) == 6)
    assert rig.lane[-1] == (KIND_TX, out[2])
    assert rig.pipe.take_stats()[:5] == (0, 0, 3, len(out[0]) + len(out[1]) + len(out[3]), 0)

    # Python's own frames (DPD answers, the packets it handed back) go the same way.
    rig.pipe.send([frame(DPD_RESP, b"probe"), frame(DATA, out[2][:MAX_PAYLOAD])])
    assert rig.received(2) == [frame(DPD_RESP, b"probe"), frame(DATA, out[2][:MAX_PAYLOAD])]

    # Closing at a quiet moment: nothing unsent, nothing unread; the endpoint carries on.
    assert rig.release() == (b"", b"")
    rig.server.send(frame(KEEPALIVE))
    assert rig.client.open(rig.server.data_to_send()) == [frame(KEEPALIVE)]
    assert rig.server.receive_data(rig.client.seal(frame(DATA, good4)), 2.0) == frame(DATA, good4)


# -- hand-backs: the stream continues in Python -------------------------------------------------


@pytest.mark.parametrize("suite", ["tls12-aes128-gcm", "tls13-chacha20"])
def test_a_frame_split_over_two_records_is_handed_back(
    make_rig: Callable[..., Rig], suite: str
) -> None:
    rig = make_rig(suite)
    first, split, after = ipv4(30, tag=1), frame(DATA, ipv4(200, tag=2)), ipv4(50, tag=3)
    records = [
        frame(DATA, first) + frame(DPD_REQ, b"x") + split[:100],
        split[100:] + frame(DATA, after),
        frame(KEEPALIVE),
    ]
    wire = rig.send(*records)
    assert rig.tun_read(1) == [first]
    back = rig.handed_back()
    assert rig.lane == [
        (KIND_CSTP, frame(DPD_REQ, b"x")),
        (KIND_CSTP, split[:100]),
        (KIND_BACK, b"".join(split_records(wire)[1:])),
    ]
    rig.quiet()
    # The tunnel: its CstpConnection gets the lane's bytes, then the endpoint's plaintext.
    tunnel = Reference()
    tunnel.absorb(rig.stats)
    for _kind, data in rig.lane[:-1]:
        tunnel.feed(data)
    assert tunnel.cstp.buffered == 100
    tunnel.feed(rig.server.receive_data(back, 1.0))
    reference = Reference()
    reference.feed(b"".join(records))
    assert tunnel.packets == [split[8:], after] == reference.packets[1:]
    assert tunnel.cstp.frames_to_send() == reference.cstp.frames_to_send()
    assert tunnel.events == reference.events == []
    counted = (3, len(first) + len(split) - 8 + len(after))
    assert (tunnel.cstp.rx_packets, tunnel.cstp.rx_bytes) == counted
    assert (reference.cstp.rx_packets, reference.cstp.rx_bytes) == counted
    # Both directions go on from the endpoint, and the connection can go back to the thread.
    rig.server.send(frame(DATA, ipv4(10, tag=4)))
    assert rig.client.open(rig.server.data_to_send()) == [frame(DATA, ipv4(10, tag=4))]
    rig.attach()
    rig.send(frame(DATA, ipv4(20, tag=5)))
    assert rig.tun_read(1) == [ipv4(20, tag=5)]
    rig.tun_write(ipv4(30, tag=6))
    assert rig.received(1) == [frame(DATA, ipv4(30, tag=6))]


@pytest.mark.parametrize(
    "bad",
    [
        frame(DATA, ipv4(10))[:3] + b"\x02" + frame(DATA, ipv4(10))[4:],  # bad magic
        frame(DATA, ipv4(10))[:7] + b"\x01" + ipv4(10),  # reserved byte
        b"STF\x01" + struct.pack("!HBB", MAX_PAYLOAD + 1, DATA, 0) + bytes(MAX_PAYLOAD + 1),
        b"STF\x01" + struct.pack("!HBB", MAX_PAYLOAD + 1, DPD_REQ, 0),  # too long, header only
        b"GET / HTTP/1.1\r\n\r\n",
    ],
    ids=["magic", "reserved", "too-long", "too-long-header", "garbage"],
)
def test_a_malformed_frame_ends_the_threads_part(make_rig: Callable[..., Rig], bad: bytes) -> None:
    rig = make_rig()
    good = ipv4(20, tag=1)
    rest = bad + frame(DATA, ipv4(20, tag=2))
    records = [frame(DATA, good) + rest, frame(DATA, ipv4(20, tag=3))]
    wire = rig.send(*records)
    assert rig.tun_read(1) == [good]
    back = rig.handed_back()
    assert rig.lane == [(KIND_CSTP, rest), (KIND_BACK, split_records(wire)[1])]
    rig.quiet()
    reference, tunnel = Reference(), Reference()
    reference.feed(b"".join(records))
    tunnel.absorb(rig.stats)
    tunnel.feed(rest)
    tunnel.feed(rig.server.receive_data(back, 1.0))
    assert reference.packets == [good]
    assert tunnel.packets == []
    assert len(reference.events) == 1
    assert isinstance(reference.events[0], ProtocolFailed)
    assert tunnel.events == reference.events
    assert (tunnel.cstp.rx_packets, tunnel.cstp.rx_bytes) == (1, len(good))


def test_an_incomplete_header_at_a_record_end_is_handed_back(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("tls12-chacha20")
    whole = frame(DATA, ipv4(40, tag=1))
    records = [frame(KEEPALIVE) + whole[:5], whole[5:]]
    wire = rig.send(*records)
    back = rig.handed_back()
    assert rig.lane == [(KIND_CSTP, whole[:5]), (KIND_BACK, split_records(wire)[1])]
    assert rig.stats[5] > 0, "the keepalive moved last_rx"
    tunnel = Reference()
    for _kind, data in rig.lane[:-1]:
        tunnel.feed(data)
    assert tunnel.cstp.buffered == 5
    tunnel.feed(rig.server.receive_data(back, 1.0))
    assert tunnel.packets == [whole[8:]]
    assert tunnel.events == []


def test_close_notify_is_handed_back_with_the_exact_bytes(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("tls12-aes128-gcm")
    data = rig.client.seal(frame(DATA, ipv4(20, tag=1)))
    with contextlib.suppress(SSL.WantReadError):
        rig.client.conn.shutdown()
    alert = rig.client.wire()
    assert alert[0] == 21
    rig.peer.sendall(data + alert)
    assert rig.tun_read(1) == [ipv4(20, tag=1)]
    back = rig.handed_back()
    assert rig.lane == [(KIND_BACK, alert)]
    assert not rig.server.peer_closed(), "a TLS 1.2 alert is a plaintext record: Python reads it"
    assert rig.server.receive_data(back, 1.0) == b""
    assert rig.server.closed
    assert rig.server.peer_closed()


@pytest.mark.parametrize(
    "header",
    [
        b"\x15\x03\x03\x00\x02",  # a plaintext alert
        b"\x14\x03\x03\x00\x01",  # ChangeCipherSpec
        b"\x16\x03\x03\x00\x04",  # handshake
        b"\x18\x03\x03\x00\x03",  # heartbeat
        b"\x17\x03\x03\x48\x01",  # application_data, longer than 5 + 16384 + 2048
        b"\x00\x00\x00\x00\x00",
    ],
    ids=["alert", "change-cipher-spec", "handshake", "heartbeat", "oversized", "type-0"],
)
def test_records_the_thread_does_not_read_are_handed_back(
    make_rig: Callable[..., Rig], header: bytes
) -> None:
    rig = make_rig()
    data = rig.client.seal(frame(DATA, ipv4(20, tag=1)))
    hostile = header + b"\x02\x28\x01\x02\x03\x04 and whatever follows"
    rig.peer.sendall(data + hostile)
    assert rig.tun_read(1) == [ipv4(20, tag=1)]
    rig.drain(lambda lane: bool(lane))
    assert rig.lane == [(KIND_BACK, hostile)]
    assert rig.release() == (b"", b"")
    rig.quiet()


def test_the_longest_record_is_waited_for(make_rig: Callable[..., Rig]) -> None:
    """5 + 16384 + 2048 bytes is still a record (RFC 5246 §6.2.3): the thread waits for it; what
    it holds comes back from close() as ``unread``."""
    rig = make_rig()
    partial = b"\x17\x03\x03\x48\x00" + bytes(1000)
    rig.peer.sendall(partial)
    rig.settled()
    rig.drain(lambda lane: True)
    assert rig.lane == []
    assert rig.release() == (b"", partial)


def test_tls12_renegotiation_is_handed_back_and_completed_in_python(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig("tls12-aes128-gcm", renegotiation=True)
    assert rig.client.conn.renegotiate()
    with contextlib.suppress(SSL.WantReadError):
        rig.client.conn.do_handshake()
    hello = rig.client.wire()
    assert hello[0] == 22
    rig.peer.sendall(hello)
    back = rig.handed_back()
    assert rig.lane == [(KIND_BACK, hello)]
    plaintext = rig.server.receive_data(back, 10.0)
    for _ in range(10):
        rig.client.conn.bio_write(rig.server.data_to_send())
        with contextlib.suppress(SSL.WantReadError):
            rig.client.conn.do_handshake()
        out = rig.client.wire()
        if not out:
            break
        plaintext += rig.server.receive_data(out, 10.0)
    assert plaintext == b""
    assert rig.server.renegotiations == 1
    assert rig.client.conn.total_renegotiations() == 1
    # Rekeyed, the connection goes back to the thread and carries data both ways.
    rig.attach()
    rig.send(frame(DATA, ipv4(30, tag=2)))
    assert rig.tun_read(1) == [ipv4(30, tag=2)]
    rig.tun_write(ipv4(40, tag=3))
    assert rig.received(1) == [frame(DATA, ipv4(40, tag=3))]


@pytest.mark.parametrize("suite", ["tls12-chacha20", "tls13-aes256-gcm"])
def test_a_tampered_record_fails_the_pipe(make_rig: Callable[..., Rig], suite: str) -> None:
    rig = make_rig(suite)
    wire = bytearray(rig.client.seal(frame(DATA, ipv4(20, tag=1)), frame(DATA, ipv4(20, tag=2))))
    wire[-3] ^= 0x40  # In the second record's tag.
    rig.peer.sendall(wire)
    assert rig.tun_read(1) == [ipv4(20, tag=1)]
    rig.drain(lambda lane: bool(lane))
    assert [kind for kind, _ in rig.lane] == [KIND_FAILED]
    code = int.from_bytes(rig.lane[0][1], "big")
    assert len(rig.lane[0][1]) == 8
    assert (code >> 23) & 0xFF == 20  # ERR_LIB_SSL (OpenSSL 3 packing, err.h)
    assert code & 0x7FFFFF == 281  # SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC (sslerr.h)
    with pytest.raises(OSError, match="the TLS connection failed earlier"):
        rig.pipe.send([frame(KEEPALIVE)])
    # The alert OpenSSL wrote, bad_record_mac (encrypted), was sent by the thread itself with what
    # was waiting: the socket had room, so nothing is left for the caller.
    assert rig.release() == (b"", b"")
    assert ready([rig.peer], WAIT)
    rig.ciphertext += rig.peer.recv(65536)
    rig.client.conn.bio_write(rig.ciphertext)
    with pytest.raises(SSL.Error, match="bad record mac"):
        rig.client.conn.recv(100)


def test_eof_hands_back_what_was_held(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    wire = rig.client.seal(frame(DATA, ipv4(20, tag=1)), frame(DATA, ipv4(20, tag=2)))
    first = len(split_records(wire)[0])
    rig.peer.sendall(wire[: first + 7])
    assert rig.tun_read(1) == [ipv4(20, tag=1)]
    rig.peer.shutdown(socket.SHUT_WR)
    rig.drain(lambda lane: bool(lane))
    assert rig.lane == [(KIND_BACK, wire[first : first + 7])]
    assert rig.release() == (b"", b"")
    assert rig.server.receive_data(rig.lane[0][1] + wire[first + 7 :], 1.0) == frame(
        DATA, ipv4(20, tag=2)
    )


def test_eof_at_a_record_boundary(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("tls12-aes128-gcm")
    rig.peer.shutdown(socket.SHUT_WR)
    rig.drain(lambda lane: bool(lane))
    assert rig.lane == [(KIND_BACK, b"")]
    assert rig.release() == (b"", b"")


# -- Python's frames, back-pressure, close() ----------------------------------------------------


def test_python_frames_interleave_in_order(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("tls13-chacha20")
    expected: list[bytes] = []
    for round_ in range(5):
        packet = ipv4(50 + round_, tag=round_)
        rig.tun_write(packet)
        expected.append(frame(DATA, packet))
        assert rig.received(1) == expected[-1:]
        mine = [frame(DPD_RESP, bytes([round_]) * round_), frame(DATA, ipv6(30, tag=round_))]
        rig.pipe.send(mine)
        expected += mine
        assert rig.received(2) == mine
    # A burst from both: each frame is one record and each side's order is kept.
    burst = [ipv4(60, tag=100 + i) for i in range(40)]
    rig.tun_write(*burst[:20])
    python = [frame(KEEPALIVE, bytes([i])) for i in range(10)]
    rig.pipe.send(python)
    rig.tun_write(*burst[20:])
    got = rig.received(50)
    assert [f for f in got if f[6] == DATA] == [frame(DATA, p) for p in burst]
    assert [f for f in got if f[6] != DATA] == python
    with pytest.raises(ValueError, match="1 to 16384 bytes"):
        rig.pipe.send([b""])
    with pytest.raises(ValueError, match="1 to 16384 bytes"):
        rig.pipe.send([bytes(16385)])
    with pytest.raises(TypeError):
        rig.pipe.send((frame(KEEPALIVE),))
    rig.quiet()


def stall(rig: Rig, size: int = 1400) -> list[bytes]:
    """Write TUN packets while the client does not read until the pipe stops reading the TUN
    device (its queue stays full); the packets written."""
    written: list[bytes] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        packet = ipv4(size, tag=len(written))
        try:
            rig.tun_peer.send(packet)
        except BlockingIOError:
            if not ready([rig.tun_peer], 0.5, select.POLLOUT):
                return written
            continue
        written.append(packet)
    raise AssertionError("the pipe kept reading the TUN device")


def test_back_pressure_stops_reading_the_tun_and_loses_nothing(
    make_rig: Callable[..., Rig],
) -> None:
    """A client that does not read: the thread stops reading the TUN device once TLS_OUT_HIGH of
    ciphertext waits (``unsent``); Python's frames are not bounded by the thread, but ``unsent``
    counts each of their records, and the tunnel stops adding its own beyond
    ``_TLS_PIPE_UNSENT_LIMIT`` (a client flooding DPD requests cannot grow the pipe without end)."""
    rig = make_rig("tls12-aes128-gcm")
    overhead = 5 + 8 + 16  # A TLS 1.2 AES-GCM record: header, explicit nonce, tag.
    written = stall(rig)
    # The thread holds at least TLS_OUT_HIGH and at most one record beyond what the socket holds.
    assert ready([rig.tun], 0), "the TUN queue was drained"
    assert len(written) < 2000
    unsent = rig.pipe.unsent
    assert TLS_OUT_HIGH <= unsent < TLS_OUT_HIGH + overhead + 8 + len(written[0])
    # Receiving still works meanwhile.
    rig.send(frame(DATA, ipv4(20, tag=9999)))
    assert rig.tun_read(1) == [ipv4(20, tag=9999)]
    assert rig.pipe.unsent == unsent
    # Python's frames queue behind the thread's, each record counted in ``unsent``; the tunnel's
    # rule (``_flush``) stops at the limit, dropping its frames as a full transport does.
    limit = _tunnel._TLS_PIPE_UNSENT_LIMIT
    python: list[bytes] = []
    while rig.pipe.unsent <= limit:
        echo = frame(DPD_RESP, len(python).to_bytes(4, "big") + bytes(1396))
        before = rig.pipe.unsent
        rig.pipe.send([echo])
        assert rig.pipe.unsent == before + overhead + len(echo)
        python.append(echo)
    assert limit < rig.pipe.unsent <= limit + overhead + len(python[0])
    # The client reads again: every packet arrives once, in order, the rest keeps flowing.
    more = [ipv4(1400, tag=len(written) + i) for i in range(300)]
    got: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(got) < len(written) + len(more) + len(python):
        assert time.monotonic() < deadline
        got += rig.received(1)
        while more and len(got) > 50:
            try:
                rig.tun_peer.send(more[0])
            except BlockingIOError:
                break
            written.append(more.pop(0))
    data = [f for f in got if f[6] == DATA]
    assert data == [frame(DATA, p) for p in written]
    assert [f for f in got if f[6] != DATA] == python
    assert rig.pipe.take_stats()[2] == len(written)
    assert rig.pipe.unsent == 0
    rig.quiet()


def test_close_returns_unsent_and_unread_and_the_endpoint_continues(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig("tls13-aes256-gcm")
    written = stall(rig)
    wire = rig.client.seal(frame(DATA, ipv4(20, tag=7)), frame(KEEPALIVE))
    first = len(split_records(wire)[0])
    rig.peer.sendall(wire[: first + 3])
    assert rig.tun_read(1) == [ipv4(20, tag=7)]
    rig.settled()
    waiting = rig.pipe.unsent
    unsent, unread = rig.release()
    assert len(unsent) == waiting >= TLS_OUT_HIGH
    assert unread == wire[first : first + 3]
    # The tunnel writes ``unsent`` first, then reads the TUN device itself and sends through the
    # endpoint: the client sees one ordered stream.
    python_sent = []
    with contextlib.suppress(BlockingIOError):
        while True:
            python_sent.append(rig.tun.recv(65536))
    assert python_sent, "the stalled pipe had left packets in the TUN queue"
    for packet in python_sent:
        rig.server.send(frame(DATA, packet))
    tail = unsent + rig.server.data_to_send()
    got: list[bytes] = []
    deadline = time.monotonic() + 20
    while True:
        assert time.monotonic() < deadline
        try:
            rig.ciphertext += rig.peer.recv(1 << 20)
        except BlockingIOError:
            break
        got += rig.client.open(rig.whole_records())
    rig.ciphertext += tail
    got += rig.client.open(rig.whole_records())
    assert rig.ciphertext == b""
    packets = [f[8:] for f in got]
    assert packets == written == packets[: len(written)]
    # The endpoint reads on from what the thread held.
    assert rig.server.receive_data(unread + wire[first + 3 :], 1.0) == frame(KEEPALIVE)
    rig.send(frame(DATA, ipv4(10, tag=8)))
    assert rig.server.receive_data(rig.net.recv(65536), 1.0) == frame(DATA, ipv4(10, tag=8))


# -- the lane all tunnels share ------------------------------------------------------------------


def test_one_pipe_queues_at_most_its_bound_and_other_pipes_still_get_theirs(
    make_rig: Callable[..., Rig],
) -> None:
    """PIPE_LANE_MAX: a record full of DPD requests, unknown frames or filtered DATA queues the
    pipe's first 512 items; the rest of that record is dropped and counted in ``lane_dropped``
    (a record the thread has decrypted cannot wait), and the thread reads no further record of
    that client until Python drains. So one client cannot fill the lane (LANE_MAX_ITEMS, 4096)
    another tunnel's pipe shares. The items of a hand-back are never dropped."""
    rig = make_rig("tls13-aes256-gcm")
    other = make_rig("tls12-chacha20", engine=rig.engine)
    lanes: dict[int, list[tuple[int, bytes]]] = {rig.pipe_id: [], other.pipe_id: []}

    def drain(until: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while not until():
            assert time.monotonic() < deadline, {k: len(v) for k, v in lanes.items()}
            ready([rig.engine.fileno()], 0.05)
            for pipe_id, kind, data in rig.engine.drain():
                lanes[pipe_id].append((kind, data))

    spoofed = ipv4(0, source=OTHER4)
    cycle = [frame(DPD_REQ), frame(0x42, b"?"), frame(KEEPALIVE), frame(DATA, spoofed)]
    flood = cycle * (16384 // len(b"".join(cycle)))
    rig.send(b"".join(flood))
    rig.settled()
    items = [f for f in flood if f[6] != KEEPALIVE]
    expected = [(KIND_RX, f[8:]) if f[6] == DATA else (KIND_CSTP, f) for f in items]
    drain(lambda: len(lanes[rig.pipe_id]) >= PIPE_LANE_MAX)
    assert lanes[rig.pipe_id] == expected[:PIPE_LANE_MAX]
    assert rig.engine.lane_dropped == len(items) - PIPE_LANE_MAX
    assert rig.pipe.take_stats()[:2] == (len(flood) // 4, len(flood) // 4 * len(spoofed))
    # Three more such records at once, the lane not drained: the thread reads the first, keeps
    # 512 of its 2048 requests, and waits; the other tunnel's items still find room.
    dropped = rig.engine.lane_dropped
    for _ in range(3):
        rig.send(frame(DPD_REQ) * 2048)
    deadline = time.monotonic() + WAIT
    while rig.engine.lane_dropped < dropped + 2048 - PIPE_LANE_MAX:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.1)
    assert rig.engine.lane_dropped == dropped + 2048 - PIPE_LANE_MAX
    mine = [frame(DPD_REQ, b"other"), frame(DATA, ipv4(20, source=OTHER4, tag=5))]
    other.send(mine[0] + frame(DATA, ipv4(20, tag=6)) + mine[1])
    assert other.tun_read(1) == [ipv4(20, tag=6)]
    # Each drain lets the thread read the next record.
    drain(lambda: len(lanes[rig.pipe_id]) == 4 * PIPE_LANE_MAX and len(lanes[other.pipe_id]) == 2)
    assert lanes[other.pipe_id] == [(KIND_CSTP, mine[0]), (KIND_RX, mine[1][8:])]
    assert lanes[rig.pipe_id][PIPE_LANE_MAX:] == [(KIND_CSTP, frame(DPD_REQ))] * (3 * PIPE_LANE_MAX)
    assert rig.engine.lane_dropped == dropped + 3 * (2048 - PIPE_LANE_MAX)
    rig.settled()
    # Beyond the bound, a frame the thread does not take still comes back with the rest of its
    # record, and the hand-back with the ciphertext after it.
    del lanes[rig.pipe_id][:]
    dropped = rig.engine.lane_dropped
    tail = b"STF\x01 not a frame"
    wire = rig.send(frame(DPD_REQ) * 2000 + tail, frame(DATA, ipv4(20, tag=7)))
    drain(lambda: bool(lanes[rig.pipe_id]) and lanes[rig.pipe_id][-1][0] == KIND_BACK)
    assert lanes[rig.pipe_id] == [(KIND_CSTP, frame(DPD_REQ))] * PIPE_LANE_MAX + [
        (KIND_CSTP, tail),
        (KIND_BACK, split_records(wire)[1]),
    ]
    assert rig.engine.lane_dropped == dropped + 2000 - PIPE_LANE_MAX
    rig.quiet()
    # The other pipe goes on; a failure after its bound still comes back too, once drained.
    other.tun_write(ipv4(30, tag=8))
    assert other.received(1) == [frame(DATA, ipv4(30, tag=8))]
    dropped = rig.engine.lane_dropped
    tampered = bytearray(other.client.seal(frame(DPD_REQ) * 2048, frame(DATA, ipv4(20, tag=9))))
    tampered[-3] ^= 0x40  # In the second record's tag.
    other.peer.sendall(tampered)
    drain(lambda: bool(lanes[other.pipe_id]) and lanes[other.pipe_id][-1][0] == KIND_FAILED)
    assert lanes[other.pipe_id][2:-1] == [(KIND_CSTP, frame(DPD_REQ))] * PIPE_LANE_MAX
    assert len(lanes[other.pipe_id][-1][1]) == 8
    assert rig.engine.lane_dropped == dropped + 2048 - PIPE_LANE_MAX


def test_take_gives_a_closed_pipes_items_in_order_and_leaves_the_others(
    make_rig: Callable[..., Rig],
) -> None:
    """``Engine.take``: when the tunnel closes a pipe itself (a DTLS association takes the TUN
    device), what the thread handed back and the event loop has not drained yet must not be lost:
    a hand-back's plaintext and ciphertext are the rest of the TLS stream. ``take`` moves that
    pipe's items out of the lane, in order, and leaves every other pipe's."""
    rig = make_rig("tls13-aes256-gcm")
    other = make_rig("tls12-chacha20", engine=rig.engine)
    split = frame(DATA, ipv4(200, tag=2))
    other.send(frame(DPD_REQ, b"other"))
    other.settled()
    wire = rig.send(frame(DPD_REQ, b"x") + split[:100], split[100:])
    rig.settled()
    unsent, unread = rig.pipe.close()
    assert (unsent, unread) == (b"", b"")
    taken = rig.engine.take(rig.pipe_id)
    assert taken == [
        (KIND_CSTP, frame(DPD_REQ, b"x")),
        (KIND_CSTP, split[:100]),
        (KIND_BACK, split_records(wire)[1]),
    ]
    assert rig.engine.take(rig.pipe_id) == []
    assert rig.engine.drain() == [(other.pipe_id, KIND_CSTP, frame(DPD_REQ, b"other"))]
    rig.pipe = None  # Closed above.


def test_a_pipe_with_its_bound_waiting_is_not_read_until_drained(
    make_rig: Callable[..., Rig],
) -> None:
    """PIPE_LANE_MAX: once 512 of one pipe's items wait in the lane, the thread stops reading its
    socket (TCP holds the rest, and the client's sending slows, as the event loop's transport
    would make it) until Python drains; then it reads on, losing nothing, in order. Another
    tunnel's pipe is served meanwhile."""
    rig = make_rig("tls13-aes256-gcm")
    other = make_rig("tls12-chacha20", engine=rig.engine)
    records = [frame(DPD_REQ, b"%03d" % i) * ITEMS_PER_WAKE for i in range(12)]  # 768 items
    for record in records:
        rig.send(record)
        time.sleep(0.01)
    time.sleep(0.2)
    unread = struct.unpack("i", fcntl.ioctl(rig.net, termios.FIONREAD, bytes(4)))[0]
    assert unread > 0  # The thread stopped reading.
    other.send(frame(DPD_REQ, b"other"))
    other.settled()
    lanes: dict[int, list[bytes]] = {rig.pipe_id: [], other.pipe_id: []}
    for pipe_id, kind, data in rig.engine.drain():
        assert kind == KIND_CSTP
        lanes[pipe_id].append(data)
    assert lanes[other.pipe_id] == [frame(DPD_REQ, b"other")]
    assert PIPE_LANE_MAX <= len(lanes[rig.pipe_id]) < len(records) * ITEMS_PER_WAKE
    assert rig.engine.lane_dropped == 0
    deadline = time.monotonic() + WAIT
    while len(lanes[rig.pipe_id]) < len(records) * ITEMS_PER_WAKE:
        assert time.monotonic() < deadline, len(lanes[rig.pipe_id])
        ready([rig.engine.fileno()], 0.05)
        lanes[rig.pipe_id] += [data for _, _, data in rig.engine.drain()]
    assert b"".join(lanes[rig.pipe_id]) == b"".join(records)
    rig.settled()


# -- counters and the idle rule -----------------------------------------------------------------


def test_stats_and_idle_times(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    assert rig.pipe.take_stats() == (0, 0, 0, 0, 0, 0.0, 0.0, 0)
    ping = ipv4(36, proto=1, tag=1)
    rig.send(frame(DATA, ping))
    rig.tun_read(1)
    stats = rig.pipe.take_stats()
    assert stats[:5] == (1, len(ping), 0, 0, 0)
    assert stats[5] > 0
    assert stats[6] == 0.0
    # Liveness frames move last_rx alone, in the thread: nothing comes back for them.
    last_rx = stats[5]
    for ptype in LIVENESS:
        rig.send(frame(ptype, b"alive"))
        rig.settled()
        stats2 = rig.pipe.take_stats()
        assert stats2[:5] == (0, 0, 0, 0, 0)
        assert stats2[5] > last_rx, ptype
        assert stats2[6] == 0.0
        last_rx = stats2[5]
    assert rig.engine.drain() == []
    rig.tun_write(ipv6(20, nxt=58, tag=2))
    rig.received(1)
    stats3 = rig.pipe.take_stats()
    assert stats3 == (0, 0, 1, 60, 0, stats2[5], 0.0, 0)
    udp = ipv4(30, tag=3)
    rig.tun_write(udp)
    rig.received(1)
    stats4 = rig.pipe.take_stats()
    assert stats4[:6] == (0, 0, 1, len(udp), 0, stats2[5])
    assert stats4[6] > stats2[5]
    rig.send(frame(DATA, ipv4(30, source=OTHER4, tag=4)))
    rig.drain(lambda lane: len(lane) == 1)
    assert rig.lane == [(KIND_RX, ipv4(30, source=OTHER4, tag=4))]
    stats5 = rig.pipe.take_stats()
    assert stats5[:5] == (1, 50, 0, 0, 0)
    assert stats5[6] > stats4[6]
    assert stats5[5] == stats5[6]
    # What a tunnel makes of them: CstpConnection.absorb moves its DPD and idle clocks.
    cstp = Reference().cstp
    cstp.idle_timeout = 100
    rxp, rxb, txp, txb, _dropped, last_rx, last_activity, _refused = stats5
    cstp.absorb(rxp, rxb, txp, txb, last_rx, last_activity)
    assert cstp.get_timer() == stats5[6] + 100


def _ext(nxt: int, length: int) -> bytes:
    return bytes((nxt, length)) + bytes(6 + 8 * length)


IDLE_PACKETS = st.one_of(
    st.builds(lambda proto, size: ipv4(size, proto=proto), st.sampled_from([1, 2, 6, 17, 58]),
              st.integers(0, 40)),
    st.builds(
        lambda chain, last, tail: ipv6(0, nxt=chain[0][0] if chain else last)[:40]
        + b"".join(_ext(chain[i + 1][0] if i + 1 < len(chain) else last, n)
                   for i, (_, n) in enumerate(chain)) + tail,
        st.lists(st.tuples(st.sampled_from([0, 43, 60]), st.integers(0, 2)), max_size=5),
        st.sampled_from([0, 1, 2, 6, 17, 43, 58, 60]),
        st.binary(max_size=8),
    ),
    st.binary(max_size=60),
)  # fmt: skip


@settings(max_examples=10, deadline=None)
@given(packets=st.lists(IDLE_PACKETS, min_size=1, max_size=12))
def test_idle_rule_matches_counts_for_idle(
    credentials: tuple[str, str], packets: list[bytes]
) -> None:
    """Either way, a packet moves ``last_activity`` exactly when ``counts_for_idle_untrusted``."""
    rig = Rig(credentials, "tls12-chacha20", sources=(b"", bytes(17)))
    try:
        last = 0.0
        for i, packet in enumerate(packets):
            rig.send(frame(DATA, packet))
            rig.drain(lambda lane, i=i: len(lane) == i + 1)  # type: ignore[misc]
            assert rig.lane[-1] == (KIND_RX, packet)
            now = rig.pipe.take_stats()[6]
            assert (now > last) == counts_for_idle_untrusted(packet), packet.hex()
            last = now
            if not packet:
                continue  # No empty packet comes out of a TUN device.
            rig.tun_write(packet)
            assert rig.received(1) == [frame(DATA, packet)]
            now = rig.pipe.take_stats()[6]
            assert (now > last) == counts_for_idle_untrusted(packet), packet.hex()
            last = now
    finally:
        rig.close()


# -- the property: thread == CstpConnection + PacketFilter ----------------------------------------

GOOD_SOURCES = [LEASE4.packed, OTHER4]
FRAMES = st.one_of(
    st.builds(lambda size, src, tag: frame(DATA, ipv4(size, source=src, tag=tag)),
              st.integers(0, 300), st.sampled_from(GOOD_SOURCES), st.integers(0, 1 << 16)),
    st.builds(lambda size, tag: frame(DATA, ipv6(size, tag=tag)),
              st.integers(0, 300), st.integers(0, 1 << 16)),
    st.builds(lambda size, tag: frame(DATA, ipv6(size, source=bytes(16), tag=tag)),
              st.integers(0, 100), st.integers(0, 1 << 16)),
    st.builds(lambda data: frame(DATA, data), st.binary(max_size=60)),
    st.builds(frame, st.sampled_from([DPD_REQ, DPD_RESP, KEEPALIVE, TERMINATE, 0x42, 0xFF]),
              st.binary(max_size=30)),
)  # fmt: skip
JUNK = st.one_of(
    st.binary(min_size=1, max_size=40),
    st.builds(lambda f, at, b: f[:at] + bytes([b]) + f[at + 1 :], FRAMES, st.integers(0, 7),
              st.integers(0, 255)),
    st.just(b"STF\x01" + struct.pack("!HBB", MAX_PAYLOAD + 1, DATA, 0) + bytes(MAX_PAYLOAD + 1)),
    st.builds(lambda f, n: f[:n], FRAMES, st.integers(1, 20)),  # truncated: the stream ends
)  # fmt: skip
ENDERS = st.builds(frame, st.sampled_from(ENDING), st.binary(max_size=10))
"""DISCONNECT and COMPRESSED, anywhere in the stream: both end the thread's part there."""


def records_of(stream: bytes, cuts: list[int]) -> list[bytes]:
    """``stream`` cut at ``cuts`` (then at 16384 bytes: one plaintext is one record)."""
    records, pos = [], 0
    for cut in cuts:
        if pos + cut >= len(stream):
            break
        records.append(stream[pos : pos + cut])
        pos += cut
    while pos < len(stream):
        records.append(stream[pos : pos + 16384])
        pos += 16384
    return records


def thread_model(records: list[bytes]) -> tuple[list[bytes], list[tuple[int, bytes]], int | None]:
    """What the thread does with the plaintext of these records, by the rules of the module
    docstring: the packets it writes to the TUN device, the lane items before any hand-back, and
    the index of the record whose frame ends its part (``None``: it read them all)."""
    tun: list[bytes] = []
    lane: list[tuple[int, bytes]] = []
    for index, plaintext in enumerate(records):
        pos = 0
        while pos < len(plaintext):
            f = plaintext[pos:]
            size = 8 + int.from_bytes(f[4:6], "big") if len(f) >= 8 else 0
            if (
                len(f) < 8
                or f[:4] != b"STF\x01"
                or f[7] != 0
                or size - 8 > MAX_PAYLOAD
                or len(f) < size
                or f[6] in ENDING
            ):
                lane.append((KIND_CSTP, f))
                return tun, lane, index
            if f[6] == DATA:
                if fast_admitted(f[8:size]):
                    tun.append(f[8:size])
                else:
                    lane.append((KIND_RX, f[8:size]))
            elif f[6] not in LIVENESS:
                lane.append((KIND_CSTP, f[:size]))
            pos += size
    return tun, lane, None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(
        st.one_of(FRAMES, FRAMES, FRAMES, FRAMES, FRAMES, FRAMES, JUNK, ENDERS), max_size=30
    ),
    cuts=st.lists(st.integers(1, 400), max_size=20),
    chunks=st.lists(st.integers(1, 300), max_size=6),
    suite=st.sampled_from(list(SUITES)),
)
def test_the_thread_matches_cstp_and_the_filter(
    credentials: tuple[str, str],
    frames: list[bytes],
    cuts: list[int],
    chunks: list[int],
    suite: str,
) -> None:
    """``cuts`` split the plaintext stream into records, ``chunks`` the ciphertext into the
    writes the thread reads (records cut across reads: what it holds until the rest comes)."""
    marker = frame(DPD_REQ, b"end of the test stream")
    records = [*records_of(b"".join(frames), cuts), marker]
    model_tun, model_lane, ends_at = thread_model(records)
    last = model_lane[-1][1] if ends_at is not None else b""
    if ends_at is None:
        event("the thread reads every record")
    elif len(last) >= 8 and last[:4] == b"STF\x01" and last[6] in ENDING:
        event("the thread's part ends at a DISCONNECT or COMPRESSED frame")
    else:
        event("the thread's part ends at junk or a split frame")
    assert len(model_lane) < PIPE_LANE_MAX, "beyond one pipe's bound: the rig cannot tell"
    reference = Reference()
    for record in records:
        reference.feed(record)
    rig = Rig(credentials, suite)
    try:
        wire = rig.client.seal(*records)
        sealed = split_records(wire)
        assert len(sealed) == len(records)
        for size in chunks:
            rig.peer.sendall(wire[:size])
            wire = wire[size:]
            time.sleep(0.002)
        rig.peer.sendall(wire)
        rig.drain(
            lambda lane: (
                bool(lane)
                and (lane[-1][0] in (KIND_BACK, KIND_FAILED) or lane[-1] == (KIND_CSTP, marker))
            )
        )
        time.sleep(0.01)
        thread_tun = []
        with contextlib.suppress(BlockingIOError):
            while True:
                thread_tun.append(rig.tun_peer.recv(65536))
        # Exactly what the model says, the hand-back holding every record after the last read.
        assert thread_tun == model_tun
        if ends_at is None:
            assert rig.lane == model_lane
            assert rig.release() == (b"", b"")
            back = None
        else:
            back = rig.handed_back()
            assert rig.lane[:-1] == model_lane
            assert back == b"".join(sealed[ends_at + 1 :])
        assert rig.engine.lane_dropped == 0
        # What the tunnel makes of the lane and of the stream after a hand-back.
        tunnel = Reference()
        tunnel.absorb(rig.stats)
        lane_rx = []
        for kind, data in rig.lane:
            if kind == KIND_CSTP:
                tunnel.feed(data)
            elif kind == KIND_RX:
                lane_rx.append(data)
        if back is not None:
            tunnel.feed(rig.server.receive_data(back, 1.0))
        done = len(thread_tun) + len(lane_rx)
        by_thread = reference.packets[:done]
        assert thread_tun == [p for p in by_thread if fast_admitted(p)]
        assert lane_rx == [p for p in by_thread if not fast_admitted(p)]
        assert tunnel.packets == reference.packets[done:]
        assert tunnel.events == reference.events
        assert tunnel.cstp.frames_to_send() == reference.cstp.frames_to_send()
        for name in ("rx_packets", "rx_bytes", "rx_unknown_frames", "state"):
            assert getattr(tunnel.cstp, name) == getattr(reference.cstp, name), name
        # Through the tunnel's full filter, the TUN device gets what the event loop gives it.
        rx_filter, whole = new_filter(), new_filter()
        final = thread_tun + rx_filter.admit_untrusted(lane_rx + tunnel.packets)
        assert sorted(final) == sorted(whole.admit_untrusted(reference.packets))
        assert rx_filter.dropped == whole.dropped
    finally:
        rig.close()


def test_tls13_close_notify_is_handed_back(make_rig: Callable[..., Rig]) -> None:
    """In TLS 1.3 an alert travels as application_data (RFC 8446 §5.2), so the thread reads it.
    A close_notify is the client's clean goodbye, not an OpenSSL failure: SSL_read's
    SSL_ERROR_ZERO_RETURN hands the pipe back with the ciphertext after the alert, and the
    endpoint then knows the client closed (the tunnel closes as "client closed TLS")."""
    rig = make_rig("tls13-aes256-gcm")
    data = rig.client.seal(frame(DATA, ipv4(20, tag=1)))
    with contextlib.suppress(SSL.WantReadError):
        rig.client.conn.shutdown()
    alert = rig.client.wire()
    assert len(split_records(alert)) == 1
    assert alert[0] == 23, "an encrypted alert looks like data"
    after = b"\x17\x03\x03\x00\x05after"
    assert not rig.server.peer_closed()
    rig.peer.sendall(data + alert + after)
    assert rig.tun_read(1) == [ipv4(20, tag=1)]
    rig.drain(lambda lane: bool(lane))
    assert rig.lane == [(KIND_BACK, after)]
    assert rig.release() == (b"", b"")
    assert rig.server.peer_closed()
    assert rig.stats[:2] == (1, len(ipv4(20, tag=1)))
    rig.quiet()


# -- TLS 1.3 KeyUpdate from a real client --------------------------------------------------------


def test_tls13_key_update_from_the_client_keeps_data_flowing(
    credentials: tuple[str, str], tmp_path: Path
) -> None:
    """``openssl s_client``'s ``K`` sends KeyUpdate(update_requested) (pyOpenSSL has no
    ``SSL_key_update``): the thread reads it inside SSL_read, the client's new keys open what
    follows, and OpenSSL's own KeyUpdate goes out before the next record the thread writes."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl (the command) is needed")
    cert, key = credentials
    ctx = build_server_context(cert_files=(cert,), key_files=(key,),
                               policy=translate_priorities(None))  # fmt: skip
    server = TlsEndpoint(ctx)
    listener = socket.create_server(("127.0.0.1", 0))
    msgs = tmp_path / "msg.txt"
    argv = [openssl, "s_client", "-tls1_3", "-msg", "-msgfile", str(msgs),
            "-connect", f"127.0.0.1:{listener.getsockname()[1]}"]  # fmt: skip
    tun, tun_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tun_peer.settimeout(WAIT)
    engine = FASTPATH.Engine()
    with (
        listener,
        tun,
        tun_peer,
        subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc,
    ):
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        listener.settimeout(WAIT)
        conn, _ = listener.accept()
        conn.settimeout(WAIT)
        with conn:
            while not server.handshake_complete:
                flight = conn.recv(65536)
                assert flight, "s_client went away during the handshake"
                server.receive_data(flight, 0.0)
                conn.sendall(server.data_to_send())
            assert server.quiescent()
            assert _offload._bind_tls()
            pipe = engine.attach_tls(conn.fileno(), tun.fileno(), *server.handles(),
                                     *new_filter().fast_sources(), MAX_PAYLOAD)  # fmt: skip
            printed = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}

            def client_got(wanted: bytes, fd: int = proc.stdout.fileno()) -> None:
                """Wait for ``wanted`` on the client's stdout (data) or stderr (its notes)."""
                deadline = time.monotonic() + WAIT
                while wanted not in printed[fd]:
                    assert time.monotonic() < deadline, f"the client printed {printed!r}"
                    if ready([fd], 0.05):
                        printed[fd].extend(os.read(fd, 65536))

            def client_says(data: bytes) -> None:
                """One write to s_client's stdin; the test waits for its effect before the next
                (one read of stdin is one record, or one command)."""
                assert proc.stdin is not None
                proc.stdin.write(data)
                proc.stdin.flush()

            try:
                client_says(frame(DATA, ipv4(20, tag=1)))
                assert tun_peer.recv(65536) == ipv4(20, tag=1)
                tun_peer.send(ipv4(20, tag=2))
                client_got(frame(DATA, ipv4(20, tag=2)))
                client_says(b"K\n")
                client_got(b"KEYUPDATE", proc.stderr.fileno())
                client_says(frame(DATA, ipv4(20, tag=3)))
                assert tun_peer.recv(65536) == ipv4(20, tag=3)
                tun_peer.send(ipv4(20, tag=4))
                client_got(frame(DATA, ipv4(20, tag=4)))
                pipe.send([frame(DPD_RESP, b"after the update")])
                client_got(frame(DPD_RESP, b"after the update"))
                assert engine.drain() == []
                assert pipe.take_stats()[:4] == (2, 80, 2, 80)
            finally:
                pipe.close()
                engine.close()
                proc.stdin.close()
        proc.wait(timeout=WAIT)
    lines = msgs.read_text(errors="replace").splitlines()
    sent = lines.index(">>> TLS 1.3, Handshake [length 0005], KeyUpdate")
    answered = lines.index("<<< TLS 1.3, Handshake [length 0005], KeyUpdate")
    assert sent < answered


@pytest.mark.parametrize(
    ("ending", "event"),
    [
        (frame(DISCONNECT, b"\xb0client logout"), ByeReceived(code=0xB0, message="client logout")),
        (frame(COMPRESSED, ipv4(20, tag=9)),
         ProtocolFailed("COMPRESSED frame but no CSTP compression was negotiated")),
    ],
    ids=["disconnect", "compressed"],
)  # fmt: skip
def test_disconnect_and_compressed_end_the_threads_part(
    make_rig: Callable[..., Rig], ending: bytes, event: object
) -> None:
    """DISCONNECT ends the client's stream, COMPRESSED (none negotiated) is a protocol error: from
    either frame on the stream is Python's, as after a malformed frame. The rest of the record
    comes back as one KIND_CSTP item, then the ciphertext not read; the DATA after the frame, in
    its record or the next, reaches the TUN device neither way."""
    rig = make_rig("tls12-chacha20")
    first, late = frame(DATA, ipv4(20, tag=1)), frame(DATA, ipv4(20, tag=2))
    rest = ending + late + frame(DPD_REQ, b"late")
    records = [first + rest, frame(DATA, ipv4(20, tag=3))]
    wire = rig.send(*records)
    assert rig.tun_read(1) == [ipv4(20, tag=1)]
    back = rig.handed_back()
    assert rig.lane == [(KIND_CSTP, rest), (KIND_BACK, split_records(wire)[1])]
    rig.quiet()
    reference, tunnel = Reference(), Reference()
    reference.feed(b"".join(records))
    tunnel.absorb(rig.stats)
    tunnel.feed(rest)
    tunnel.feed(rig.server.receive_data(back, 1.0))
    assert reference.packets == [ipv4(20, tag=1)]
    assert tunnel.packets == []
    assert tunnel.events == reference.events == [event]
    assert tunnel.cstp.frames_to_send() == reference.cstp.frames_to_send() == []
    assert tunnel.cstp.state is reference.cstp.state
    assert (tunnel.cstp.rx_packets, tunnel.cstp.rx_bytes) == (1, len(ipv4(20, tag=1)))


def test_attach_checks_its_arguments(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    handles = rig.server.handles()
    for src4, src6, max_payload, message in ((b"\x01\x02\x03", b"", 1500, "src4"),
                                             (b"", bytes(18), 1500, "src4"),
                                             (b"", b"", -1, "max_payload")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            rig.engine.attach_tls(rig.net.fileno(), rig.tun.fileno(), *handles, src4, src6,
                                  max_payload)  # fmt: skip
    with pytest.raises(ValueError, match="ssl"):
        rig.engine.attach_tls(rig.net.fileno(), rig.tun.fileno(), 0, *handles[1:], b"", b"", 1)
    pipe = rig.pipe
    rig.release()
    with pytest.raises(ValueError, match="closed"):
        pipe.send([frame(KEEPALIVE)])
    with pytest.raises(ValueError, match="closed"):
        pipe.take_stats()
