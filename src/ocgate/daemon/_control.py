"""The occtl-compatible control socket: snapshots of the gateway for ``ocgate ctl`` and its actions.

The protocol (one JSON line per request and reply) and the occtl formatting live in
``ocgate.control``; this module owns only the Unix socket (mode 0600) and turns gateway state into
the ``UserInfo``/``SessionInfo``/``StatusInfo`` snapshots the formatting needs.

``disconnect`` closes a tunnel without telling the client, so openconnect reconnects with its
cookie; ``terminate`` sends a DISCONNECT and invalidates the cookie, so the client exits and cannot
come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ocgate.config import IPNetwork
from ocgate.control import (
    BanInfo,
    Command,
    ErrorResponse,
    Event,
    SessionInfo,
    StatusInfo,
    UserInfo,
    dispatch,
    encode_event,
    encode_response,
    parse_request_untrusted,
)
from ocgate.errors import BadControlMessage

if TYPE_CHECKING:
    from ocgate.daemon._gateway import Gateway
    from ocgate.daemon._tunnel import Tunnel

__all__ = ["ControlService", "ServerStats"]

log = logging.getLogger("ocgate.control")

_MAX_LINE = 1 << 20


@dataclass(slots=True)
class ServerStats:
    """The "Current stats period" counters of ``show status`` (ocserv ``main-ctl-unix.c``)."""

    started: float
    last_reset: float
    sessions_total: int = 0
    auth_failures_total: int = 0
    sessions_handled: int = 0
    timed_out: int = 0
    timed_out_idle: int = 0
    closed_due_to_error: int = 0
    auth_failures: int = 0
    session_time_total: float = 0.0
    session_time_max: float = 0.0
    min_mtu: int = 0
    max_mtu: int = 0
    rx: int = 0
    tx: int = 0

    def tunnel_up(self, mtu: int) -> None:
        self.sessions_total += 1
        self.min_mtu = mtu if not self.min_mtu else min(self.min_mtu, mtu)
        self.max_mtu = max(self.max_mtu, mtu)

    def tunnel_down(self, duration: float, reason: str, rx: int, tx: int) -> None:
        self.sessions_handled += 1
        self.session_time_total += duration
        self.session_time_max = max(self.session_time_max, duration)
        self.rx += rx
        self.tx += tx
        if reason in {"session timeout", "session expired"}:
            self.timed_out += 1
        elif reason == "idle timeout":
            self.timed_out_idle += 1
        elif reason in {"protocol error", "TLS failure", "dead peer detected"}:
            self.closed_due_to_error += 1

    def login_failed(self) -> None:
        self.auth_failures += 1
        self.auth_failures_total += 1


def _route_text(net: IPNetwork) -> str:
    if isinstance(net, ipaddress.IPv4Network):
        return f"{net.network_address}/{net.netmask}"
    return str(net)


class ControlService:
    """Answers ``ocgate ctl`` on ``occtl-socket-file`` from the gateway's live state."""

    def __init__(self, gateway: Gateway, *, request_stop: Callable[[], None]) -> None:
        self._gateway = gateway
        self._request_stop = request_stop
        self._server: asyncio.AbstractServer | None = None
        self._watchers: set[asyncio.Queue[Event]] = set()

    # Socket ---------------------------------------------------------------------------------------

    async def start(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._handle, path, limit=_MAX_LINE)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        log.info("event=listening proto=control path=%s", path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for queue in self._watchers:
                queue.put_nowait(Event(kind="disconnect", user=UserInfo(id=0), reason="stopping"))
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = parse_request_untrusted(line)
            except BadControlMessage as exc:
                log.warning("event=bad-control-request reason=%r", str(exc))
                writer.write(encode_response(ErrorResponse(message=str(exc))))
                await writer.drain()
                return
            writer.write(encode_response(dispatch(request, self)))
            await writer.drain()
            if request.cmd is Command.SHOW_EVENTS:
                await self._stream_events(reader, writer)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass  # The client went away or sent an over-long line; nothing to answer.
        finally:
            writer.close()

    async def _stream_events(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
        self._watchers.add(queue)
        gone = asyncio.ensure_future(reader.read(1))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if gone in done:
                    getter.cancel()
                    return
                writer.write(encode_event(getter.result()))
                await writer.drain()
        finally:
            self._watchers.discard(queue)
            gone.cancel()

    def publish(self, kind: str, tunnel: Tunnel, reason: str = "") -> None:
        """Tell ``show events`` watchers about a tunnel that came up or went down."""
        if not self._watchers:
            return
        event = Event(kind=kind, user=self.user_info(tunnel), reason=reason)
        for queue in self._watchers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    # Snapshots (ControlBackend) -------------------------------------------------------------------

    def _wall(self, monotonic_time: float | None) -> float:
        if monotonic_time is None:
            return 0.0
        return time.time() - (time.monotonic() - monotonic_time)

    def user_info(self, tunnel: Tunnel) -> UserInfo:
        gw = self._gateway
        config = gw.config
        session, plan, meta = tunnel.session, tunnel.plan, tunnel.meta
        counters = tunnel.counters()
        pool4, pool6 = gw.pool4, gw.pool6
        return UserInfo(
            id=meta.id,
            username=session.username,
            groupname=session.group or "",
            device=tunnel.tun.name,
            mtu=plan.mtu,
            remote_ip=meta.remote_ip,
            local_device_ip=meta.local_ip,
            ipv4=str(plan.ipv4) if plan.ipv4 else "",
            ptp_ipv4=str(pool4.server_address) if pool4 is not None and plan.ipv4 else "",
            ipv6=str(plan.ipv6.network_address) if plan.ipv6 else "",
            ptp_ipv6=str(pool6.server_address) if pool6 is not None and plan.ipv6 else "",
            user_agent=meta.user_agent,
            rx=counters.rx_bytes,
            tx=counters.tx_bytes,
            dpd=plan.dpd,
            keepalive=config.keepalive,
            hostname=session.hostname or "",
            connected_at=meta.connected_at,
            session_started_at=self._wall(session.created),
            session_id=session.sid,
            tls_ciphersuite=tunnel.tls_description,
            dtls_cipher=tunnel.dtls_description,
            dns=tuple(str(a) for a in config.dns),
            split_dns=config.split_dns,
            routes=() if config.route_default else tuple(_route_text(r) for r in config.route),
            no_routes=tuple(_route_text(r) for r in config.no_route),
        )

    def status(self) -> StatusInfo:
        gw = self._gateway
        stats = gw.stats
        handled = stats.sessions_handled
        return StatusInfo(
            server_pid=os.getpid(),
            sec_mod_pid=os.getpid(),
            up_since=stats.started,
            active_sessions=len(gw.tunnels),
            total_sessions=stats.sessions_total,
            total_auth_failures=stats.auth_failures_total,
            ips_in_ban_list=sum(1 for b in self.bans() if b.expires is not None),
            last_stats_reset=stats.last_reset,
            sessions_handled=handled,
            timed_out=stats.timed_out,
            timed_out_idle=stats.timed_out_idle,
            closed_due_to_error=stats.closed_due_to_error,
            auth_failures=stats.auth_failures,
            avg_session_time=int(stats.session_time_total / handled) if handled else 0,
            max_session_time=int(stats.session_time_max),
            min_mtu=stats.min_mtu,
            max_mtu=stats.max_mtu,
            rx=stats.rx + sum(t.counters().rx_bytes for t in gw.tunnels.values()),
            tx=stats.tx + sum(t.counters().tx_bytes for t in gw.tunnels.values()),
        )

    def users(self) -> Sequence[UserInfo]:
        tunnels = sorted(self._gateway.tunnels.values(), key=lambda t: t.meta.id)
        return [self.user_info(t) for t in tunnels]

    def sessions(self) -> Sequence[SessionInfo]:
        result = []
        for session in self._gateway.store.sessions():
            result.append(
                SessionInfo(
                    session_id=session.sid,
                    created=self._wall(session.created),
                    expires=self._wall(session.expires_at),
                    state="authenticated",
                    username=session.username,
                    groupname=session.group or "",
                    user_agent=session.user_agent or "",
                    remote_ip=session.remote_addr or "",
                    in_use=session.connected,
                    activated=True,
                )
            )
        return result

    def bans(self) -> Sequence[BanInfo]:
        entries = getattr(self._gateway, "ban_entries", None)
        return list(entries()) if callable(entries) else []

    # Actions --------------------------------------------------------------------------------------

    def disconnect(self, ids: Sequence[int], *, terminate: bool) -> bool:
        found = False
        for tunnel in list(self._gateway.tunnels.values()):
            if tunnel.meta.id in ids:
                found = True
                if terminate:
                    log.info("event=admin-terminate session=%s", tunnel.session.sid)
                    tunnel.close("admin terminate", end_session=True, notify=True)
                else:
                    log.info("event=admin-disconnect session=%s", tunnel.session.sid)
                    tunnel.close("admin disconnect")
        return found

    def terminate_session(self, session_id: str) -> bool:
        gw = self._gateway
        for session in gw.store.sessions():
            if session.sid == session_id or session.sid.startswith(session_id):
                gw.end_session(session, "admin terminate")
                return True
        return False

    def unban(self, ip: str) -> bool:
        unban = getattr(self._gateway, "unban", None)
        return bool(unban(ip)) if callable(unban) else False

    def reload(self) -> bool:
        return self._gateway.reload()

    def stop(self) -> bool:
        self._request_stop()
        return True
