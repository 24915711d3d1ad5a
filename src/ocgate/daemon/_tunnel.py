"""The packet pump of one tunnel: TUN device ⇄ CSTP core ⇄ TLS endpoint ⇄ TCP transport.

Per packet, TUN → client: the TUN fd becomes readable, up to ``_BATCH`` packets are read, the CSTP
core frames them, and each frame is encrypted as one TLS record (openconnect reads one frame per
record) and written to the transport in one call. Client → TUN: decrypted bytes go to the CSTP core,
which hands back every complete DATA packet of that read as one batch; the batch passes the
tunnel's :class:`~ocgate.ipfilter.PacketFilter` (source address, restrictions; DTLS packets too)
and what it admits is written to the TUN fd.

Back-pressure: when the TCP transport's buffer fills, asyncio calls ``pause_writing`` and the pump
stops reading the TUN device (the kernel then drops at the TUN queue, as a congested link would)
until ``resume_writing``.

On the worker's data-path thread (``ocgate.daemon._offload``): while no DTLS association holds the
TUN device, and with no bandwidth limit or CSTP compression, the tunnel lends the thread its TLS
connection and TUN device whenever both directions are at a record boundary with nothing buffered
(:meth:`Tunnel._engage_tls`). The thread then moves the DATA frames both ways; what it hands back
comes in through :meth:`Tunnel._from_thread` and takes the paths above, and at a hand-back the
tunnel takes the connection back (:meth:`Tunnel._disengage_tls`) and drives it as described here.

Bandwidth (``rx-data-per-sec``, ``tx-data-per-sec``): a :class:`~ocgate.gateway.TokenBucket` per
direction drops what exceeds the rate, where the two channels meet: packets from the client before
the TUN write (and before the filter, as ocserv limits before its firewall), packets to the client
right after the TUN read, before the CSTP/DTLS choice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ocgate.cstp import (
    ByeReceived,
    CstpConnection,
    IdleTimeout,
    PacketsReceived,
    PeerDead,
    ProtocolFailed,
    SessionTimeout,
)
from ocgate.daemon._closer import close_later
from ocgate.daemon._dtls import DtlsChannel
from ocgate.daemon._offload import (
    KIND_BACK,
    KIND_CSTP,
    KIND_FAILED,
    KIND_RX,
    KIND_TX,
    Offload,
    TlsPipe,
    TunnelSide,
)
from ocgate.dtls import PskMode
from ocgate.gateway import TokenBucket, TunnelPlan
from ocgate.http import Request
from ocgate.ipfilter import PacketFilter
from ocgate.metrics import TunnelCounters
from ocgate.session import Session
from ocgate.tls import TlsEndpoint, TlsFailure
from ocgate.tun import TunDevice

__all__ = ["Tunnel", "TunnelMeta"]

log = logging.getLogger("ocgate.tunnel")

_PSK_EXPORTER_LABEL = b"EXPORTER-openconnect-psk"  # anyconnect-protocol.md §9.3
_BATCH = 64
_TLS_PIPE_UNSENT_LIMIT = 1 << 20
"""Ciphertext a TLS pipe may hold for a client that does not read before the event loop's frames
(DPD echoes, packets) are dropped, as a full transport drops them (``pause_writing``)."""
BYE_USER_LOGOUT = 0xB0


@dataclass(frozen=True, slots=True)
class TunnelMeta:
    """Facts about one tunnel that scripts, logs and occtl report."""

    id: int
    connected_at: float
    """Wall-clock time (epoch seconds) of the CONNECT."""
    remote_ip: str
    local_ip: str
    user_agent: str
    device_type: str
    platform: str

    @classmethod
    def from_request(
        cls, tunnel_id: int, request: Request, remote_ip: str, local_ip: str, now_wall: float
    ) -> TunnelMeta:
        return cls(
            id=tunnel_id,
            connected_at=now_wall,
            remote_ip=remote_ip,
            local_ip=local_ip,
            user_agent=request.header("user-agent") or "",
            device_type=request.header("x-anyconnect-identifier-devicetype") or "",
            platform=request.header("x-anyconnect-identifier-platform") or "",
        )


class Tunnel:
    """Moves packets for one session until either side ends it."""

    def __init__(
        self,
        *,
        session: Session,
        tun: TunDevice,
        cstp: CstpConnection,
        tls: TlsEndpoint,
        transport: asyncio.Transport,
        on_closed: Callable[[Tunnel, str, bool], None],
        plan: TunnelPlan,
        meta: TunnelMeta,
        packet_filter: PacketFilter,
        rx_per_sec: int = 0,
        tx_per_sec: int = 0,
        offload: Offload | None = None,
        receive_tls: Callable[[bytes], None] | None = None,
    ) -> None:
        self.session = session
        self.packet_filter = packet_filter
        self.plan = plan
        self.meta = meta
        self.tun = tun
        self.cstp = cstp
        self._tls = tls
        self._transport = transport
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._reading = False
        self._lent = False
        """The TUN device is read by the data-path thread (:mod:`ocgate.daemon._offload`)."""
        self.closed = False
        self.dtls: DtlsChannel | None = None
        # rx-data-per-sec / tx-data-per-sec: applied on the TUN side, whichever channel carries
        # the packet (None: no limit).
        now = self._loop.time()
        self.rx_limit = TokenBucket.per_second(rx_per_sec, now)
        self.tx_limit = TokenBucket.per_second(tx_per_sec, now)
        self._offload = offload if offload is not None and offload.tls else None
        self._receive_tls = receive_tls
        """The connection's path for TLS bytes from the client (a TLS pipe's unread rest)."""
        self._tls_pipe: TlsPipe | None = None
        """The TLS connection and the TUN device are driven by the data-path thread."""
        self._releasing = False
        self.rx_refused = 0
        """Packets from the client the TUN device refused (the DTLS thread's are the channel's)."""
        self.tx_no_room = 0
        """Packets for the client dropped because its TLS connection had no room."""

    @property
    def rx_bytes(self) -> int:
        """IP bytes received from the client (both channels)."""
        return self.counters().rx_bytes

    @property
    def tx_bytes(self) -> int:
        """IP bytes sent to the client (both channels)."""
        return self.counters().tx_bytes

    @property
    def transport(self) -> str:
        """Where data to the client flows now: ``dtls`` or ``cstp``."""
        dtls = self.dtls
        return "dtls" if dtls is not None and dtls.usable(self._loop.time()) else "cstp"

    def tls_rekeyed(self) -> None:
        """The client renegotiated TLS (``rekey-method = ssl``, TLS 1.2).

        The TLS exporter changed with the master secret, and openconnect derives the key of its
        next PSK-DTLS handshake from the renegotiated session: new DTLS associations use it. The
        established one keeps the key it was made with.
        """
        log.info(
            "event=tls-rekey session=%s count=%d cipher=%s",
            self.session.sid,
            self._tls.renegotiations,
            self._tls.cipher_description(),
        )
        dtls = self.dtls
        if dtls is not None and isinstance(dtls.mode, PskMode):
            psk = self._tls.export_keying_material(_PSK_EXPORTER_LABEL, len(dtls.mode.psk))
            dtls.mode = dataclasses.replace(dtls.mode, psk=psk)

    def attach_dtls(self, channel: DtlsChannel) -> None:
        """Use ``channel`` for data once its handshake completes (set before :meth:`start`)."""
        self.dtls = channel

    def offload_side(self, offload: Offload | None) -> TunnelSide | None:
        """What the DTLS channel needs to move this tunnel's data on the worker's thread; ``None``
        where the event loop keeps it (a bandwidth limit is applied here, per packet)."""
        if offload is None or self.rx_limit is not None or self.tx_limit is not None:
            return None
        return TunnelSide(
            offload=offload,
            tun_fd=self.tun.fd,
            sources=self.packet_filter.fast_sources(),
            lend_tun=self._lend_tun,
            return_tun=self._return_tun,
            to_client=self._to_client,
        )

    @property
    def tls_description(self) -> str:
        """GnuTLS-style description of the CSTP session, e.g. ``(TLS1.3)-(AES-256-GCM)``."""
        return self._tls.cipher_description()

    @property
    def dtls_description(self) -> str:
        """The DTLS cipher (``(DTLS1.2)-(PSK)-(AES-256-GCM)``), empty while there is none."""
        return self.dtls.cipher_description if self.dtls is not None else ""

    def counters(self) -> TunnelCounters:
        """Traffic of both channels: IP bytes and packets from (rx) and to (tx) the client."""
        cstp, dtls = self.cstp, self.dtls
        self._absorb_tls()
        if dtls is not None:
            dtls.refresh()
        return TunnelCounters(
            transport=self.transport,
            rx_bytes=cstp.rx_bytes + (dtls.rx_bytes if dtls else 0),
            tx_bytes=cstp.tx_bytes + (dtls.tx_bytes if dtls else 0),
            rx_packets=cstp.rx_packets + (dtls.rx_packets if dtls else 0),
            tx_packets=cstp.tx_packets + (dtls.tx_packets if dtls else 0),
            dropped=tuple(self.packet_filter.dropped),
            rx_refused=self.rx_refused + (dtls.rx_refused if dtls else 0),
            rx_over_limit=self.rx_limit.dropped_packets if self.rx_limit else 0,
            tx_over_limit=self.tx_limit.dropped_packets if self.tx_limit else 0,
            tx_no_room=self.tx_no_room + (dtls.send_dropped if dtls else 0),
            tx_oversize=cstp.tx_dropped,
        )

    # Lifecycle ------------------------------------------------------------------------------------

    def start(self, initial: bytes) -> None:
        self._resume_tun()
        if initial:
            self.receive_cstp(initial)
        else:
            self._arm_timer()
            self._engage_tls()

    def close(self, reason: str, *, end_session: bool = False, notify: bool = False) -> None:
        """Stop the pump and remove the TUN device; ``notify`` sends a DISCONNECT first."""
        if self.closed:
            return
        self.closed = True
        if notify and not self._transport.is_closing():
            self.cstp.send_disconnect(reason)
            self._flush()
        self._release_tls()
        self._pause_tun()
        if self._timer is not None:
            self._timer.cancel()
        if self.dtls is not None:
            self.dtls.close()
        # Closing the last descriptor unregisters the device, which waits for RCU grace periods
        # (tens of milliseconds): never on the event loop, which serves every other client.
        fd = self.tun.detach()
        if fd >= 0:
            close_later(fd)
        if not self._transport.is_closing():
            self._tls.shutdown()
            self._transport.write(self._tls.data_to_send())
            self._transport.close()
        self._on_closed(self, reason, end_session)

    # Back-pressure (called by the connection's pause_writing / resume_writing) -------------------

    def pause_writing(self) -> None:
        self.cstp.writable = False  # DPD echoes are dropped meanwhile, not queued.
        self._pause_tun()

    def resume_writing(self) -> None:
        self.cstp.writable = True
        if not self.closed and not self._lent:
            self._resume_tun()

    def _lend_tun(self) -> None:
        self._lent = True
        self._disengage_tls()  # DTLS carries the data now; TLS goes back to the event loop.
        self._pause_tun()

    def _return_tun(self) -> None:
        self._lent = False
        if not self.closed and self.cstp.writable:
            self._resume_tun()
            self._engage_tls()

    # The TLS connection on the data-path thread ------------------------------------------------

    def _engage_tls(self) -> None:
        """Hand the TLS connection and the TUN device to the thread, where that is possible now:
        no DTLS association holds the device, no bandwidth limit or CSTP compression applies,
        and both directions are at a record and frame boundary with nothing buffered."""
        offload, transport = self._offload, self._transport
        if (
            offload is None
            or self._tls_pipe is not None
            or self._releasing
            or self.closed
            or self._lent
            or self.rx_limit is not None
            or self.tx_limit is not None
            or self.cstp.compressed
            or self.cstp.buffered
            or not self.cstp.writable
            or transport.is_closing()
            or transport.get_write_buffer_size()
            or not self._tls.quiescent()
        ):
            return
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        transport.pause_reading()
        try:
            self._tls_pipe = offload.attach_tls(
                tcp_fd=sock.fileno(),
                tun_fd=self.tun.fd,
                handles=self._tls.handles(),
                sources=self.packet_filter.fast_sources(),
                max_payload=self.cstp.max_payload,
                handler=self._from_thread,
            )
        except OSError as exc:
            log.warning("event=tls-offload session=%s refused=%r", self.session.sid, str(exc))
            transport.resume_reading()
            return
        self._pause_tun()
        log.debug("event=tls-offload session=%s datapath=thread", self.session.sid)

    def _absorb_tls(self) -> None:
        if self._tls_pipe is not None:
            rxp, rxb, txp, txb, _, last_rx, last_activity, refused = self._tls_pipe.take_stats()
            self.cstp.absorb(rxp, rxb, txp, txb, last_rx, last_activity)
            self.rx_refused += refused

    def _release_tls(self) -> bytes:
        """Take the connection back from the thread; the ciphertext it received and did not
        read. What it handed back that the lane still held is taken here, in order."""
        pipe = self._tls_pipe
        if pipe is None:
            return b""
        self._absorb_tls()
        self._tls_pipe = None
        unsent, items, unread = pipe.close()
        if unsent and not self._transport.is_closing():
            self._transport.write(unsent)
        received = b""
        self._releasing = True  # No new pipe while the old one's items are taken in.
        try:
            for kind, data in items:
                if kind == KIND_BACK:
                    received += data
                elif not self.closed:
                    self._from_thread(kind, data)
        finally:
            self._releasing = False
        return received + unread

    def _disengage_tls(self, handed_back: bytes = b"") -> None:
        """The event loop drives the TLS connection again, from what the thread received and
        did not read (``handed_back``: what came with its ``KIND_BACK``, first)."""
        if self._tls_pipe is None:
            return
        unread = handed_back + self._release_tls()
        if self.closed:
            return
        if self._tls.peer_closed():  # A TLS 1.3 close_notify, which the thread read.
            self.close("client closed TLS")
            return
        if not self._transport.is_closing():
            self._transport.resume_reading()
        if not self._lent and self.cstp.writable:
            self._resume_tun()
        if unread and self._receive_tls is not None:
            self._receive_tls(unread)

    def _from_thread(self, kind: int, data: bytes) -> None:
        if self.closed:
            return
        if kind == KIND_CSTP:
            self.receive_cstp(data)
        elif kind == KIND_RX:
            self.write_packets([data])
        elif kind == KIND_TX:
            self._send([data], self._loop.time())
        elif kind == KIND_BACK:
            self._disengage_tls(data)
        elif kind == KIND_FAILED:
            code = int.from_bytes(data, "big")
            log.warning(
                "event=tls-failed session=%s reason='OpenSSL error 0x%x'", self.session.sid, code
            )
            self.close("TLS failure")

    def _pause_tun(self) -> None:
        if self._reading:
            self._loop.remove_reader(self.tun.fd)
            self._reading = False

    def _resume_tun(self) -> None:
        if not self._reading:
            self._loop.add_reader(self.tun.fd, self._on_tun_readable)
            self._reading = True

    # Data path ------------------------------------------------------------------------------------

    def _on_tun_readable(self) -> None:
        batch = self.tun.read_batch(_BATCH)
        if not batch:
            return
        now = self._loop.time()
        if self.tx_limit is not None and not (batch := self.tx_limit.filter(batch, now)):
            return
        self._send(batch, now)

    def _send(self, batch: list[bytes], now: float) -> None:
        dtls = self.dtls
        if dtls is not None and dtls.usable(now):
            batch = dtls.send_packets(batch, now)  # What does not fit a record goes over CSTP.
        if batch:
            self.cstp.send_packets(batch, now)
            self._flush()

    def _to_client(self, batch: list[bytes]) -> None:
        """Packets the data-path thread read that DTLS does not carry now."""
        if self.closed:
            return
        if self.cstp.writable:
            self._send(batch, self._loop.time())
        else:  # Dropped, as at a full TUN queue.
            self.tx_no_room += len(batch)

    def write_packets(self, packets: list[bytes]) -> None:
        """Packets from the client (either channel) into the TUN device, those the filter admits."""
        if self.rx_limit is not None:
            packets = self.rx_limit.filter(packets, self._loop.time())
        admitted = self.packet_filter.admit_untrusted(packets)
        self.rx_refused += len(admitted) - self.tun.write_batch(admitted)
        if self._reading and not self.closed:
            # What the kernel answered while taking the write (an echo reply, TCP ACKs) is queued
            # already: send it now, not after another trip through the event loop.
            self._on_tun_readable()

    def note_activity(self, now: float) -> None:
        """Idle-relevant traffic on the DTLS channel."""
        self.cstp.note_activity(now)

    def receive_cstp(self, data: bytes) -> None:
        """Plaintext from the TLS endpoint, in tunnel mode."""
        self.cstp.receive_data(data, self._loop.time())
        self._process_events()
        self._engage_tls()

    def _process_events(self) -> None:
        while not self.closed:
            event = self.cstp.next_event()
            if event is None:
                break
            if isinstance(event, PacketsReceived):
                self.write_packets(event.packets)
            else:
                self._control_event(event)
        if not self.closed:
            self._flush()
            self._arm_timer()

    def _control_event(self, event: object) -> None:
        sid = self.session.sid
        if isinstance(event, ByeReceived):
            logout = event.code == BYE_USER_LOGOUT
            log.info("event=bye session=%s code=%s message=%r", sid, event.code, event.message)
            self.close("client logout" if logout else "client disconnect", end_session=logout)
        elif isinstance(event, PeerDead):
            log.info("event=dpd-dead session=%s", sid)
            self.close("dead peer detected")
        elif isinstance(event, IdleTimeout):
            log.info("event=idle-timeout session=%s", sid)
            self.close("idle timeout", end_session=True, notify=True)
        elif isinstance(event, SessionTimeout):
            log.info("event=session-timeout session=%s", sid)
            self.close("session timeout", end_session=True, notify=True)
        elif isinstance(event, ProtocolFailed):
            log.warning("event=bad-cstp session=%s reason=%r", sid, event.message)
            self.close("protocol error")

    def _flush(self) -> None:
        frames = self.cstp.frames_to_send()
        if not frames:
            return
        pipe = self._tls_pipe
        if pipe is not None:
            if pipe.unsent > _TLS_PIPE_UNSENT_LIMIT:
                self.tx_no_room += len(frames)
                return
            try:
                pipe.send(frames)
            except OSError as exc:
                log.warning(
                    "event=tls-send-failed session=%s reason=%r", self.session.sid, str(exc)
                )
                self.close("TLS failure")
            return
        tls = self._tls
        try:
            for frame in frames:
                tls.send(frame)
        except TlsFailure as exc:
            log.warning("event=tls-send-failed session=%s reason=%r", self.session.sid, str(exc))
            self.close("TLS failure")
            return
        if not self._transport.is_closing():
            self._transport.write(tls.data_to_send())

    # Timers ---------------------------------------------------------------------------------------

    def rearm_timer(self) -> None:
        """A deadline may have moved (a DTLS handshake step): re-arm the timer."""
        if not self.closed:
            self._arm_timer()

    def _arm_timer(self) -> None:
        # Deadlines move later with every packet; re-arming per packet would cost a heap operation
        # each
        # time. A timer that fires early is harmless: handle_timer does nothing and we re-arm.
        when = self.cstp.get_timer()
        if self.dtls is not None:
            dtls_when = self.dtls.get_timer()
            if dtls_when is not None and (when is None or dtls_when < when):
                when = dtls_when
        if self._timer is not None:
            if when is not None and self._timer.when() <= when:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self._loop.time()
        self._absorb_tls()  # The DPD and idle timers need the thread's times first.
        if self.dtls is not None:
            self.dtls.refresh()
        self.cstp.handle_timer(now)
        if self.dtls is not None:
            self.dtls.handle_timer(now)
        self._process_events()
