"""RADIUS accounting of sessions: Start, Interim-Update, Stop (ocserv ``src/acct/radius.c``).

Theory of operation: accounting follows the *session*, not the tunnel, so a cookie reconnect
does not produce a second Start. The gateway reports three things:

* :meth:`SessionAccounting.tunnel_up` when a tunnel comes up. The first one of a session sends
  Start and starts the Interim-Update timer (``stats-report-time``, else the Access-Accept's
  Acct-Interim-Interval; none when neither is set);
* :meth:`SessionAccounting.tunnel_down` with the counters of a tunnel that ended; they are added
  to the session's totals;
* :meth:`SessionAccounting.session_ended` with the reason; it sends Stop with the totals (plus
  the live tunnel's counters, if one is still up), the session time and the terminate cause.

Every record is sent in a background task: accounting never delays or breaks a session, and a
dead accounting server only produces log lines (:class:`~ocgate.radius.RadiusAccounting`).
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - accounting runs timers and background sends: an adapter.
import contextlib
import logging
import time  # noqa: TID251 - Acct-Session-Time needs a clock; this is an adapter.
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from ocgate.radius import AccountingSession, RadiusAccounting, SessionStats, TerminateCause

__all__ = ["Counters", "SessionAccounting", "terminate_cause"]

log = logging.getLogger("ocgate.acct")

Counters = tuple[int, int, int, int]
"""``(bytes_in, bytes_out, packets_in, packets_out)`` as seen from the gateway (in = from the
client)."""

_CAUSES: tuple[tuple[str, TerminateCause], ...] = (
    ("logout", TerminateCause.USER_REQUEST),
    ("user", TerminateCause.USER_REQUEST),
    ("idle", TerminateCause.IDLE_TIMEOUT),
    ("session timeout", TerminateCause.SESSION_TIMEOUT),
    ("session expired", TerminateCause.SESSION_TIMEOUT),
    ("admin", TerminateCause.ADMIN_RESET),
    ("shutting down", TerminateCause.ADMIN_REBOOT),
)


def terminate_cause(reason: str) -> TerminateCause:
    """Map a session-end reason of the gateway's log to an Acct-Terminate-Cause."""
    lowered = reason.lower()
    for word, cause in _CAUSES:
        if word in lowered:
            return cause
    return TerminateCause.LOST_CARRIER


@dataclass(slots=True)
class _State:
    info: AccountingSession
    started: float
    interval: int | None
    totals: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    live: Callable[[], Counters] | None = None
    timer: asyncio.Task[None] | None = None


class SessionAccounting:
    """Accounting for every session of one gateway.

    :param sender: the RADIUS accounting client.
    :param stats_report_time: ``stats-report-time`` (``None``: use Acct-Interim-Interval).
    """

    def __init__(self, sender: RadiusAccounting, *, stats_report_time: int | None) -> None:
        self._sender = sender
        self._report = stats_report_time
        self._states: dict[str, _State] = {}
        self._tasks: set[asyncio.Task[object]] = set()

    def _spawn(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def tunnel_up(
        self,
        sid: str,
        info: AccountingSession,
        live: Callable[[], Counters],
        *,
        interim_interval: int | None = None,
    ) -> None:
        """A tunnel of session ``sid`` is up; the first one sends Start."""
        state = self._states.get(sid)
        if state is None:
            interval = self._report or interim_interval
            state = _State(info=info, started=time.monotonic(), interval=interval)
            self._states[sid] = state
            self._spawn(self._sender.start(info))
            if interval:
                state.timer = asyncio.get_running_loop().create_task(self._interim_loop(state))
            log.info("event=acct-start session=%s user=%r", sid, info.username)
        state.live = live

    def tunnel_down(self, sid: str, counters: Counters) -> None:
        """A tunnel of session ``sid`` ended with ``counters``."""
        state = self._states.get(sid)
        if state is None:
            return
        state.live = None
        for index, value in enumerate(counters):
            state.totals[index] += value

    def session_ended(self, sid: str, reason: str) -> None:
        """Session ``sid`` is over: send Stop with its totals and the terminate cause."""
        state = self._states.pop(sid, None)
        if state is None:
            return
        if state.timer is not None:
            state.timer.cancel()
        stats = self._stats(state)
        cause = terminate_cause(reason)
        log.info(
            "event=acct-stop session=%s user=%r cause=%s bytes_in=%d bytes_out=%d",
            sid,
            state.info.username,
            cause.name,
            stats.bytes_in,
            stats.bytes_out,
        )
        self._spawn(self._sender.stop(state.info, stats, cause))

    def _stats(self, state: _State) -> SessionStats:
        totals = list(state.totals)
        if state.live is not None:
            for index, value in enumerate(state.live()):
                totals[index] += value
        return SessionStats(
            bytes_in=totals[0],
            bytes_out=totals[1],
            packets_in=totals[2],
            packets_out=totals[3],
            session_time=int(time.monotonic() - state.started),
        )

    async def _interim_loop(self, state: _State) -> None:
        assert state.interval is not None
        while True:
            await asyncio.sleep(state.interval)
            await self._sender.interim(state.info, self._stats(state))

    async def close(self) -> None:
        """Cancel the timers (server shutdown); pending sends get a moment to finish."""
        for state in self._states.values():
            if state.timer is not None:
                state.timer.cancel()
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(list(self._tasks), timeout=2)
