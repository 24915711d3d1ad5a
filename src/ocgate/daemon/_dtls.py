"""The DTLS side of one tunnel: two association slots, payload framing, DPD and fallback to CSTP.

Theory of operation (anyconnect-protocol.md §8, §9.1, §9.4, §9.5):

* Two slots: ``active`` carries data; a new ClientHello (first handshake, a new client address, a
  client retrying after a failure) builds a ``pending`` association that replaces ``active`` only
  when its handshake completes, so a stray or replayed hello never disturbs a working channel.
* Each DTLS record holds one type byte and a payload: 0x00 DATA, 0x03 DPD-REQ (answered with 0x04
  and the *whole* payload echoed, which the client's MTU probe relies on), 0x04 DPD-RESP, 0x07
  KEEPALIVE, and 0x08 COMPRESSED when a method was negotiated (``X-DTLS-Content-Encoding``):
  decompressed on the reference path (the fast path takes DATA records only, and stops at the
  first other one). Anything else, and a COMPRESSED payload that does not decompress, is counted
  and dropped.
* Data goes to the client over DTLS while the channel is alive: something arrived within
  ``switch-to-tcp-timeout`` seconds. Otherwise, and for packets too large for a record, it goes over
  CSTP. After 2×dpd of silence the server sends a DPD-REQ; after 3×dpd the association is dropped
  and a new handshake from the client can bring DTLS back without touching the tunnel.
* **Fast path** (the per-packet cost of an established channel): the steered socket reads
  datagrams in batches and offers each batch to :meth:`DtlsChannel.receive_fast`, which lets the
  active association's epoch state open every datagram that is exactly one authentic, fresh
  application-data record (:meth:`ocgate.dtls.DtlsAssociation.fast_path`): no record, event or
  per-datagram list objects, no timer touched (the DPD deadline only moves later; a tunnel timer
  that fires early re-arms). The first datagram it cannot take goes through
  :meth:`DtlsChannel.datagram_received`, the reference path, which decides it as before. Sending,
  :meth:`DtlsChannel.send_packets` seals a whole batch with ``seal_data`` and hands it to the
  socket in one call. With compression the batch is sealed in runs of DATA and COMPRESSED records
  in packet order; without it the send path is exactly the uncompressed one.
* **Data-path thread** (:mod:`ocgate.daemon._offload`): where the tunnel lends one (``offload``),
  an established association's data moves on the worker's C thread instead: the channel attaches
  a pipe when the association comes up, reconfigures it when the association changes (a rekey
  starts or completes, the MTU moves) and closes it when the association goes. What the thread
  hands back comes in through ``_from_thread`` and takes the paths above; the pipe's counters and
  times are taken in (:meth:`DtlsChannel.refresh`) before the channel's own are read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ocgate.compress import PacketCompression
from ocgate.cstp import counts_for_idle_untrusted
from ocgate.daemon._offload import (
    KIND_OPENED,
    KIND_RAW,
    KIND_RX,
    KIND_TX,
    OffloadedPipe,
    TunnelSide,
)
from ocgate.dtls import (
    Address,
    AssociationClosed,
    ClientHelloInfo,
    DataReceived,
    DtlsAssociation,
    HandshakeCompleted,
    HandshakeFailed,
    LegacyMode,
    PskMode,
)
from ocgate.errors import BadCompressedData

__all__ = ["DtlsChannel"]

log = logging.getLogger("ocgate.dtls")

DATA, DPD_REQ, DPD_RESP, KEEPALIVE, COMPRESSED = 0x00, 0x03, 0x04, 0x07, 0x08
_DATA_PREFIX = bytes((DATA,))
_COMPRESSED_PREFIX = bytes((COMPRESSED,))
_DPD_REQUEST = bytes((DPD_REQ,))
_MAX_DATA_MTU = 16384


@dataclass(slots=True)
class _Slot:
    assoc: DtlsAssociation
    addr: Address
    transport: asyncio.DatagramTransport
    send_many: Callable[[list[bytes]], object] | None = None
    """The transport's batch send, when it has one (the steered socket)."""

    def flush(self) -> None:
        datagrams = self.assoc.datagrams_to_send()
        if datagrams:
            self.send(datagrams)

    def send(self, datagrams: list[bytes]) -> None:
        if self.send_many is not None:
            self.send_many(datagrams)
            return
        for datagram in datagrams:
            self.transport.sendto(datagram, self.addr)


class DtlsChannel:
    """DTLS for one tunnel; the tunnel asks :meth:`usable` before sending data this way."""

    def __init__(
        self,
        *,
        mode: LegacyMode | PskMode,
        session_sid: str,
        dpd: int,
        switch_to_tcp_timeout: int,
        mtu: int,
        mtu_discovery: bool = False,
        on_packets: Callable[[list[bytes]], None],
        on_established: Callable[[DtlsChannel], None],
        on_activity: Callable[[float], None],
        on_timer_change: Callable[[], None],
        rekey_interval: float = 0.0,
        compression: PacketCompression | None = None,
        offload: TunnelSide | None = None,
    ) -> None:
        self.mode = mode
        self._offload = offload
        self._pipe: OffloadedPipe | None = None
        self._pipe_slot: _Slot | None = None
        self._activity_seen = 0.0
        self._rekey_interval = rekey_interval
        """A DTLS renegotiation sooner than this after the previous one ends DTLS (ocserv)."""
        self.compression = compression
        """The negotiated DTLS compression (``X-DTLS-Content-Encoding``), or ``None``."""
        self._sid = session_sid
        self._dpd = dpd
        self._switch_after = switch_to_tcp_timeout
        self.mtu = mtu
        self._mtu_discovery = mtu_discovery
        self._on_packets = on_packets
        self._on_established = on_established
        self._on_activity = on_activity
        self._on_timer_change = on_timer_change
        self._active: _Slot | None = None
        self._pending: _Slot | None = None
        self._last_rx = 0.0
        self._next_dpd = 0.0
        self.rx_bytes = self.tx_bytes = self.rx_packets = self.tx_packets = 0
        self.dropped = 0
        self.send_dropped = 0
        """Datagrams to the client its socket refused (a full buffer), on the data-path thread
        or from here."""
        self.rx_refused = 0
        """Packets from the client the TUN device refused on the data-path thread (from here
        they go through the tunnel, which counts them)."""

    @property
    def cipher_description(self) -> str:
        if self._active is None:
            return ""
        return self._active.assoc.cipher_description or ""

    def usable(self, now: float) -> bool:
        """Data to the client goes over DTLS: a channel is up and the client was heard lately."""
        self.refresh()
        if self._active is None or self._active.assoc.renegotiating:
            return False  # A DTLS rekey in progress: CSTP meanwhile, as ocserv.
        return not self._switch_after or now - self._last_rx < self._switch_after

    # From the UDP port ----------------------------------------------------------------------------

    def client_hello(
        self,
        data: bytes,
        info: ClientHelloInfo,
        addr: Address,
        transport: asyncio.DatagramTransport,
        bind: Callable[[Address, DtlsChannel], None],
    ) -> None:
        """A ClientHello naming this session: a retransmission, or a new handshake."""
        for slot in (self._pending, self._active):
            if slot is not None and slot.addr == addr and slot.assoc.client_random == info.random:
                self._feed(slot, data)
                return
        now = time.monotonic()
        assoc = DtlsAssociation(
            mode=self.mode, now=now, mtu=self.mtu + 1, rekey_interval=self._rekey_interval
        )
        self._pending = _Slot(assoc, addr, transport, getattr(transport, "send_many", None))
        bind(addr, self)
        self._feed(self._pending, data)

    def receive_fast(self, datagrams: list[bytes], start: int, addr: Address) -> int:
        """Take the data records of ``datagrams[start:]`` from ``addr`` on the fast path.

        Returns the index of the first datagram left for :meth:`datagram_received` (the caller
        passes it there, then calls again after it), or ``len(datagrams)``.
        """
        active = self._active
        if active is None or active.addr != addr:
            return start
        state = active.assoc.fast_path
        if state is None:
            return start
        packets, stop, payload = state.open_batch_untrusted(datagrams, start, DATA)
        if not packets and payload is None:
            return stop
        now = time.monotonic()
        self._last_rx = now
        self._next_dpd = now + 2 * self._dpd
        if packets:
            self._deliver(packets, now)
        if payload is None:
            return stop
        self._payloads(active, [payload], now)  # DPD, keepalive: as the reference path does.
        active.flush()
        return stop + 1

    def datagram_received(self, data: bytes, addr: Address) -> None:
        for slot in (self._active, self._pending):
            if slot is not None and slot.addr == addr:
                self._feed(slot, data)
                return
        self.dropped += 1

    def _feed(self, slot: _Slot, data: bytes) -> None:
        now = time.monotonic()
        slot.assoc.receive_datagram(data, now)
        self._drain(slot, now)

    def _drain(self, slot: _Slot, now: float) -> None:
        while (event := slot.assoc.next_event()) is not None:
            if isinstance(event, DataReceived):
                if slot is self._active:
                    self._payloads(slot, event.payloads, now)
            elif isinstance(event, HandshakeCompleted):
                self._promote(slot, now)
            elif isinstance(event, (HandshakeFailed, AssociationClosed)):
                self._lost(slot, event.reason)
        slot.flush()
        self._push()
        self._on_timer_change()

    def _promote(self, slot: _Slot, now: float) -> None:
        if slot is self._active:  # A renegotiation of the established association completed.
            log.info(
                "event=dtls-rekey session=%s cipher=%s count=%d",
                self._sid,
                slot.assoc.cipher_description,
                slot.assoc.rekeys,
            )
            return
        if slot is not self._pending:
            return
        self._disengage()
        self._active, self._pending = slot, None
        self._last_rx = now
        self._next_dpd = now + 2 * self._dpd
        self._engage(slot)
        log.info(
            "event=dtls-up session=%s cipher=%s remote=%s datapath=%s",
            self._sid,
            slot.assoc.cipher_description,
            slot.addr[0],
            "thread" if self._pipe is not None else "loop",
        )
        self._on_established(self)

    def _lost(self, slot: _Slot, reason: str) -> None:
        if slot is self._active:
            log.info("event=dtls-down session=%s reason=%r", self._sid, reason)
            self._disengage()
            self._active = None
        elif slot is self._pending:
            log.info("event=dtls-handshake-failed session=%s reason=%r", self._sid, reason)
            self._pending = None

    def _payloads(self, slot: _Slot, payloads: Sequence[bytes], now: float) -> None:
        self._last_rx = now
        self._next_dpd = now + 2 * self._dpd
        packets: list[bytes] = []
        replies: list[bytes] = []
        for payload in payloads:
            kind = payload[0] if payload else -1
            if kind == DATA:
                packets.append(payload[1:])
            elif kind == COMPRESSED and self.compression is not None:
                try:
                    packets.append(self.compression.decompress_untrusted(payload[1:]))
                except BadCompressedData:
                    self.dropped += 1
            elif kind == DPD_REQ:
                # try-mtu-discovery (ocserv): a probe larger than the data MTU made it through,
                # so the path carries it; raise the MTU used for data records to match.
                if self._mtu_discovery and self.mtu < len(payload) - 1 <= _MAX_DATA_MTU:
                    self.mtu = len(payload) - 1
                replies.append(bytes((DPD_RESP,)) + payload[1:])
            elif kind not in (DPD_RESP, KEEPALIVE):
                self.dropped += 1
        if replies:
            slot.assoc.send_data(replies)
        if packets:
            self._deliver(packets, now)

    def _deliver(self, packets: list[bytes], now: float) -> None:
        self.rx_packets += len(packets)
        self.rx_bytes += sum(map(len, packets))
        if any(counts_for_idle_untrusted(p) for p in packets):
            self._on_activity(now)
        self._on_packets(packets)

    # To the client --------------------------------------------------------------------------------

    def send_packets(self, packets: list[bytes], now: float) -> list[bytes]:
        """Send what fits over DTLS; return the packets that must go over CSTP instead."""
        slot = self._active
        if slot is None:
            return packets
        mtu = self.mtu
        fits = [p for p in packets if len(p) <= mtu]
        state = slot.assoc.fast_path
        if self.compression is not None:
            self._send_compressed(slot, fits, self.compression)
        elif state is not None:
            slot.send(state.seal_data(_DATA_PREFIX, fits))
        else:
            slot.assoc.send_data([_DATA_PREFIX + p for p in fits])
            slot.flush()
        self.tx_packets += len(fits)
        self.tx_bytes += sum(map(len, fits))
        if any(counts_for_idle_untrusted(p) for p in fits):
            self._on_activity(now)
        return [p for p in packets if len(p) > mtu] if len(fits) < len(packets) else []

    @staticmethod
    def _send_compressed(slot: _Slot, packets: list[bytes], compression: PacketCompression) -> None:
        """Seal ``packets`` as COMPRESSED where the method shrinks them, else DATA, in order."""
        runs: list[tuple[bytes, list[bytes]]] = []
        for packet in packets:
            payload = compression.compress(packet)
            prefix = _DATA_PREFIX if payload is None else _COMPRESSED_PREFIX
            body = packet if payload is None else payload
            if runs and runs[-1][0] is prefix:
                runs[-1][1].append(body)
            else:
                runs.append((prefix, [body]))
        state = slot.assoc.fast_path
        for prefix, bodies in runs:
            if state is not None:
                slot.send(state.seal_data(prefix, bodies))
            else:
                slot.assoc.send_data([prefix + body for body in bodies])
        if state is None:
            slot.flush()

    # Timers ---------------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        self.refresh()
        timers = [s.assoc.get_timer() for s in (self._active, self._pending) if s is not None]
        if self._active is not None and self._dpd > 0:
            timers.append(self._next_dpd)
        due = [t for t in timers if t is not None]
        return min(due) if due else None

    def handle_timer(self, now: float) -> None:
        self.refresh()
        for slot in (self._active, self._pending):
            if slot is None:
                continue
            timer = slot.assoc.get_timer()
            if timer is not None and now >= timer:
                slot.assoc.handle_timer(now)
                self._drain(slot, now)
        active = self._active
        if active is None or self._dpd <= 0 or now < self._next_dpd:
            return
        if now - self._last_rx >= 3 * self._dpd:
            log.info("event=dtls-dead session=%s silent=%.0f", self._sid, now - self._last_rx)
            self._disengage()
            self._active = None
            return
        active.assoc.send_data([_DPD_REQUEST])
        active.flush()
        self._next_dpd = now + self._dpd

    def close(self) -> None:
        """Say close_notify on the active association and forget both slots."""
        self._disengage()
        if self._active is not None:
            self._active.assoc.close()
            self._active.flush()
        self._active = self._pending = None

    # The data-path thread -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Take in the thread's counters and times (before reading the channel's own)."""
        pipe = self._pipe
        if pipe is None:
            return
        rx_packets, rx_bytes, tx_packets, tx_bytes, tx_dropped, last_rx, activity, refused = (
            pipe.take_stats()
        )
        self.rx_packets += rx_packets
        self.rx_bytes += rx_bytes
        self.tx_packets += tx_packets
        self.tx_bytes += tx_bytes
        self.send_dropped += tx_dropped
        self.rx_refused += refused
        if last_rx > self._last_rx:
            self._last_rx = last_rx
            self._next_dpd = max(self._next_dpd, last_rx + 2 * self._dpd)
        if activity > self._activity_seen:
            self._activity_seen = activity
            self._on_activity(activity)

    def socket_closing(self, transport: object) -> None:
        """``transport`` (a steered socket) is about to close: the thread must let go of it."""
        if self._pipe_slot is not None and self._pipe_slot.transport is transport:
            self._disengage()

    def _engage(self, slot: _Slot) -> None:
        side = self._offload
        state = slot.assoc.fast_path
        lend = getattr(slot.transport, "lend", None)
        if side is None or self.compression is not None or state is None or lend is None:
            return
        side.lend_tun()  # First: the tunnel's own TLS pipe, if any, lets go of the device.
        pipe = side.offload.attach(
            udp_fd=slot.transport.fileno(),  # type: ignore[attr-defined]
            side=side,
            state=state,
            tx_ok=True,
            mtu=self.mtu,
            switch_after=float(self._switch_after),
            handler=self._from_thread,
        )
        if pipe is None:
            side.return_tun()
            return
        lend()
        self._pipe, self._pipe_slot = pipe, slot

    def _disengage(self) -> None:
        pipe, slot = self._pipe, self._pipe_slot
        if pipe is None or slot is None or self._offload is None:
            return
        self.refresh()
        self._pipe = self._pipe_slot = None
        pipe.close()
        slot.transport.take_back()  # type: ignore[attr-defined]
        self._offload.return_tun()

    def _push(self) -> None:
        """Tell the thread what changed: the epoch state (none while a rekey runs), the MTU."""
        pipe, slot = self._pipe, self._pipe_slot
        if pipe is None or slot is None:
            return
        if slot is not self._active:
            self._disengage()
            return
        assoc = slot.assoc
        pipe.configure(
            state=assoc.fast_path,
            tx_ok=not assoc.renegotiating,
            mtu=self.mtu,
            switch_after=float(self._switch_after),
        )

    def _from_thread(self, kind: int, data: bytes) -> None:
        slot = self._pipe_slot
        if slot is None:
            return
        if kind == KIND_RAW:
            slot.transport.datagram_received(data, slot.addr)  # type: ignore[attr-defined]
        elif kind == KIND_OPENED:
            mtu = self.mtu
            self._payloads(slot, [data], time.monotonic())
            slot.flush()
            if self.mtu != mtu:
                self._push()
        elif kind == KIND_RX:
            self._deliver([data], time.monotonic())
        elif kind == KIND_TX and self._offload is not None:
            self._offload.to_client([data])
