"""The CSTP connection core: sans-IO, time passed in (STYLE rule 1).

Theory of operation (anyconnect-protocol.md §7, §8; ocserv ``src/worker-vpn.c``):

* Bytes from the TLS stream go through :meth:`CstpConnection.receive_data`. Every complete frame of
  any type refreshes *last-rx*. DATA payloads of one call become a single :class:`PacketsReceived`
  event (the per-packet path allocates no event per packet). DPD-REQ is answered at once with a
  DPD-RESP carrying the same payload (openconnect and Cisco MTU probes depend on the exact echo),
  unless the transport has told us it is full (:attr:`CstpConnection.writable` false: the client
  does not read): then the echo is dropped and counted, so a client that sends DPD-REQs and never
  reads cannot make the server buffer without bound.
  DPD-RESP, KEEPALIVE and a client TERMINATE only refresh last-rx; unknown types are counted and
  ignored (ocserv ``parse_data``). DISCONNECT ends the connection with :class:`ByeReceived`.
  COMPRESSED (0x08) payloads are decompressed with the negotiated method (``compression``, an
  :class:`ocgate.compress.PacketCompression`) and delivered with the DATA packets in order; one
  that does not decompress, COMPRESSED when nothing was negotiated and broken framing end the
  connection with :class:`ProtocolFailed`.
* With compression, :meth:`CstpConnection.send_packets` sends what the method compresses as
  COMPRESSED frames and the rest (short packets, incompressible ones) as DATA; without it the
  per-packet loop is the plain one.
* Frames to send accumulate in a list; :meth:`CstpConnection.frames_to_send` returns them and each
  element must be written as exactly one TLS record (openconnect drops coalesced frames, §7).
* Timers (ocserv ``periodic_check``): after 2 × dpd without any received frame the server sends an
  empty DPD-REQ, repeated every min(dpd, 30) s; after 3 × dpd the peer is dead (:class:`PeerDead`,
  no BYE, like ocserv's ``REASON_DPD_TIMEOUT``). ``idle-timeout`` counts DATA in either direction
  except ICMP/IGMP/ICMPv6; ``session_deadline`` is absolute. Both timeouts queue an empty
  DISCONNECT (ocserv sends one on its ``terminate`` path) before the event. ``keepalive`` is only
  advertised: the server sends no keepalives (ocserv behaviour).
* Once finished (any terminal event, or after :meth:`send_disconnect` / :meth:`send_terminate`) the
  connection ignores input and new packets, and :meth:`get_timer` returns ``None``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from enum import Enum
from typing import TYPE_CHECKING

from ocgate.cstp._frame import (
    DEFAULT_MAX_PAYLOAD,
    FRAME_HEADER,
    FRAME_MAGIC,
    FrameDecoder,
    PacketType,
    encode_frame,
)
from ocgate.cstp._ip import any_counts_for_idle_untrusted, counts_for_idle_untrusted
from ocgate.cstp.events import (
    ByeReceived,
    CstpEvent,
    DisconnectCode,
    IdleTimeout,
    PacketsReceived,
    PeerDead,
    ProtocolFailed,
    SessionTimeout,
)
from ocgate.errors import BadCompressedData, BadFrame, LocalProtocolError

if TYPE_CHECKING:
    from ocgate.compress import PacketCompression

__all__ = ["CstpConnection", "CstpState"]

DPD_TRIES = 2
"""ocserv ``DPD_TRIES``: silence of this many dpd periods triggers DPD requests."""
DPD_MAX_TRIES = 3
"""ocserv ``DPD_MAX_TRIES``: silence of this many dpd periods means the peer is dead."""
PERIODIC_CHECK_TIME = 30.0
"""ocserv ``PERIODIC_CHECK_TIME``: DPD requests are repeated at most this often."""
MAX_REASON_BYTES = 255

_DATA = PacketType.DATA
_COMPRESSED = PacketType.COMPRESSED
_pack_header = FRAME_HEADER.pack


class CstpState(Enum):
    """Connection states; the only transition is OPEN → CLOSED (table :data:`_TRANSITIONS`)."""

    OPEN = "open"
    CLOSED = "closed"


_TRANSITIONS: dict[CstpState, frozenset[CstpState]] = {
    CstpState.OPEN: frozenset({CstpState.CLOSED}),
    CstpState.CLOSED: frozenset(),
}


def _decode_bye(payload: bytes) -> ByeReceived:
    if not payload:
        return ByeReceived(code=None, message="")
    message = payload[1:].decode("utf-8", errors="replace").rstrip("\x00")
    return ByeReceived(code=payload[0], message=message)


class CstpConnection:
    """One CSTP tunnel after ``200 CONNECTED``, seen from the server.

    :param now: the current monotonic time (seconds).
    :param dpd: the DPD interval announced in ``X-CSTP-DPD``; 0 disables dead peer detection.
    :param keepalive: the announced keepalive interval (kept for reference; the server sends none).
    :param idle_timeout: seconds without non-ICMP DATA before :class:`IdleTimeout`; ``None``/0 =
                         off.
    :param session_deadline: absolute monotonic time of :class:`SessionTimeout`; ``None`` = off.
    :param max_payload: longest frame payload accepted from and sent to the client (≥ tunnel MTU).
    :param compression: the negotiated CSTP compression (``X-CSTP-Content-Encoding``), or ``None``.
    """

    __slots__ = (
        "_compression",
        "_control",
        "_decoder",
        "_dpd_next_req",
        "_dpd_sent",
        "_events",
        "_last_activity",
        "_last_rx",
        "_out",
        "_state",
        "_tx_activity_pending",
        "dpd",
        "dpd_echoes_dropped",
        "dpd_requests_sent",
        "idle_timeout",
        "keepalive",
        "max_payload",
        "rx_bytes",
        "rx_packets",
        "rx_unknown_frames",
        "session_deadline",
        "tx_bytes",
        "tx_dropped",
        "tx_packets",
        "writable",
    )

    def __init__(
        self,
        *,
        now: float,
        dpd: int,
        keepalive: int,
        idle_timeout: int | None,
        session_deadline: float | None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        compression: PacketCompression | None = None,
    ) -> None:
        if dpd < 0 or keepalive < 0 or (idle_timeout is not None and idle_timeout < 0):
            raise LocalProtocolError("CSTP timers must not be negative")
        self._decoder = FrameDecoder(max_payload)
        self._compression = compression
        self.max_payload = max_payload
        self.dpd = dpd
        self.keepalive = keepalive
        self.idle_timeout = idle_timeout or None
        self.session_deadline = session_deadline
        self._state = CstpState.OPEN
        self._events: deque[CstpEvent] = deque()
        self._out: list[bytes] = []
        self._last_rx = now
        self._last_activity = now
        self._tx_activity_pending = False
        self._dpd_sent = 0
        self._dpd_next_req = 0.0
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.rx_packets = 0
        self.tx_packets = 0
        self.rx_unknown_frames = 0
        self.tx_dropped = 0
        self.dpd_requests_sent = 0
        self.dpd_echoes_dropped = 0
        self.writable = True
        """False while the transport below is full (the adapter's back-pressure signal)."""
        self._control: dict[int, Callable[[bytes], CstpEvent | None]] = {
            PacketType.DPD_REQ: self._on_dpd_request,
            PacketType.DPD_RESP: self._on_liveness,
            PacketType.KEEPALIVE: self._on_liveness,
            PacketType.TERMINATE: self._on_liveness,
            PacketType.DISCONNECT: self._on_disconnect,
            PacketType.COMPRESSED: self._on_compressed,
        }

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> CstpState:
        """``OPEN`` until a terminal event or a local disconnect."""
        return self._state

    def _close(self) -> None:
        if CstpState.CLOSED in _TRANSITIONS[self._state]:
            self._state = CstpState.CLOSED

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed bytes read from the TLS stream (any split); then drain :meth:`next_event`."""
        if self._state is not CstpState.OPEN:
            return
        types: list[int] = []
        payloads: list[bytes] = []
        failure: BadFrame | None = None
        try:
            self._decoder.decode_into_untrusted(data, types, payloads)
        except BadFrame as exc:
            failure = exc
        self._note_time(now)
        if types:
            self._last_rx = now
            self._dpd_sent = 0
            if types.count(_DATA) == len(types):
                self._deliver(payloads, now)
            else:
                self._dispatch_mixed(types, payloads, now)
        if failure is not None and self._state is CstpState.OPEN:
            self._events.append(ProtocolFailed(str(failure)))
            self._close()

    def _dispatch_mixed(self, types: list[int], payloads: list[bytes], now: float) -> None:
        """Split DATA from control frames; control events follow the batch of packets."""
        packets: list[bytes] = []
        control_events: list[CstpEvent] = []
        for ptype, payload in zip(types, payloads, strict=True):
            if ptype == _DATA:
                packets.append(payload)
                continue
            if ptype == _COMPRESSED and self._compression is not None:
                try:
                    packets.append(self._compression.decompress_untrusted(payload))
                except BadCompressedData as exc:
                    control_events.append(ProtocolFailed(f"bad COMPRESSED frame: {exc}"))
                    self._close()
                    break
                continue
            handler = self._control.get(ptype)
            if handler is None:
                self.rx_unknown_frames += 1
                continue
            event = handler(payload)
            if event is not None:
                control_events.append(event)
                self._close()
                break
        self._deliver(packets, now)
        self._events.extend(control_events)

    def _deliver(self, packets: list[bytes], now: float) -> None:
        if not packets:
            return
        self.rx_packets += len(packets)
        self.rx_bytes += sum(map(len, packets))
        if self.idle_timeout is not None and any_counts_for_idle_untrusted(packets):
            self._last_activity = now
        self._events.append(PacketsReceived(packets))

    def _on_dpd_request(self, payload: bytes) -> None:
        # Echo rule (§8): same channel, same payload, type byte rewritten to DPD-RESP.
        if not self.writable:
            self.dpd_echoes_dropped += 1
            return
        self._out.append(encode_frame(PacketType.DPD_RESP, payload))

    def _on_liveness(self, payload: bytes) -> None:
        """DPD-RESP, KEEPALIVE and a client TERMINATE only prove the peer is alive."""

    def _on_disconnect(self, payload: bytes) -> CstpEvent:
        return _decode_bye(payload)

    def _on_compressed(self, payload: bytes) -> CstpEvent:
        return ProtocolFailed("COMPRESSED frame but no CSTP compression was negotiated")

    def next_event(self) -> CstpEvent | None:
        """Return the next pending event, or ``None``."""
        return self._events.popleft() if self._events else None

    # -- sending -----------------------------------------------------------------------------

    def send_packets(self, packets: Iterable[bytes], now: float | None = None) -> None:
        """Queue IP packets as DATA frames (one frame each).

        Packets longer than ``max_payload`` are dropped and counted in ``tx_dropped`` (the client
        would refuse them). Does nothing once the connection is closed.

        :param now: the current time, for exact idle accounting; without it outbound activity is
            credited at the next ``receive_data``/``handle_timer`` call.
        """
        if self._state is not CstpState.OPEN:
            return
        if self._compression is not None:
            self._send_compressed(packets, now, self._compression)
            return
        out = self._out
        limit = self.max_payload
        want_activity = self.idle_timeout is not None
        active = False
        sent = 0
        nbytes = 0
        for packet in packets:
            size = len(packet)
            if size > limit:
                self.tx_dropped += 1
                continue
            out.append(_pack_header(FRAME_MAGIC, size, 0, 0) + packet)
            sent += 1
            nbytes += size
            if want_activity and not active and counts_for_idle_untrusted(packet):
                active = True
        self.tx_packets += sent
        self.tx_bytes += nbytes
        if active:
            if now is None:
                self._tx_activity_pending = True
            else:
                self._last_activity = max(self._last_activity, now)

    def _send_compressed(
        self, packets: Iterable[bytes], now: float | None, compression: PacketCompression
    ) -> None:
        """:meth:`send_packets` with a negotiated method: COMPRESSED where it pays, else DATA."""
        out = self._out
        limit = self.max_payload
        active = False
        for packet in packets:
            size = len(packet)
            payload = compression.compress(packet) if size <= limit else None
            if size > limit or (payload is not None and len(payload) > limit):
                self.tx_dropped += 1
                continue
            if payload is None:
                out.append(_pack_header(FRAME_MAGIC, size, 0, 0) + packet)
            else:
                out.append(_pack_header(FRAME_MAGIC, len(payload), _COMPRESSED, 0) + payload)
            self.tx_packets += 1
            self.tx_bytes += size
            if self.idle_timeout is not None and not active:
                active = counts_for_idle_untrusted(packet)
        if active:
            if now is None:
                self._tx_activity_pending = True
            else:
                self._last_activity = max(self._last_activity, now)

    def send_disconnect(self, reason: str = "", *, code: int = DisconnectCode.USER_LOGOUT) -> None:
        """Queue a server DISCONNECT (0x05) and close.

        With no reason the payload is empty, as ocserv sends it. With a reason the payload is
        ``code`` + the reason in ASCII (at most 255 bytes); openconnect logs ``code 'reason'`` and
        exits.
        """
        if self._state is not CstpState.OPEN:
            return
        payload = b""
        if reason:
            if not 0 <= code <= 0xFF:
                raise LocalProtocolError(f"disconnect code {code} is not a byte")
            text = reason.encode("ascii", errors="replace")[:MAX_REASON_BYTES]
            payload = bytes((code,)) + text
        self._out.append(encode_frame(PacketType.DISCONNECT, payload))
        self._close()

    def send_terminate(self) -> None:
        """Queue a TERMINATE (0x09, empty) and close: openconnect answers BYE and exits (a kick)."""
        if self._state is not CstpState.OPEN:
            return
        self._out.append(encode_frame(PacketType.TERMINATE))
        self._close()

    def note_activity(self, now: float) -> None:
        """Traffic that counts for ``idle-timeout`` moved on another channel (DTLS)."""
        self._last_activity = max(self._last_activity, now)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame from the client, waiting for the rest."""
        return self._decoder.buffered

    @property
    def compressed(self) -> bool:
        """CSTP compression was negotiated."""
        return self._compression is not None

    def absorb(
        self,
        rx_packets: int,
        rx_bytes: int,
        tx_packets: int,
        tx_bytes: int,
        last_rx: float,
        last_activity: float,
    ) -> None:
        """DATA frames another driver moved for this connection (``ocgate.daemon._offload``):
        its counters, the time it last received a frame and its last idle-relevant packet."""
        self.rx_packets += rx_packets
        self.rx_bytes += rx_bytes
        self.tx_packets += tx_packets
        self.tx_bytes += tx_bytes
        if last_rx > self._last_rx:
            self._last_rx = last_rx
            self._dpd_sent = 0
        self._last_activity = max(self._last_activity, last_activity)

    def frames_to_send(self) -> list[bytes]:
        """Return and forget the queued frames. Write EACH element as exactly one TLS record."""
        out = self._out
        self._out = []
        return out

    # -- timers ------------------------------------------------------------------------------

    def _note_time(self, now: float) -> None:
        if self._tx_activity_pending:
            self._tx_activity_pending = False
            self._last_activity = max(self._last_activity, now)

    def _dpd_deadline(self) -> float | None:
        if not self.dpd:
            return None
        if self._dpd_sent == 0:
            return self._last_rx + DPD_TRIES * self.dpd
        return min(self._dpd_next_req, self._last_rx + DPD_MAX_TRIES * self.dpd)

    def get_timer(self) -> float | None:
        """Return when :meth:`handle_timer` must next be called, or ``None``."""
        if self._state is not CstpState.OPEN:
            return None
        candidates = [self._dpd_deadline(), self.session_deadline]
        if self.idle_timeout is not None:
            candidates.append(self._last_activity + self.idle_timeout)
        deadlines = [c for c in candidates if c is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Run the timers that are due at ``now`` (calling it early is harmless)."""
        if self._state is not CstpState.OPEN:
            return
        self._note_time(now)
        if self.session_deadline is not None and now >= self.session_deadline:
            self._finish_with_bye(SessionTimeout())
        elif self.idle_timeout is not None and now >= self._last_activity + self.idle_timeout:
            self._finish_with_bye(IdleTimeout())
        elif self.dpd:
            self._check_dpd(now)

    def _check_dpd(self, now: float) -> None:
        if now >= self._last_rx + DPD_MAX_TRIES * self.dpd:
            self._events.append(PeerDead())
            self._close()
            return
        if now < self._last_rx + DPD_TRIES * self.dpd:
            return
        if self._dpd_sent == 0 or now >= self._dpd_next_req:
            self._out.append(encode_frame(PacketType.DPD_REQ))
            self._dpd_sent += 1
            self.dpd_requests_sent += 1
            self._dpd_next_req = now + min(float(self.dpd), PERIODIC_CHECK_TIME)

    def _finish_with_bye(self, event: CstpEvent) -> None:
        self._out.append(encode_frame(PacketType.DISCONNECT))
        self._events.append(event)
        self._close()
