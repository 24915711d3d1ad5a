"""The established data path on a C thread of the worker: no Python and no wake-up per packet.

Theory of operation (the thread is ``ocgate._fastpath.Engine``, src/ocgate/_dataplane.c):

* A worker starts one :class:`Offload` (one thread) when its first tunnel comes up. When an
  association is established, its channel *attaches* a pipe: the association's steered UDP socket,
  the tunnel's TUN device, the association's current epoch state, the session's source addresses
  (the packet filter's unrestricted fast path) and what the thread may decide alone: whether data
  may go out over DTLS, the switch-to-tcp-timeout and the data MTU. While attached, the event loop
  reads neither descriptor; the thread moves every data record both ways by itself: from the client,
  one fresh authentic DATA record from the session's address is written to the TUN device; towards
  the client, a TUN packet that fits is sealed and sent.
* Everything else comes back to the event loop through the *lane*, in order, and takes the path it
  took before: ``RAW`` datagrams the thread would not open (handshakes, a rekey, alerts, replays,
  bad MACs) go to the steered socket's reference path; ``OPENED`` payloads that are not DATA (DPD,
  keepalive) to the channel's payload handling; ``RX`` packets the filter's fast path does not admit
  to the tunnel's full filter; ``TX`` packets DTLS must not carry (too large, DTLS not usable) to
  CSTP. So every protocol decision and every rejection keeps its one implementation in Python.
* Counters, the time the client was last heard and the last idle-relevant packet live in the pipe;
  the channel takes them before it reads its own (timers, occtl, close). The epoch state is shared:
  both threads use it under one lock (``_fastpath.h``), so the reference path's replay window and
  write sequence stay those of the fast path.
* Not attached (the event loop keeps the data path, as before): sessions with DTLS compression or a
  bandwidth limit, without the compiled module, or with ``OCGATE_OFFLOAD=off`` in the environment.
* A tunnel's TLS connection goes to the thread too (:class:`TlsPipe`, :meth:`Offload.attach_tls`)
  while no DTLS association holds its TUN device: the thread drives the connection's own ``SSL``
  object through pyOpenSSL's OpenSSL (:func:`_bind_tls`), from a record boundary on, and hands the
  connection back at the first thing that is not plain tunnel data (``ocgate.daemon._tunnel``,
  docs/ARCHITECTURE.md "TLS data path on the thread").
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ocgate.dtls._epoch import IMPLEMENTATION

__all__ = [
    "KIND_BACK",
    "KIND_CSTP",
    "KIND_FAILED",
    "KIND_OPENED",
    "KIND_RAW",
    "KIND_RX",
    "KIND_TX",
    "Offload",
    "OffloadedPipe",
    "PipeStats",
    "TlsPipe",
    "TunnelSide",
]

log = logging.getLogger("ocgate.dtls")

try:
    from ocgate import _fastpath  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on how the package was built
    _fastpath = None

ENABLED = (
    IMPLEMENTATION == "c"
    and _fastpath is not None
    and hasattr(_fastpath, "Engine")
    and os.environ.get("OCGATE_OFFLOAD", "").strip().lower() != "off"
)
"""The worker moves established DTLS data on a C thread (else on its event loop)."""

KIND_RAW, KIND_OPENED, KIND_RX, KIND_TX = 0, 1, 2, 3
"""What the thread hands back (``_dataplane.c``): a datagram it did not open, the payload of an
authentic record that is not DATA, a packet from the client its filter did not admit, a packet
for the client that DTLS (or, on a TLS pipe, one record) does not carry."""
KIND_CSTP, KIND_BACK, KIND_FAILED = 4, 5, 6
"""From a TLS pipe: CSTP bytes for the tunnel's parser (a control frame, or the rest of the
stream from a frame the thread does not take); the pipe let go (the bytes: ciphertext received and
not read); OpenSSL failed (the bytes: its error code)."""

_TLS_FUNCTIONS = (
    "SSL_read",
    "SSL_write",
    "SSL_get_error",
    "BIO_read",
    "BIO_write",
    "ERR_clear_error",
    "ERR_get_error",
)


def _bind_tls() -> bool:
    """Give the thread the OpenSSL that owns pyOpenSSL's SSL objects (``cryptography``'s own
    copy, which the extension does not link): the addresses of the few functions it calls."""
    try:
        from OpenSSL._util import ffi, lib

        _fastpath.bind_tls(*(int(ffi.cast("uintptr_t", getattr(lib, n))) for n in _TLS_FUNCTIONS))
    except (AttributeError, TypeError, ValueError) as exc:  # pragma: no cover - other builds
        log.warning("event=tls-offload bound=no reason=%r", str(exc))
        return False
    return True


Handler = Callable[[int, bytes], None]
PipeStats = tuple[int, int, int, int, int, float, float, int]
"""A pipe's counters since the last look (:meth:`OffloadedPipe.take_stats`)."""


@dataclass(frozen=True, slots=True)
class TunnelSide:
    """What a tunnel lends its DTLS channel so that the data path can leave the event loop."""

    offload: Offload
    tun_fd: int
    sources: tuple[bytes, bytes]
    """The filter's fast-path sources: IPv4 address (or empty), IPv6 prefix (17 bytes: none)."""
    lend_tun: Callable[[], None]
    """The tunnel stops reading its TUN device (the thread reads it)."""
    return_tun: Callable[[], None]
    to_client: Callable[[list[bytes]], None]
    """Packets for the client that DTLS does not carry: the tunnel's CSTP path."""


class OffloadedPipe:
    """One association on the thread; :meth:`close` before either descriptor is closed."""

    def __init__(self, offload: Offload, pipe: Any) -> None:
        self._offload = offload
        self._pipe = pipe

    def configure(self, *, state: object, tx_ok: bool, mtu: int, switch_after: float) -> None:
        self._pipe.configure(state, tx_ok, mtu, switch_after)

    def take_stats(self) -> PipeStats:
        """``(rx_packets, rx_bytes, tx_packets, tx_bytes, tx_dropped, last_rx, last_activity,
        rx_refused)``: ``tx_dropped`` counts packets for the client its full socket refused,
        ``rx_refused`` admitted packets from the client the TUN device refused (both dropped,
        as by a congested link). The counters restart at zero."""
        stats: PipeStats = self._pipe.take_stats()
        return stats

    def close(self) -> None:
        """The thread lets go of both descriptors before this returns; nothing more is handed
        back for this pipe (what the lane still holds is dropped)."""
        self._offload.detach(self._pipe.id)
        self._pipe.close()


class TlsPipe:
    """One tunnel's TLS connection on the thread; :meth:`close` before either descriptor is
    closed or the connection is used again from Python."""

    def __init__(self, offload: Offload, pipe: Any) -> None:
        self._offload = offload
        self._pipe = pipe

    def send(self, frames: list[bytes]) -> None:
        """Each frame as one TLS record, after what the thread queued.

        :raises OSError: OpenSSL failed (the connection cannot continue).
        """
        self._pipe.send(frames)

    @property
    def unsent(self) -> int:
        """Ciphertext bytes waiting for the socket."""
        waiting: int = self._pipe.unsent
        return waiting

    def take_stats(self) -> PipeStats:
        """As :meth:`OffloadedPipe.take_stats`; ``tx_dropped`` stays 0 (Python's CSTP drops)."""
        stats: PipeStats = self._pipe.take_stats()
        return stats

    def close(self) -> tuple[bytes, list[tuple[int, bytes]], bytes]:
        """``(unsent, items, unread)``: ciphertext to write to the transport before anything
        else; what the thread handed back that the lane still held, ``(kind, bytes)`` in order
        (the handler is not called for them); received ciphertext OpenSSL has not read yet, which
        follows a ``KIND_BACK`` item's. Nothing more comes for this pipe."""
        unsent, unread = self._pipe.close()
        items = self._offload.take(self._pipe.id)
        return unsent, items, unread


class Offload:
    """One worker's data-path thread and the dispatch of what it hands back to the event loop."""

    def __init__(self, engine: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._engine = engine
        self._loop = loop
        self._handlers: dict[int, Handler] = {}
        self.tls = _bind_tls()
        """TLS pipes can be attached (:meth:`attach_tls`)."""
        loop.add_reader(engine.fileno(), self._drain)
        log.info("event=dtls-offload thread=started")

    @classmethod
    def start(cls) -> Offload | None:
        """The thread, or ``None`` where the event loop keeps the data path."""
        if not ENABLED:
            return None
        try:
            engine = _fastpath.Engine()
        except OSError as exc:  # No thread (a resource limit): the event loop keeps the data.
            log.warning("event=dtls-offload thread=refused reason=%r", str(exc))
            return None
        return cls(engine, asyncio.get_running_loop())

    def attach(
        self,
        *,
        udp_fd: int,
        side: TunnelSide,
        state: object,
        tx_ok: bool,
        mtu: int,
        switch_after: float,
        handler: Handler,
    ) -> OffloadedPipe | None:
        """Move one association's data path to the thread; ``None`` if its state cannot go (a
        pure-Python state, or one with a test's own IV source)."""
        src4, src6 = side.sources
        try:
            pipe = self._engine.attach(
                udp_fd, side.tun_fd, src4, src6, state, tx_ok, mtu, switch_after
            )
        except (TypeError, ValueError):
            return None
        except OSError as exc:  # Descriptors epoll refuses: the event loop keeps them.
            log.warning("event=dtls-offload pipe=refused reason=%r", str(exc))
            return None
        self._handlers[pipe.id] = handler
        return OffloadedPipe(self, pipe)

    def attach_tls(
        self,
        *,
        tcp_fd: int,
        tun_fd: int,
        handles: tuple[int, int, int],
        sources: tuple[bytes, bytes],
        max_payload: int,
        handler: Handler,
    ) -> TlsPipe:
        """Move a tunnel's TLS connection (from a record boundary on) to the thread.

        :raises OSError: the descriptors cannot be watched.
        """
        ssl, rbio, wbio = handles
        src4, src6 = sources
        pipe = self._engine.attach_tls(tcp_fd, tun_fd, ssl, rbio, wbio, src4, src6, max_payload)
        self._handlers[pipe.id] = handler
        return TlsPipe(self, pipe)

    def take(self, pipe_id: int) -> list[tuple[int, bytes]]:
        """A closed pipe's items still in the lane, out of it; its handler is forgotten."""
        self._handlers.pop(pipe_id, None)
        items: list[tuple[int, bytes]] = self._engine.take(pipe_id)
        return items

    def detach(self, pipe_id: int) -> None:
        self._handlers.pop(pipe_id, None)

    @property
    def lane_dropped(self) -> int:
        """Items the thread dropped because the lane to the event loop was full."""
        dropped: int = self._engine.lane_dropped
        return dropped

    def close(self) -> None:
        self._loop.remove_reader(self._engine.fileno())
        self._engine.close()

    def _drain(self) -> None:
        for pipe_id, kind, data in self._engine.drain():
            handler = self._handlers.get(pipe_id)
            if handler is None:
                continue  # Closed meanwhile.
            try:
                handler(kind, data)
            except Exception:  # One tunnel's bug must not cost the others their packets.
                log.exception("event=dtls-offload-handler-failed kind=%d", kind)
