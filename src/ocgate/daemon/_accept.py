"""The supervisor's accept path: the gate's verdict, held connections, connection points.

Theory of operation: the supervisor accepts each TCP connection without reading it and asks the
accept gate (:class:`ocgate.bans.AdmissionGate`) with the peer's address. A refused connection is
closed at once (no TLS, no worker sees it) and counted by reason; a few lines a second say so in the
log, with a count of the ones not logged. An admitted one goes to a worker with its gate token,
at once or, under ``rate-limit-ms``, when its source's slot comes (held here until then). Each
accepted address earns ``ban-points-connection`` in the authentication service, which keeps the
scores; the addresses go there in batches (one message per 50 ms at most) rather than one
round trip per connection. The gate hears of bans back from the authentication service.

Behind a balancer (``listen-proxy-proto``) the peer address is the balancer's: the connection is
admitted unattributed (the global cap only, no points) and handed over at once, marked
``proxied``. The worker reads the PROXY protocol header and reports the client's address
(:class:`~ocgate.ipc.messages.RealAddress`); :meth:`Acceptor.attribute` then applies the bans, the
per-source cap, the rate slot and the connection's ban points to it, and answers with the delay or
a refusal (logged and counted here, like one at accept; the worker closes the connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable

from ocgate.bans import AdmissionGate, AdmissionRefused, GatePolicy
from ocgate.config import Config
from ocgate.ipc import messages as m

__all__ = ["Acceptor", "gate_policy"]

log = logging.getLogger("ocgate")

_POINTS_DELAY = 0.05
_POINTS_BATCH = 4096  # The message's bound.
_LOG_PER_SECOND = 10


def gate_policy(config: Config) -> GatePolicy:
    return GatePolicy(
        max_pre_auth=config.max_pre_auth_clients,
        max_pre_auth_per_source=config.max_pre_auth_per_source,
        rate_limit=config.rate_limit_ms / 1000,
    )


class Acceptor:
    """Accepts from the listening sockets and hands connections over.

    :param hand_over: gives an accepted socket with its gate token and whether it is proxied
        (starts with a PROXY protocol header) to a worker; returns False if no worker could take
        it (the caller closes the socket either way).
    :param send_points: sends a :class:`~ocgate.ipc.messages.ConnectionPoints` to the auth service.
    """

    def __init__(
        self,
        config: Config,
        *,
        hand_over: Callable[[socket.socket, int, bool], bool],
        send_points: Callable[[m.ConnectionPoints], None],
    ) -> None:
        self.gate = AdmissionGate(gate_policy(config))
        self._points_enabled = config.max_ban_score > 0 and config.ban_points_connection > 0
        self._proxied = config.listen_proxy_proto
        self._hand_over = hand_over
        self._send_points = send_points
        self._held: dict[int, tuple[socket.socket, asyncio.TimerHandle]] = {}
        self._points: list[str] = []
        self._points_timer: asyncio.TimerHandle | None = None
        self._log_second = 0
        self._logged = 0
        self._unlogged = 0
        self.refused: dict[str, int] = {}
        """Connections closed at accept, by reason."""

    def metrics(self) -> m.Metrics:
        """The supervisor's own samples, merged into every scrape (no prometheus_client here)."""
        samples = [
            m.Sample(
                "ocgate_connections_refused_total", {"reason": reason}, float(count), "counter"
            )
            for reason, count in sorted(self.refused.items())
        ]
        samples.append(
            m.Sample("ocgate_connections_pre_auth", {}, float(self.gate.pending), "gauge")
        )
        return m.Metrics(
            samples=samples,
            help={
                "ocgate_connections_refused": "TCP connections closed at accept, by reason",
                "ocgate_connections_pre_auth": "TCP connections accepted, not in a tunnel yet",
            },
        )

    def configure(self, config: Config) -> None:
        """A reload: new limits; connections already in keep their places."""
        self.gate.policy = gate_policy(config)
        self._points_enabled = config.max_ban_score > 0 and config.ban_points_connection > 0
        self._proxied = config.listen_proxy_proto

    def accept(self, listener: socket.socket) -> None:
        """Accept what is waiting on ``listener`` (at most 64 at a time, then yield to the loop)."""
        for _ in range(64):
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("event=accept-failed reason=%r", exc.strerror)
                return
            address = str(peer[0])[:64] if peer else ""
            if self._proxied:
                self._accept_proxied(conn, address)
                continue
            try:
                admission = self.gate.admit(address, time.monotonic())
            except AdmissionRefused as exc:
                conn.close()
                self._refused(address, str(exc))
                continue
            if self._points_enabled:
                self._add_points(address)
            if admission.delay > 0:
                loop = asyncio.get_running_loop()
                timer = loop.call_later(admission.delay, self._release_held, admission.token)
                self._held[admission.token] = (conn, timer)
                continue
            self._give(conn, admission.token)

    def attribute(self, token: int, address: str) -> m.Admitted | m.Failed:
        """A worker read the PROXY protocol header of ``token``: the client is ``address``."""
        try:
            delay = self.gate.attribute(token, address, time.monotonic())
        except AdmissionRefused as exc:
            self._refused(address, str(exc))
            return m.Failed(message=str(exc))
        if self._points_enabled:
            self._add_points(address)
        return m.Admitted(delay=min(delay, 3600.0))  # The message's bound.

    def release(self, token: int) -> None:
        """A worker reports the connection of ``token`` done (tunnel up, or closed)."""
        self.gate.release(token)

    def apply_bans(self, msg: m.Bans) -> None:
        now = time.monotonic()
        if msg.replace:
            self.gate.replace_bans((e.address, now + e.seconds) for e in msg.entries)
            return
        for entry in msg.entries:
            if entry.seconds > 0:
                self.gate.ban(entry.address, now + entry.seconds)
            else:
                self.gate.unban(entry.address)

    def close(self) -> None:
        for conn, timer in self._held.values():
            timer.cancel()
            conn.close()
        self._held.clear()
        if self._points_timer is not None:
            self._points_timer.cancel()
            self._flush_points()

    # ---------------------------------------------------------------------------------------------

    def _accept_proxied(self, conn: socket.socket, balancer: str) -> None:
        """The peer is the balancer: the client is judged when the worker names it."""
        try:
            admission = self.gate.admit_unattributed()
        except AdmissionRefused as exc:
            conn.close()
            self._refused(balancer, str(exc))
            return
        self._give(conn, admission.token, proxied=True)

    def _give(self, conn: socket.socket, token: int, *, proxied: bool = False) -> None:
        try:
            if not self._hand_over(conn, token, proxied):
                self.gate.release(token)
        finally:
            conn.close()  # The worker has its own descriptor now.

    def _release_held(self, token: int) -> None:
        held = self._held.pop(token, None)
        if held is not None:
            self._give(held[0], token)

    def _add_points(self, address: str) -> None:
        self._points.append(address)
        if len(self._points) >= _POINTS_BATCH:
            self._flush_points()
        elif self._points_timer is None:
            loop = asyncio.get_running_loop()
            self._points_timer = loop.call_later(_POINTS_DELAY, self._flush_points)

    def _flush_points(self) -> None:
        if self._points_timer is not None:
            self._points_timer.cancel()
            self._points_timer = None
        points, self._points = self._points, []
        if points:
            with contextlib.suppress(Exception):
                self._send_points(m.ConnectionPoints(addresses=points))

    def _refused(self, address: str, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        second = int(time.monotonic())
        if second != self._log_second:
            if self._unlogged:
                log.warning("event=connections-refused count=%d reason='not logged one by one'",
                            self._unlogged)  # fmt: skip
            self._log_second, self._logged, self._unlogged = second, 0, 0
        if self._logged < _LOG_PER_SECOND:
            self._logged += 1
            log.info("event=connection-refused remote=%s reason=%r", address, reason)
        else:
            self._unlogged += 1
