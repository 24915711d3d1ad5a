"""The TLS side of the data-path thread (``Engine.attach_tls``, src/ocgate/_dataplane.c "TLS pipes")
against a model, and the whole (thread + what the event loop does with the lane) against the
Python reference (``CstpConnection`` + ``PacketFilter``).

One engine (one C thread) per process; each input completes a real TLS handshake between a
pyOpenSSL client over memory BIOs and the gateway's ``TlsEndpoint`` (``build_server_context``,
renegotiation allowed as with ``rekey-method = ssl``), then attaches a pipe: an ``AF_UNIX``
``SOCK_STREAM`` socket pair stands in for the TCP connection (the target holds the client's end)
and an ``AF_UNIX`` ``SOCK_SEQPACKET`` pair for the TUN device (the target holds the kernel's end).
The first byte picks TLS 1.2 or 1.3 (bit 0), AES-GCM or ChaCha20 (bit 1), the session's sources
(bits 2-3: the IPv4 lease, the IPv6 /64, or both) and ``max_payload`` (bits 4-5). Then operations,
tag % 16:

0. CSTP frames the fuzzer describes (DATA from the lease, the /64, other or malformed sources;
   DPD, keepalive, unknown types; bad magic, reserved byte, lengths over ``max_payload``; raw
   bytes) as plaintext, cut into genuine records where the fuzzer says (frames across records);
1. the payload as the plaintext of one genuine record (with bit 4 of the tag: the payload after
   two length bytes, repeated to that length, up to 2^14);
2. the payload as raw bytes on the socket (garbage, records from scratch, pieces of records);
3. a record header from the fuzzer (type, version, length) and a body;
4. a genuine record of one admitted DATA frame with a byte changed, cut short, bytes appended, or
   never sent (a gap in the sequence numbers);
5. up to eight TUN packets of lengths the fuzzer picks (empty, over ``max_payload``, over 2^14;
   lengths from 0xFF00 on: one byte under, at, over and two over ``max_payload`` or 2^14 - 8);
6. frames from Python (``Pipe.send``: DPD-RESP, keepalive, DPD-REQ with payloads), sent (tag bits
   4-6) while the thread reads a record, encrypts TUN packets or fails on a forged record;
7. the client stops (or starts again) reading: back-pressure up to the pipe's 256 KiB and beyond;
8. the client's close_notify;
9. a TLS 1.2 renegotiation started by the client (TLS 1.3: as 0);
10. the end of the client's stream (``shutdown(SHUT_WR)``);
11. the event loop takes the connection back (``close()``, as when DTLS comes up);
12. a burst of admitted DATA records in one write (bit 4 of the tag: up to 64 of them, bit 5: of
    lengths up to 1400 bytes: more than one read of the socket);
13-15. as 0, 5 and 12.

After a hand-back (``KIND_BACK``) or a ``close()`` the connection continues in Python as the
tunnel does it (``_disengage_tls``): ``unsent`` goes to the client first, ``unread`` and what is
left in the socket are fed to the ``TlsEndpoint`` record by record, its plaintext to a
``CstpConnection``; the client's renegotiation completes there; as soon as the endpoint is
``quiescent()`` and no frame is half received, a new pipe is attached (``_engage_tls``).

Oracle (``AssertionError`` on any difference):

* the thread, exactly: a pure-Python port of its rules predicts every TUN write (byte for byte, in
  order), every lane item (``KIND_CSTP``/``KIND_RX``/``KIND_BACK``/``KIND_FAILED`` in stream order,
  ``KIND_TX`` in TUN order), every record the client receives (one DATA frame per TUN packet, in
  order; Python's frames in order), the counters and
  ``last_rx``/``last_activity`` (``counts_for_idle_untrusted``). A record is read only if it is
  the next genuine record byte for byte (anything else fails OpenSSL's MAC check: ``KIND_FAILED``);
  the bytes of a hand-back followed by what is left in the socket are the stream from that record
  on; ``close()`` returns what the thread held (``unread`` + the socket's rest = the stream after
  the last record read; ``unsent`` + what the client received = everything sent);
* the whole: the packets written to the TUN device by the thread and by the event loop (``KIND_RX``
  through the full filter, ``KIND_CSTP`` and the Python part of the stream through one
  ``CstpConnection``) are those the reference (the decrypted stream through one
  ``CstpConnection``, its packets through ``PacketFilter.admit_untrusted``) delivers, in order,
  and nothing after the reference connection ends (DISCONNECT, COMPRESSED, a bad frame: the thread
  hands those back); the thread takes DPD-RESP, keepalive and TERMINATE itself (``last_rx``) and
  may drop lane items beyond ``PIPE_LANE_MAX`` of one pipe waiting in the lane (a flood of
  control frames or spoofed packets in one record): then the dropped items must be budgeted ones,
  counted in ``lane_dropped``, and what is delivered is the reference less those;
* after the hand-back the endpoint decrypts exactly the genuine records (a forged one fails or is
  ignored, never yields plaintext), and at the end a fresh pipe (or the endpoint) still carries one
  packet each way.

Coverage feedback comes from the Python side only (the model, the filter, the CSTP core, the TLS
endpoint): the C thread is not instrumented, so the structured operations above are what reaches
its branches.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import shutil
import socket
import struct
import tempfile
import termios
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness
import atheris
from _datapath import LEASE, LEASE6, ip_packet, operations, short, wait_for_thread
from OpenSSL import SSL
from OpenSSL._util import lib as _lib

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate import _fastpath  # type: ignore[attr-defined]
    from ocgate.cstp import counts_for_idle_untrusted
    from ocgate.cstp._connection import CstpConnection, CstpState
    from ocgate.cstp.events import ByeReceived, PacketsReceived, ProtocolFailed
    from ocgate.daemon import _offload
    from ocgate.ipfilter import PacketFilter
    from ocgate.tls import TlsEndpoint, TlsFailure, build_server_context, translate_priorities

from tests.pki import make_pki

MAX_PAYLOADS = (1406, 200, 16384, 65535)
TLS_RECORD_MAX = 5 + 16384 + 2048
"""Longer records are handed back unread (``_dataplane.c`` ``TLS_RECORD_MAX``)."""
MAX_PLAINTEXT = 16384
QUIET = 0.002
BURST = 8
MAX_TUN_PACKET = 20000
TUN_BYTES = 96 * 1024
"""TUN bytes per operation at most."""
SIOCOUTQ = termios.TIOCOUTQ
SO_SNDBUFFORCE = 32  # Linux <asm-generic/socket.h>; not exported by the socket module.
TUN_SNDBUF = 16 << 20
"""Bytes (capped at ``net.core.wmem_max``, then doubled by the kernel) of the TUN stand-in's
send buffer: a packet costs about 768 bytes of it."""
STF = b"STF\x01"
DATA, DPD_REQ, DPD_RESP, DISCONNECT, KEEPALIVE = 0, 3, 4, 5, 7
LIVENESS_TYPES = (DPD_RESP, KEEPALIVE, 9)
"""Frames the thread takes itself: they only prove the client alive (TERMINATE is 9)."""
ENDING_TYPES = (DISCONNECT, 8)
"""Frames that end the tunnel (COMPRESSED: no compression was negotiated): handed back."""
CONTROL_TYPES = (DPD_REQ, DPD_RESP, KEEPALIVE, 9, 0x42)
"""Frame types the fuzzer's control frames take (DISCONNECT and COMPRESSED end the connection
and come from their own choices)."""
NOW = 1000.0

if not _offload._bind_tls():  # The OpenSSL pyOpenSSL uses: the thread calls the same.
    raise SystemExit("cannot bind the thread to pyOpenSSL's OpenSSL")
ENGINE = _fastpath.Engine()
"""One thread for the whole process (a worker has one too); each input attaches pipes."""


def _contexts() -> dict[int, SSL.Context]:
    directory = Path(tempfile.mkdtemp(prefix="ocgate-fuzz-"))
    try:
        pki = make_pki(directory)
        return {
            version: build_server_context(
                cert_files=(str(pki.server.cert_path),),
                key_files=(str(pki.server.key_path),),
                policy=translate_priorities(None),
                renegotiation=version == SSL.TLS1_2_VERSION,
            )
            for version in (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION)
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


SERVER_CONTEXTS = _contexts()


def _client_context(version: int, chacha: bool) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(version)
    ctx.set_max_proto_version(version)
    if version == SSL.TLS1_2_VERSION:
        ctx.set_cipher_list(
            b"ECDHE-ECDSA-CHACHA20-POLY1305" if chacha else b"ECDHE-ECDSA-AES128-GCM-SHA256"
        )
    else:
        suite = b"TLS_CHACHA20_POLY1305_SHA256" if chacha else b"TLS_AES_256_GCM_SHA384"
        assert _lib.SSL_CTX_set_ciphersuites(ctx._context, suite) == 1
    return ctx


CLIENT_CONTEXTS = {
    (version, chacha): _client_context(version, chacha)
    for version in (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION)
    for chacha in (False, True)
}


def _records(stream: bytes | bytearray, pos: int = 0) -> tuple[list[bytes], int]:
    """The complete records of ``stream[pos:]`` and where the first incomplete one starts."""
    out = []
    while len(stream) - pos >= 5:
        size = 5 + (stream[pos + 3] << 8 | stream[pos + 4])
        if len(stream) - pos < size:
            break
        out.append(bytes(stream[pos : pos + size]))
        pos += size
    return out, pos


def _frame(ptype: int, payload: bytes) -> bytes:
    return STF + struct.pack("!HBB", len(payload), ptype, 0) + payload


def _take(sock: socket.socket, out: list[bytes] | bytearray) -> None:
    while True:
        try:
            chunk = sock.recv(262144)
        except BlockingIOError:
            return
        if not chunk:
            return
        if isinstance(out, bytearray):
            out += chunk
        else:
            out.append(chunk)


@dataclass
class Genuine:
    """A record the client's OpenSSL produced: what reading it means to the server."""

    record: bytes
    kind: str  # "data", "close", "hs"
    plaintext: bytes = b""


@dataclass
class Expected:
    tun: list[bytes] = field(default_factory=list)
    lane: list[tuple[int, bytes]] = field(default_factory=list)
    """Stream-side items, in stream order (``KIND_BACK``'s bytes are checked apart)."""


class Ended(Exception):
    """The connection is over (failure, close_notify, DISCONNECT, end of stream): no more ops."""


class Rig:
    """The client, the endpoint, the pipe (or the event loop's part), the models."""

    def __init__(self, selector: int) -> None:
        self.tls13 = bool(selector & 1)
        version = SSL.TLS1_3_VERSION if self.tls13 else SSL.TLS1_2_VERSION
        sources = selector >> 2 & 3
        with_v4, with_v6 = sources != 2, sources != 1
        self.filters = [
            PacketFilter(ipv4=LEASE if with_v4 else None, ipv6=LEASE6 if with_v6 else None)
            for _ in range(3)
        ]
        self.fast_filter, self.sys_filter, self.ref_filter = self.filters
        self.max_payload = MAX_PAYLOADS[selector >> 4 & 3]
        self.endpoint = TlsEndpoint(SERVER_CONTEXTS[version])
        self.client = SSL.Connection(CLIENT_CONTEXTS[(version, bool(selector & 2))], None)
        self.client.set_connect_state()
        self._handshake()
        self.tcp, self.client_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.tun, self.tun_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (self.client_sock, self.tun_peer):
            sock.setblocking(False)
        # A TUN device takes every write (the kernel counts its own drops); the stand-in fails a
        # write with EAGAIN once its send buffer is full (about 270 small packets by default),
        # which the thread ignores: a record of hundreds of small frames must fit.
        try:  # Beyond net.core.wmem_max where allowed (CAP_NET_ADMIN).
            self.tun.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, TUN_SNDBUF)
        except OSError:
            self.tun.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TUN_SNDBUF)
        # The reference: the decrypted stream through one CstpConnection and the filter.
        self.ref = self._cstp()
        self.ref_delivered: list[bytes] = []
        # The system: the thread's TUN writes, and what the event loop does with the rest.
        self.tail = self._cstp()
        self.sys_delivered: list[bytes] = []
        self.extra_after_end = 0
        self.lossy = False
        """A flood of lane items went beyond the pipe's bound: some were dropped."""
        self.lane_dropped = ENGINE.lane_dropped
        self.answers: list[bytes] = []
        """Frames the event loop's CSTP core wants sent (DPD-RESP), not sent yet."""
        self.shut = False
        self.client_dead = False
        self.engage = False
        """The tunnel would call ``_engage_tls`` now (``maybe_attach``)."""
        self.pending: deque[Genuine] = deque()
        """Genuine records the server has not read, in the client's order."""
        self.paused = False
        self.eof = False
        self.inbox = bytearray()
        """Ciphertext for the client it has not taken yet (back-pressure keeps it here)."""
        self.outbox = bytearray()
        """Ciphertext from the client the socket did not take yet."""
        self.want_thread_frames: deque[bytes] = deque()
        self.want_python_frames: deque[bytes] = deque()
        self.pipe: Any = None
        self.py_stream = bytearray()
        self.py_pos = 0
        self.attach()

    def _cstp(self) -> CstpConnection:
        return CstpConnection(
            now=NOW, dpd=0, keepalive=0, idle_timeout=None, session_deadline=None,
            max_payload=self.max_payload,
        )  # fmt: skip

    def _handshake(self) -> None:
        for _ in range(20):
            with contextlib.suppress(SSL.WantReadError):
                self.client.do_handshake()
            out = self._client_output()
            if out:
                self.endpoint.receive_data(out, NOW)
            back = self.endpoint.data_to_send()
            if back:
                self.client.bio_write(back)
            if not out and not back:
                break
        assert self.endpoint.handshake_complete
        with contextlib.suppress(SSL.WantReadError):
            self.client.recv(1)  # TLS 1.3 session tickets.

    def _client_output(self) -> bytes:
        out = b""
        with contextlib.suppress(SSL.WantReadError):
            while chunk := self.client.bio_read(262144):
                out += chunk
        return out

    # -- the thread ------------------------------------------------------------------------------

    def attach(self) -> None:
        src4, src6 = self.fast_filter.fast_sources()
        self.pipe = ENGINE.attach_tls(
            self.tcp.fileno(),
            self.tun.fileno(),
            *self.endpoint.handles(),
            src4,
            src6,
            self.max_payload,
        )
        self.stream = bytearray()
        """Ciphertext the client wrote since this pipe was attached."""
        self.pos = 0
        """Where the thread's reading is, in the model."""
        self.ended: int | None = None  # KIND_BACK or KIND_FAILED, predicted
        self.back_at = 0
        self.expected = Expected()
        self.flow: list[tuple[str, bytes, int]] = []
        """The thread's deliveries in stream order: TUN writes, lane items (by index)."""
        self.budgeted: list[bool] = []
        self.tun_written: list[tuple[bytes, str]] = []
        """Every TUN packet of this pipe and its predicted fate ("tx", "lane", "none")."""
        self.tun_checked = 0
        self.tx_lane_got: list[bytes] = []
        self.rx = [0, 0]
        self.tx = [0, 0]
        self.stats = [0, 0, 0, 0]
        self.last_rx = self.last_activity = 0.0
        self.seen_last_rx = self.seen_last_activity = 0.0
        self.frames_seen = self.activity_seen = False

    def client_write(self, data: bytes, genuine: Sequence[Genuine] = ()) -> None:
        """The client sends ``data`` (in which ``genuine`` are its own records)."""
        self.pending.extend(genuine)
        if not data or self.eof:
            return
        if self.pipe is None:
            self.python_feed(data)
            return
        self.stream += data
        self.outbox += data
        self._push()
        self._predict()

    def _push(self) -> None:
        """Into the socket as far as it takes (the thread reads on, or hands back: then the rest
        stays with the client, as it would in a TCP send buffer, for the event loop)."""
        with contextlib.suppress(BlockingIOError):
            while self.outbox:
                del self.outbox[: self.client_sock.send(self.outbox)]

    def _predict(self) -> None:
        """The thread's rules (tls_ready, tls_frames) over what it has not read yet."""
        while self.ended is None and len(self.stream) - self.pos >= 5:
            at = self.pos
            size = 5 + (self.stream[at + 3] << 8 | self.stream[at + 4])
            if self.stream[at] != 23 or size > TLS_RECORD_MAX:
                self.ended, self.back_at = _fastpath.KIND_BACK, at
                return
            if len(self.stream) - at < size:
                return
            record = bytes(self.stream[at : at + size])
            self.pos = at + size
            if not self.pending or self.pending[0].record != record:
                self.ended = _fastpath.KIND_FAILED  # Not the next genuine record: bad MAC.
                return
            genuine = self.pending.popleft()
            if genuine.kind == "close":  # TLS 1.3's is encrypted: SSL_read says "peer done".
                self.ended, self.back_at = _fastpath.KIND_BACK, self.pos
                return
            if genuine.kind != "data":
                self.ended = _fastpath.KIND_FAILED
                return
            self._frames(genuine.plaintext)
            if self.ended is not None:
                self.back_at = self.pos
                return

    def _frames(self, pt: bytes) -> None:
        pos = 0
        self.ref_feed(pt)
        while pos < len(pt):
            f = pt[pos:]
            size = f[4] << 8 | f[5] if len(f) >= 8 else 0
            if (
                len(f) < 8
                or f[:4] != STF
                or f[7] != 0
                or size > self.max_payload
                or len(f) < 8 + size
                or f[6] in ENDING_TYPES
            ):
                self._lane(_fastpath.KIND_CSTP, f, budgeted=False)
                self.ended = _fastpath.KIND_BACK
                return
            self.frames_seen = True
            packet = f[8 : 8 + size]
            if f[6] in LIVENESS_TYPES:
                pass  # Only the time the client was last heard (CstpConnection._on_liveness).
            elif f[6] != DATA:
                self._lane(_fastpath.KIND_CSTP, f[: 8 + size])
            else:
                self.rx[0] += 1
                self.rx[1] += size
                if counts_for_idle_untrusted(packet):
                    self.activity_seen = True
                batch = [packet]
                if self.fast_filter.admit_untrusted(batch) is batch:
                    self.expected.tun.append(packet)
                    self.flow.append(("tun", packet, -1))
                else:
                    self._lane(_fastpath.KIND_RX, packet)
            pos += 8 + size

    def _lane(self, kind: int, data: bytes, *, budgeted: bool = True) -> None:
        """An item for the lane; ``budgeted`` ones may be dropped beyond ``PIPE_LANE_MAX`` of the
        pipe's items waiting (a flood of small frames), the hand-back's never."""
        self.flow.append(
            ("rx" if kind == _fastpath.KIND_RX else "cstp", data, len(self.expected.lane))
        )
        self.expected.lane.append((kind, data))
        self.budgeted.append(budgeted)

    def write_tun(self, packets: list[bytes]) -> None:
        if self.pipe is None or self.ended is not None:
            return  # The event loop reads the device meanwhile (its own path, not modelled).
        for packet in packets:
            try:
                self.tun_peer.send(packet)
            except BlockingIOError:
                continue  # The device's queue is full: the kernel drops.
            if not packet:
                fate = "none"
            elif len(packet) > self.max_payload or len(packet) + 8 > MAX_PLAINTEXT:
                fate = "lane"
            else:
                fate = "tx"
                self.want_thread_frames.append(_frame(DATA, packet))
            self.tun_written.append((packet, fate))

    def python_send(self, frames: list[bytes]) -> None:
        if not frames:
            return
        if self.pipe is not None:
            try:
                self.pipe.send(frames)
            except OSError:
                # Only after OpenSSL failed on the thread (the race of op 6's variants).
                assert self.ended == _fastpath.KIND_FAILED, "Pipe.send failed"
                return
            self.want_python_frames.extend(frames)
        else:
            self.want_python_frames.extend(frames)
            for frame in frames:
                self.endpoint.send(frame)
            self.inbox += self.endpoint.data_to_send()

    # -- the event loop's part and the reference --------------------------------------------------

    def _system(self, how: str, data: bytes) -> None:
        if self.tail.state is not CstpState.OPEN:
            if how == "tun":
                self.extra_after_end += 1  # The thread does not know the tunnel ended.
            return
        if how == "tun":
            self.sys_delivered.append(data)
        elif how == "rx":
            self.sys_delivered += self.sys_filter.admit_untrusted([data])
        else:
            self.tail.receive_data(data, NOW)
            self._events(self.tail, self.sys_filter, self.sys_delivered, answer=True)

    def _events(
        self, conn: CstpConnection, pf: PacketFilter, out: list[bytes], *, answer: bool
    ) -> None:
        while (event := conn.next_event()) is not None:
            if isinstance(event, PacketsReceived):
                out += pf.admit_untrusted(event.packets)
            else:
                assert isinstance(event, ByeReceived | ProtocolFailed), event
        frames = conn.frames_to_send()
        if answer:
            self.answers += frames

    def ref_feed(self, plaintext: bytes) -> None:
        if self.ref.state is CstpState.OPEN:
            self.ref.receive_data(plaintext, NOW)
            self._events(self.ref, self.ref_filter, self.ref_delivered, answer=False)

    def python_feed(self, data: bytes) -> None:
        """The event loop's TLS path (``TlsEndpoint.receive_data``), record by record."""
        self.py_stream += data
        start = len(self.py_stream) - len(data)
        records, end = _records(self.py_stream, self.py_pos)
        fed = start
        cut = self.py_pos
        for record in records:
            cut += len(record)
            piece = bytes(self.py_stream[fed:cut])
            fed = cut
            genuine = bool(self.pending) and self.pending[0].record == record
            item = self.pending.popleft() if genuine else None
            try:
                plaintext = self.endpoint.receive_data(piece, NOW)
            except TlsFailure:
                assert item is None or item.kind != "data", "a genuine record failed in Python"
                raise Ended from None
            if item is not None and item.kind == "data":
                assert plaintext == item.plaintext, "the endpoint decrypted something else"
            else:
                assert plaintext == b"", "a record that is not genuine gave plaintext"
            self.inbox += self.endpoint.data_to_send()
            if self.endpoint.closed:
                raise Ended
            if plaintext:
                self.ref_feed(plaintext)
                self._system("plain", plaintext)
                self.engage = True  # The tunnel's receive_cstp tries _engage_tls.
                self._answer()
        self.py_pos = end
        if fed < len(self.py_stream):
            try:
                self.endpoint.receive_data(bytes(self.py_stream[fed:]), NOW)  # A record's start.
            except TlsFailure:
                raise Ended from None  # Its header already: a record OpenSSL refuses.

    def _answer(self) -> None:
        """What the tail connection wants sent (DPD-RESP): the tunnel's ``_flush``."""
        answers, self.answers = self.answers, []
        self.python_send(answers)
        if self.tail.state is not CstpState.OPEN:
            raise Ended

    # -- the client's side ----------------------------------------------------------------------

    def client_read(self) -> bool:
        """Take what reached the client; check each record against what was sent. Whether the
        client answered (a renegotiation's next flight)."""
        if self.pipe is not None:
            _take(self.client_sock, self.inbox)
        if self.paused or self.client_dead or not self.inbox:
            return False
        self.client.bio_write(bytes(self.inbox))
        self.inbox = bytearray()
        while True:
            try:
                record = self.client.recv(65536)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                raise Ended from None
            except SSL.Error:
                # The server's alert after the failure the model predicted (bad_record_mac).
                assert self.ended == _fastpath.KIND_FAILED, "the client cannot read the server"
                self.client_dead = True
                return False
            if record[6:7] == b"\x00" and record[:4] == STF:
                assert self.want_thread_frames, f"an unexpected DATA record {record[:24]!r}"
                assert record == self.want_thread_frames.popleft(), "a DATA record differs"
            else:
                assert self.want_python_frames, f"an unexpected record {record[:24]!r}"
                assert record == self.want_python_frames.popleft(), "Python's frame differs"
        out = self._client_output()  # A renegotiation's next flight.
        if out:
            records, end = _records(out)
            assert end == len(out)
            self.client_write(out, [Genuine(r, "hs") for r in records])
        return bool(out)

    # -- waiting for the thread and checking ------------------------------------------------------

    def _tun_queued(self) -> int:
        """Bytes of TUN packets the thread has not read yet (``SIOCOUTQ`` of the kernel's end)."""
        return int(struct.unpack("i", fcntl.ioctl(self.tun_peer, SIOCOUTQ, b"\0\0\0\0"))[0])

    def _tun_lane(self) -> list[bytes]:
        return [packet for packet, fate in self.tun_written if fate == "lane"]

    def check(self, *, quiet: bool = False) -> None:
        """Wait until the thread handed over what the model predicts, then compare."""
        if self.pipe is None:
            for _ in range(8):  # A renegotiation: flights both ways.
                if not self.client_read():
                    break
            return
        want = self.expected
        tun: list[bytes] = []
        lane: list[tuple[int, bytes]] = []
        tx_lane: list[bytes] = []
        back: bytes | None = None

        def collect() -> bool:
            nonlocal back
            self._push()
            _take(self.tun_peer, tun)
            for pipe, kind, data in ENGINE.drain():
                if pipe != self.pipe.id:
                    continue
                if kind == _fastpath.KIND_TX:
                    tx_lane.append(data)
                elif kind in (_fastpath.KIND_BACK, _fastpath.KIND_FAILED):
                    assert back is None, "two hand-backs"
                    back = bytes((kind,)) + data
                else:
                    lane.append((kind, data))
            if not self.paused:
                self.client_read()
            settled = self.paused or self.client_dead or self.ended is not None
            return (
                (not self.outbox or self.ended is not None)
                and len(tun) >= len(want.tun)
                and len(lane) + ENGINE.lane_dropped - self.lane_dropped >= len(want.lane)
                and (back is not None) == (self.ended is not None)
                and self._stats_settled()
                and (
                    settled
                    or (
                        self._tun_queued() == 0
                        and len(self.tx_lane_got) + len(tx_lane) >= len(self._tun_lane())
                        and not self.want_thread_frames
                        and not self.want_python_frames
                    )
                )
            )

        fds = (self.tun_peer.fileno(), ENGINE.fileno(), self.client_sock.fileno())
        wait_for_thread(collect, fds, quiet=quiet, silence=QUIET, step=0.02)
        assert tun == want.tun, f"TUN writes {short(tun)} != model {short(want.tun)}"
        dropped = self._match_lane(lane, want.lane)
        self._deliver(dropped)
        want.tun, want.lane = [], []
        self.tx_lane_got += tx_lane
        expected_tx = self._tun_lane()
        assert self.tx_lane_got == expected_tx[: len(self.tx_lane_got)], "KIND_TX items differ"
        if not self.paused and self.ended is None:
            assert self.tx_lane_got == expected_tx, "KIND_TX items missing"
            assert not self.want_thread_frames, f"{len(self.want_thread_frames)} records missing"
            assert not self.want_python_frames, "Python's frames did not reach the client"
        self._check_stats()
        if self.ended is not None:
            assert back is not None, f"no hand-back (kind {self.ended}) from the thread"
            assert back[0] == self.ended, f"hand-back kind {back[0]} != model {self.ended}"
            self.release(back[1:])
            self.check()  # The event loop's turn: the client reads (a renegotiation goes on).
        else:
            assert back is None, f"an unexpected hand-back {back[:40]!r}"

    def _match_lane(self, lane: list[tuple[int, bytes]], want: list[tuple[int, bytes]]) -> set[int]:
        """The lane as predicted, but for items dropped beyond the pipe's bound (counted)."""
        total = ENGINE.lane_dropped
        dropped_now, self.lane_dropped = total - self.lane_dropped, total
        if lane == want:
            assert dropped_now == 0, f"{dropped_now} lane items dropped, none missing"
            return set()
        assert len(want) - len(lane) == dropped_now, (
            f"lane {short(lane)} != model {short(want)}, {dropped_now} dropped"
        )
        assert sum(self.budgeted) > 64, f"lane {short(lane)} != model {short(want)}"
        missing, at = set(), 0
        for index, item in enumerate(want):
            if at < len(lane) and lane[at] == item:
                at += 1
            else:
                assert self.budgeted[index], f"the lane lost {item[0]}, {item[1][:24]!r}"
                missing.add(index)
        assert at == len(lane), f"lane {short(lane)} is not the model's {short(want)} less drops"
        self.lossy = True
        return missing

    def _deliver(self, dropped: set[int]) -> None:
        """The event loop's part: what the thread delivered and the lane, in stream order."""
        for how, data, index in self.flow:
            if index not in dropped:
                self._system(how, data)
        self.flow, self.budgeted = [], []

    def _poll_stats(self) -> None:
        """``take_stats`` (which restarts the counters) summed up; the latest times."""
        rxp, rxb, txp, txb, dropped, last_rx, last_activity, refused = self.pipe.take_stats()
        self.stats = [a + b for a, b in zip(self.stats, (rxp, rxb, txp, txb), strict=True)]
        assert (dropped, refused) == (0, 0)
        self.seen_last_rx, self.seen_last_activity = last_rx, last_activity

    def _stats_settled(self) -> bool:
        """The thread has read every frame the model says it reads (some leave no other trace:
        DPD-RESP, keepalive)."""
        self._poll_stats()
        return self.stats[:2] == self.rx and (
            not self.frames_seen or self.seen_last_rx > self.last_rx
        )

    def _check_stats(self) -> None:
        self._poll_stats()
        last_rx, last_activity = self.seen_last_rx, self.seen_last_activity
        assert self.stats[:2] == self.rx, f"rx counters {self.stats[:2]} != model {self.rx}"
        assert (last_rx > self.last_rx) == self.frames_seen, "last_rx moved against the model"
        if self.frames_seen:
            self.last_rx = last_rx
        self.frames_seen = False
        if self.paused or self.client_dead or self.ended is not None:
            return  # TUN packets may be waiting: the TX side is checked when all were read.
        for packet, fate in self.tun_written[self.tun_checked :]:
            if fate == "tx":
                self.tx[0] += 1
                self.tx[1] += len(packet)
                self.activity_seen |= counts_for_idle_untrusted(packet)
        self.tun_checked = len(self.tun_written)
        assert self.stats[2:] == self.tx, f"tx counters {self.stats[2:]} != model {self.tx}"
        if self.activity_seen:
            assert last_activity > self.last_activity, "idle-relevant traffic did not count"
        else:
            assert last_activity == self.last_activity, "traffic counted for the idle timer"
        self.last_activity = last_activity
        self.activity_seen = False

    def release(self, back: bytes = b"") -> None:
        """The event loop takes the connection back (``_release_tls``/``_disengage_tls``)."""
        if self.ended is None:
            self._check_stats()
        pipe, self.pipe = self.pipe, None
        unsent, unread = pipe.close()
        assert isinstance(unsent, bytes)
        assert isinstance(unread, bytes)
        rest = bytearray()
        self.tcp.setblocking(False)
        _take(self.tcp, rest)
        self.tcp.setblocking(True)
        rest += self.outbox  # What the client's side still held follows.
        self.outbox = bytearray()
        leftover: list[bytes] = []
        with contextlib.suppress(BlockingIOError):
            while True:  # Empty packets too (``_take`` stops at one).
                leftover.append(self.tun.recv(262144))
        # TUN packets the thread did not read are still queued: the tail of what was written.
        if leftover:
            tail = self.tun_written[-len(leftover) :]
            assert [p for p, _ in tail] == leftover, "the thread read TUN packets out of order"
            for packet, fate in reversed(tail):
                if fate == "tx":
                    assert self.want_thread_frames.pop() == _frame(DATA, packet)
            del self.tun_written[-len(leftover) :]
        assert self.tun_checked <= len(self.tun_written)
        _take(self.client_sock, self.inbox)  # Sent by the thread: before ``unsent``.
        self.inbox += unsent
        if self.ended == _fastpath.KIND_FAILED:
            assert len(back) == 8, f"KIND_FAILED carries {len(back)} bytes"
            raise Ended
        if self.ended == _fastpath.KIND_BACK:
            assert unread == b"", "a hand-back left bytes in the pipe"
            got = back + bytes(rest)
            assert got == bytes(self.stream[self.back_at :]), "hand-back bytes != the stream"
        else:
            got = unread + bytes(rest)
            assert got == bytes(self.stream[self.pos :]), "close(): unread != the stream"
        if self.eof:
            raise Ended
        self.py_stream, self.py_pos = bytearray(), 0
        self.python_feed(got)

    def maybe_attach(self) -> None:
        """``_engage_tls``: where the tunnel calls it (after CSTP plaintext, when DTLS lets go of
        the TUN device), at a record and frame boundary with nothing buffered."""
        if (
            self.pipe is None
            and self.engage
            and self.endpoint.quiescent()
            and not self.tail.buffered
            and self.py_pos == len(self.py_stream)
        ):
            self.attach()
        self.engage = False

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
        for sock in (self.tcp, self.client_sock, self.tun, self.tun_peer):
            sock.close()

    # -- building what the client sends ------------------------------------------------------------

    def genuine(self, plaintext: bytes) -> Genuine:
        if self.shut:
            raise Ended  # The client sent its close_notify: it sends nothing more.
        try:
            self.client.send(plaintext)
        except SSL.Error:
            raise Ended from None  # Mid-renegotiation with a stream the server never read.
        out = self._client_output()
        records, end = _records(out)
        assert len(records) == 1, "one send is one record"
        assert end == len(out)
        return Genuine(records[0], "data", plaintext)

    def send_plaintext(self, plaintexts: list[bytes]) -> None:
        items = [self.genuine(p) for p in plaintexts if p]
        self.client_write(b"".join(g.record for g in items), items)

    def admitted(self, body: bytes) -> bytes:
        src4, _ = self.fast_filter.fast_sources()
        return ip_packet(0 if src4 else 2, body)


def _frames(rig: Rig, payload: bytes) -> bytes:
    """CSTP frames from the fuzzer's description: (kind, length, body) triples."""
    out = b""
    pos = 0
    while pos < len(payload):
        kind = payload[pos]
        size = payload[pos + 1] if pos + 1 < len(payload) else 0
        body = payload[pos + 2 : pos + 2 + size]
        pos += 2 + size
        choice = kind & 7
        if choice in (0, 1):
            out += _frame(DATA, ip_packet(kind >> 3, body))
        elif choice == 2:
            out += _frame(CONTROL_TYPES[(kind >> 3) % len(CONTROL_TYPES)], body)
        elif choice == 3 and kind >> 3 < 3:  # A packet of max_payload - 1, max_payload, + 1.
            packet = rig.admitted(body)
            size = min(rig.max_payload - 1 + (kind >> 3), 0xFFFF)
            out += _frame(DATA, (packet * (size // max(1, len(packet)) + 1))[:size])
        elif choice == 3:
            out += _frame(DATA, rig.admitted(body) * (1 + (kind >> 3)))  # Long: max_payload.
        elif choice == 4 and kind >> 3 == 0:
            out += _frame(DISCONNECT, body)
        elif choice == 4:
            out += _frame(8 if kind >> 3 == 1 else kind >> 3, body)  # COMPRESSED and others.
        elif choice == 5:
            frame = bytearray(_frame(DATA, rig.admitted(body)))
            frame[(kind >> 3) % 8] ^= 0x5A  # Magic, length or the reserved byte.
            out += bytes(frame)
        elif choice == 6:
            out += _frame(DATA, rig.admitted(body))[: max(0, len(body) - (kind >> 3))]
        else:
            out += body
    return out


def _cuts(plaintext: bytes, spec: bytes) -> list[bytes]:
    """``plaintext`` in pieces at the fractions ``spec`` gives (each piece one record)."""
    points = sorted({len(plaintext) * b // 256 for b in spec[:4]} | {0, len(plaintext)})
    pieces = [plaintext[a:b] for a, b in itertools.pairwise(points)]
    out = []
    for piece in pieces:
        out += [piece[i : i + MAX_PLAINTEXT] for i in range(0, len(piece), MAX_PLAINTEXT)]
    return out


def test_one_input(data: bytes) -> None:
    if not data:
        return
    rig = Rig(data[0])
    try:
        with contextlib.suppress(Ended):
            _run(rig, data[1:])
            _finish(rig)
        _compare(rig)
    finally:
        rig.close()


def _run(rig: Rig, data: bytes) -> None:
    for kind, tag, payload in operations(data, {13: 0, 14: 5, 15: 12}):
        if kind == 9 and rig.tls13:
            kind = 0
        if kind == 0:
            cuts = payload[0] % 4 if payload else 0
            plaintext = _frames(rig, payload[1 + cuts :])
            rig.send_plaintext(_cuts(plaintext, payload[1 : 1 + cuts]))
        elif kind == 1 and tag & 0x10:
            size = _harness.number(payload[:2]) % (MAX_PLAINTEXT + 1)
            body = payload[2:] or b"\x00"
            rig.send_plaintext([(body * (size // len(body) + 1))[:size]])
        elif kind == 1:
            rig.send_plaintext([payload[:MAX_PLAINTEXT]])
        elif kind == 2:
            rig.client_write(payload)
        elif kind == 3:
            head = payload[:5].ljust(5, b"\x17")
            rig.client_write(head + payload[5:])
        elif kind == 4:
            how = payload[0] % 4 if payload else 0
            item = rig.genuine(_frame(DATA, rig.admitted(payload[3:])))
            record = bytearray(item.record)
            at = _harness.number(payload[1:3]) % len(record)
            if how == 0:
                record[at] ^= (payload[0] if payload else 0) | 1
            elif how == 1:
                record = record[:at]
            elif how == 2:
                record += payload[3:]
            else:
                record = bytearray()  # Produced, never sent: a gap in the sequence numbers.
            rig.client_write(bytes(record), [item])
        elif kind == 5:
            count = 1 + (payload[0] % BURST if payload else 0)
            body = payload[1 + 2 * count :] or b"\x45"
            packets, total = [], 0
            for i in range(count):
                size = _harness.number(payload[1 + 2 * i : 3 + 2 * i])
                if size >= 0xFF00:  # The edges: max_payload and 2^14 - 8, each side.
                    edges = (rig.max_payload, MAX_PLAINTEXT - 8)
                    size = edges[size & 1] + (size >> 1 & 3) - 1
                size %= MAX_TUN_PACKET + 1
                size = min(size, TUN_BYTES - total)
                packets.append((body * (size // len(body) + 1))[:size])
                total += size
            rig.write_tun(packets)
        elif kind == 6:
            frames: list[bytes] = []
            pos = 0
            while pos < len(payload) and len(frames) < 4:
                size = payload[pos + 1] if pos + 1 < len(payload) else 0
                ptype = (DPD_RESP, KEEPALIVE, DPD_REQ, 9)[payload[pos] % 4]
                frames.append(_frame(ptype, payload[pos + 2 : pos + 2 + size]))
                pos += 2 + size
            # Variants: the thread is busy meanwhile (nothing waits for it before the send).
            if tag & 0x10:  # reading a record from the client,
                rig.send_plaintext([_frame(DATA, rig.admitted(payload[:64]))])
            if tag & 0x20:  # encrypting TUN packets,
                rig.write_tun([rig.admitted(payload[:64]) * 20] * 3)
            if tag & 0x40 and rig.pipe is not None:  # failing on a forged record.
                rig.client_write(b"\x17\x03\x03\x00\x20" + bytes(32))
            rig.python_send(frames)
        elif kind == 7:
            rig.paused = not rig.paused
        elif kind == 8:
            rig.shut = True
            with contextlib.suppress(SSL.Error):
                rig.client.shutdown()
            out = rig._client_output()
            records, _ = _records(out)
            rig.client_write(out, [Genuine(r, "close") for r in records])
        elif kind == 9 and rig.client.renegotiate():  # Not while one is under way.
            with contextlib.suppress(SSL.WantReadError):
                rig.client.do_handshake()
            out = rig._client_output()
            records, _ = _records(out)
            rig.client_write(out, [Genuine(r, "hs") for r in records])
        elif kind == 10:
            rig.check()  # The client's bytes are all in the socket before its FIN.
            if rig.pipe is not None and rig.outbox:
                continue  # The thread could not take them all: the op does not happen.
            rig.client_sock.shutdown(socket.SHUT_WR)
            rig.eof = True
            if rig.pipe is not None and rig.ended is None:
                rig.ended, rig.back_at = _fastpath.KIND_BACK, rig.pos
            elif rig.pipe is None:
                raise Ended
        elif kind == 11 and rig.pipe is not None and rig.ended is None:
            rig.check()
            if rig.pipe is not None:
                rig.release()
                rig.engage = True  # DTLS lets go of the TUN device again (_return_tun).
        elif kind == 12:
            count = 1 + (payload[0] % (64 if tag & 0x10 else BURST) if payload else 0)
            body = (payload[2:] or b"\x11") * 1400
            step = payload[1] * 8 if len(payload) > 1 and tag & 0x20 else 1
            sizes = [(1 + i * step) % 1400 for i in range(count)]
            rig.send_plaintext([_frame(DATA, rig.admitted(body[:n])) for n in sizes])
        rig.check()
        rig._answer()
        rig.maybe_attach()


def _finish(rig: Rig) -> None:
    """The connection still works: one packet each way, on the thread or in Python."""
    rig.paused = False
    rig.check()
    if rig.pipe is None:
        rig.maybe_attach()
    packet = rig.admitted(b"still alive")
    gap = bool(rig.pending)
    if rig.pipe is not None:
        boundary = rig.pos == len(rig.stream)
    else:
        boundary = rig.py_pos == len(rig.py_stream) and not rig.tail.buffered
    rig.send_plaintext([_frame(DATA, packet)])
    rig.write_tun([packet])
    if not boundary or gap:
        # A record or frame the client began (the final one only completes it), or a record
        # the server never saw (the final one has the wrong sequence number): nothing to expect.
        return
    if rig.pipe is not None:
        assert rig.expected.tun == [packet], "the final record is not predicted to pass"
        rig.check(quiet=True)
        rig.release()
    rig.check()
    rig.python_send([_frame(KEEPALIVE, b"")])
    rig.check()
    assert not rig.want_python_frames
    assert packet in rig.sys_delivered


def _compare(rig: Rig) -> None:
    """The thread + the event loop deliver what the Python reference delivers."""
    assert rig.extra_after_end == 0, f"{rig.extra_after_end} packets after the tunnel ended"
    if rig.lossy:  # Dropped lane items: what was delivered is the reference less some packets.
        ref = iter(rig.ref_delivered)
        assert all(any(p == r for r in ref) for p in rig.sys_delivered), "not a subsequence"
    else:
        assert rig.sys_delivered == rig.ref_delivered, (
            f"delivered {short(rig.sys_delivered)} != reference {short(rig.ref_delivered)}"
        )
    assert rig.tail.state == rig.ref.state, "the connection ended differently"


def seeds() -> list[bytes]:
    """openconnect's traffic (tests/vectors/cstp) both ways, control frames, hand-backs of every
    kind, a renegotiation, back-pressure, in each version and cipher."""
    packet = _harness.hex_vector(_harness.VECTORS / "cstp" / "oc_data_ipv4_udp.hex")[8:]
    body = packet[20:60]
    sizes = b"".join(n.to_bytes(2, "big") for n in (0, 100, 1400, 1407, 16384))
    frames = bytes((0, len(body))) + body + bytes((2, 4)) + b"dpd!" + bytes((1, 8)) + bytes(8)
    traffic = (
        _harness.op(0, b"\x00" + frames)
        + _harness.op(0, b"\x02\x40\xa0" + frames * 3)
        + _harness.op(12, b"\x03" + body)
        + _harness.op(5, b"\x04" + sizes + body)
        + _harness.op(6, b"\x00\x04ping\x01\x00")
        + _harness.op(1, _frame(KEEPALIVE, b""))
    )
    out = [bytes((index,)) + traffic for index in range(4)]
    out.append(b"\x10" + traffic + _harness.op(9) + traffic)  # Renegotiation, then more.
    out.append(b"\x01" + traffic + _harness.op(11) + traffic)  # close() and attach again.
    out.append(
        b"\x00"
        + _harness.op(7)
        + _harness.op(5, b"\x07" + bytes.fromhex("05780578057805780578057805780578") + body)
        + traffic
        + _harness.op(7)
        + traffic
    )
    big = bytes.fromhex("07" + "2ee0" * 8) + body  # Eight TUN packets of 12000 bytes.
    out.append(
        b"\x20" + _harness.op(7) + _harness.op(5, big) * 6 + traffic + _harness.op(7) + traffic
    )
    out.append(
        b"\x21"
        + _harness.op(0x3C, b"\x3f\x2b" + body) * 2
        + _harness.op(0x11, b"\x40\x00" + frames)
    )
    edges = bytes.fromhex("07ff00ff01ff02ff03ff04ff05ff06ff07")  # Both edges, each side.
    edge_frames = bytes.fromhex("0304") + body[:4] + bytes.fromhex("0b04") + body[:4]
    out += [bytes((s,)) + _harness.op(5, edges + body) for s in (0x00, 0x20, 0x30)]
    out.append(b"\x11" + _harness.op(0, b"\x00" + edge_frames) + _harness.op(0, b"\x00\x13\x04ab"))
    after_close = _harness.op(8) + _harness.op(2, b"\x17\x03\x03\x00\x10" + bytes(16))
    out += [bytes((v,)) + traffic + after_close for v in (0, 1)]  # Records after close_notify.
    # 230 KB of frames across records (more than the socket takes while the thread hands back).
    huge = b"\x02\x10\x80" + (b"\xfb\xff" + bytes(255)) * 26
    out += [bytes((s,)) + traffic + _harness.op(0, huge) + traffic for s in (0x2A, 0x2B)]
    flood = _harness.op(0, b"\x00" + b"\x02\x00" * 100) + _harness.op(0, b"\x00" + b"\x09\x00" * 90)
    out.append(b"\x00" + flood + traffic)  # A flood of lane items in two records.
    out.append(b"\x00" + _harness.op(0, b"\x00" + b"\x00\x00" * 600) + traffic)  # 600 TUN writes.
    race = _harness.op(0x76, b"\x00\x04ping" + body) + _harness.op(0x36, b"\x01\x00" + body)
    out += [bytes((v,)) + traffic + race for v in (0x00, 0x01, 0x03)]
    for version in (0, 1):
        out.append(bytes((version,)) + traffic + _harness.op(4, b"\x00\x00\x10" + body))
        out.append(bytes((version,)) + traffic + _harness.op(4, b"\x01\x00\x10" + body))
        out.append(bytes((version,)) + traffic + _harness.op(8))
        out.append(bytes((version,)) + traffic + _harness.op(10))
        out.append(bytes((version,)) + _harness.op(0, b"\x00\x06\x10" + body) + traffic)
        out.append(bytes((version,)) + _harness.op(3, b"\x15\x03\x03\x00\x02\x02\x28") + traffic)
        out.append(bytes((version,)) + _harness.op(2, b"\x17\x03\x03\x00") + traffic)
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
