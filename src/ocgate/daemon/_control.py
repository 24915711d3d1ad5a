"""The occtl-compatible control socket, served by the supervisor for every process at once.

The protocol (one JSON line per request and reply) and the occtl formatting live in
``ocgate.control``; this module owns only the Unix socket (mode 0600). Each request first gathers
a snapshot from every worker (their tunnels) and from the authentication service (sessions, bans),
then answers from it; actions go to the process that owns what they act on. Tunnel ids are stable:
each encodes the worker generation that serves it.

``disconnect`` (as ocserv's code does, whatever its man page says) and ``terminate id`` send the
client a DISCONNECT and invalidate the tunnel's session cookie, so openconnect exits and cannot come
back with that cookie; ``terminate user`` also invalidates the user's sessions that have no tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ocgate.bans import ban_key
from ocgate.control import (
    BanInfo,
    Command,
    ErrorResponse,
    Event,
    Request,
    SessionInfo,
    StatusInfo,
    UserInfo,
    dispatch,
    encode_event,
    encode_response,
    parse_request_untrusted,
)
from ocgate.errors import BadControlMessage
from ocgate.ipc import messages as m

if TYPE_CHECKING:
    from ocgate.daemon._supervisor import Supervisor

__all__ = ["ControlService"]

log = logging.getLogger("ocgate.control")

_MAX_LINE = 1 << 20
_NOT_FOR_CONSOLE = frozenset({Command.STOP, Command.DRAIN, Command.SHOW_EVENTS})


class ControlService:
    """Answers ``ocgate ctl`` on ``occtl-socket-file`` from snapshots of every process."""

    def __init__(self, supervisor: Supervisor, *, request_stop: Callable[[], None]) -> None:
        self._sup = supervisor
        self._request_stop = request_stop
        self._server: asyncio.AbstractServer | None = None
        self._watchers: set[asyncio.Queue[Event]] = set()
        self._workers: list[m.Users] = []
        self._auth = m.Sessions()
        self._reloaded = False

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
            writer.write(await self._answer(request))
            await writer.drain()
            if request.cmd is Command.SHOW_EVENTS:
                await self._stream_events(reader, writer)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass  # The client went away or sent an over-long line; nothing to answer.
        finally:
            writer.close()

    async def _answer(self, request: Request) -> bytes:
        if request.cmd is Command.RELOAD:
            self._reloaded = await self._sup.reload()
        self._workers, self._auth = await self._sup.gather()
        return encode_response(dispatch(request, self))

    async def answer_console(self, line: bytes) -> bytes:
        """One request of the web console (an unprivileged process): every occtl command but
        those that stop the gateway or stream, which the console has no business sending."""
        try:
            request = parse_request_untrusted(line)
        except BadControlMessage as exc:
            return encode_response(ErrorResponse(message=str(exc)))
        if request.cmd in _NOT_FOR_CONSOLE:
            return encode_response(ErrorResponse(message="not available to the console"))
        return await self._answer(request)

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

    def publish_info(self, kind: str, user: UserInfo, reason: str = "") -> None:
        """Tell ``show events`` watchers about a tunnel that came up or went down."""
        if not self._watchers:
            return
        event = Event(kind=kind, user=user, reason=reason)
        for queue in self._watchers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    # Snapshots (ControlBackend) -------------------------------------------------------------------

    def status(self) -> StatusInfo:
        return self._sup.status(self._workers, self._auth)

    def users(self) -> Sequence[UserInfo]:
        """This node's tunnels by id, then those of the other nodes sharing its session store."""
        users = sorted((u for part in self._workers for u in part.users), key=lambda u: u.id)
        remote = sorted(self._auth.remote_users, key=lambda u: (u.node, u.id))
        return [*users, *remote]

    def sessions(self) -> Sequence[SessionInfo]:
        return list(self._auth.sessions)

    def bans(self) -> Sequence[BanInfo]:
        return list(self._auth.bans)

    # Actions --------------------------------------------------------------------------------------

    def disconnect(self, users: Sequence[UserInfo], *, terminate: bool) -> bool:
        """This node's tunnels are closed here; another node's tunnel ends with its session (a
        ``disconnect`` invalidates the cookie too, as ocserv's code does)."""
        remote = {id(u) for u in self._auth.remote_users}
        local = [u.id for u in users if id(u) not in remote]
        known = [u.id for part in self._workers for u in part.users if u.id in local]
        if known:
            self._sup.close_tunnels(known, terminate=terminate)
        ended = [u for u in users if id(u) in remote and u.session_id]
        for user in ended:
            self._sup.tell_auth(m.TerminateSession(sid=user.session_id))
        return bool(known or ended)

    def terminate_session(self, session_id: str) -> bool:
        for session in self._auth.sessions:
            if session.session_id == session_id or session.session_id.startswith(session_id):
                self._sup.tell_auth(m.TerminateSession(sid=session.session_id))
                return True
        return False

    def terminate_user_elsewhere(self, username: str) -> bool:
        if not self._sup.shared_store:
            return False
        self._sup.tell_auth(m.TerminateUser(username=username))
        return True

    def unban(self, ip: str) -> bool:
        key = ban_key(ip)
        if key is None or not any(b.ip == key for b in self._auth.bans):
            return False
        self._sup.tell_auth(m.Unban(address=ip))
        return True

    def reload(self) -> bool:
        return self._reloaded

    def stop(self) -> bool:
        self._request_stop()
        return True

    def drain(self, seconds: int) -> bool:
        self._sup.drain(seconds)
        return True
