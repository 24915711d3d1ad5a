"""Several gateways as one: the authentication service's adapter to a shared Redis/Valkey server.

Theory of operation (``session-store = redis://…``; docs/CLUSTER.md for the deployment):

* **Who talks to Redis.** Only the authentication service, through this module (redis-py's asyncio
  client). The supervisor and the workers never do. Every node keeps its embedded SQLite store as
  its durable copy of the sessions it serves; Redis is where nodes meet.
* **Sessions** are written under the SHA-256 digest of their cookie (the cookie itself is never
  stored, as in SQLite): ``ocgate:s:<digest>`` holds the session row, ``ocgate:i:<sid>`` the
  digest and ``ocgate:h:<sid>`` the node the session is *homed* at — the node that created it or
  took the last CONNECT with its cookie. Writes and deletes are Lua scripts that act only for the
  home (:data:`_WRITE_SESSION`, :data:`_DELETE_SESSION`): a late write of a node that lost the
  session is refused and that node drops its copy; a session whose keys vanished from a store that
  kept its data (the epoch below) was ended elsewhere. A node takes a session over by
  compare-and-set of its home (:data:`_CLAIM_HOME`). Keys expire when the cookie does
  (``cookie-timeout`` after the last tunnel went down, never after ``session-timeout``); while a
  tunnel is up the home re-arms them every :data:`REFRESH_PERIOD` seconds, to ``cookie-timeout``
  plus :data:`CONNECTED_GRACE`, so the cookie of a node that dies stays good long enough to
  reconnect elsewhere.
* **Leases** are ``ocgate:l:<address>`` → sid, taken only by one Lua script (:data:`_TAKE_LEASE`)
  that succeeds if the address is free or already the same session's: two nodes never hand out
  one address, and a session that moves to another node keeps its addresses. A session's writes
  re-arm only the leases it was seen holding (:attr:`SharedState.confirmed`); one found expired
  is taken again (:attr:`SharedState.on_lease_lost`).
* **Epoch.** ``ocgate:epoch`` is read by the ping every node sends each second. A store without
  it lost its data (a restart without persistence, a fail-over to an empty replica) or is new: the
  first node to see that writes a new one and sets ``ocgate:recovering`` for
  :data:`RECOVERY_HOLD` seconds, during which no node takes a new lease while every node writes
  its sessions and leases again.
* **Events** (JSON on the channel ``ocgate:events``, each naming the node that sent it): ban
  points (batched) and unbans (every node keeps its own ban table fed by all nodes' points),
  ``claimed`` (a session moved: its old home drops its copy and closes the tunnel it may still
  have), ``end`` (end this session), ``user`` (end a user's sessions everywhere). Bans in force are
  also kept in the hash ``ocgate:bans`` (address → end), for nodes that start or return later.
* **Users of every node** (``ocgate ctl show users``): each node writes its tunnels' rows to
  ``ocgate:n:<node>`` (expiring after :data:`NODE_TTL` seconds unless re-written) and its name to
  the set ``ocgate:nodes``; ``ocgate:nl:<node>`` holds the name for one running process.
* **OTP codes** used on any node are remembered (``ocgate:o:<user>:<code>``, ``SET NX``) for the
  time the code could be accepted, so a code used on one node is refused on all of them. A login
  waiting for its next round is kept under ``ocgate:c:<sha256 of its webvpncontext token>``.
* **Outage.** Every call raises :class:`SharedStoreDown` after at most twice :data:`TIMEOUT`
  seconds when the server cannot be reached, and :attr:`SharedState.healthy` turns false until a
  ping succeeds again. Writes that fail stay queued (:meth:`SharedState.dirty`, at most one entry
  per session) and are written when the server is back; the owner then re-asserts its sessions
  and leases (:attr:`SharedState.on_reconnect`).

Session rows hold a pickle (``Session.extra``, as in SQLite): whoever can write to the Redis
database can run code as the authentication service. The server must be private to the gateways
(``requirepass``/ACL, TLS with ``rediss://``, a network nobody else reaches).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ocgate.config import redact_store_url
from ocgate.errors import ResourceError
from ocgate.session import Session
from ocgate.session._sqlite_schema import decode_session, encode_session

__all__ = [
    "CONNECTED_GRACE",
    "EVENTS",
    "NODE_TTL",
    "REFRESH_PERIOD",
    "TIMEOUT",
    "SharedState",
    "SharedStoreDown",
    "held_leases",
    "lease_key",
]

log = logging.getLogger("ocgate.secmod.shared")

PREFIX = "ocgate:"
EVENTS = "ocgate:events"
TIMEOUT = 1.0
"""Seconds one Redis call may take before the store counts as unavailable."""
REFRESH_PERIOD = 30.0
"""Seconds between re-arming the keys of connected sessions (and between health pings)."""
CONNECTED_GRACE = 4 * REFRESH_PERIOD
"""What a connected session's keys live beyond ``cookie-timeout`` without being re-armed."""
NODE_TTL = 15.0
"""Seconds a node's users list stays listed unless written again."""
MAX_EVENT = 4096
"""Bytes of one event; a longer one (from a broken or hostile publisher) is dropped."""
MAX_CONNECTIONS = 64
"""Connections to the store at most (calls beyond wait for one, up to :data:`TIMEOUT`)."""
MAX_BACKGROUND = 256
"""Background calls to the store in flight at most (events, bans); more are dropped."""
MAX_BANS = 10_000
"""Bans read back from the store at most (a node's ban table is bounded too)."""
RECOVERY_HOLD = 5.0
"""Seconds no node takes a new lease after the store came back empty (or for the first time),
so every node has written its sessions' leases again first (they retry every second)."""
_EPOCH = f"{PREFIX}epoch"
_BANS = f"{PREFIX}bans"
_NODES = f"{PREFIX}nodes"
MAX_NODES = 256
"""Nodes listed by ``show users`` at most."""
_RECOVERING = f"{PREFIX}recovering"

# KEYS[1] = lease key; ARGV = sid, ttl ms. Takes the lease if free or the sid's; returns the holder.
_TAKE_LEASE = """
local held = redis.call('GET', KEYS[1])
if (not held) or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return held
"""
# KEYS[1] = lease key; ARGV = sid, ttl ms. Re-arms the lease only if the sid holds it (a lease
# is taken only by _TAKE_LEASE, when the owner decided to: never by a write of the session).
_REFRESH_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS[1] = lease key; ARGV[1] = sid. Gives the lease back only if the sid holds it.
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS = s:<digest>, i:<sid>, h:<sid>, the epoch; ARGV = node, row, digest, ttl ms, created ('1'
# when the row was never written in this epoch), the epoch the node knows. Writes only a session
# homed here (or new here): 1; another node's: 0 (it moved); one whose keys are gone while it was
# written before: 2 (it ended); nothing if the epoch is not the node's: 3 (the store lost its data
# and this node has not noticed yet: missing keys mean nothing then).
_WRITE_SESSION = """
if (redis.call('GET', KEYS[4]) or '') ~= ARGV[6] then return 3 end
local home = redis.call('GET', KEYS[3])
if home then
  if home ~= ARGV[1] then return 0 end
elseif ARGV[5] ~= '1' then
  return 2
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[4])
return 1
"""
# KEYS = s:<digest>, i:<sid>, h:<sid>, then lease keys; ARGV = node (or '' for any), sid. Deletes
# a session homed here (or nowhere) and gives back the leases it holds; 0 if it moved.
_DELETE_SESSION = """
local home = redis.call('GET', KEYS[3])
if home and ARGV[1] ~= '' and home ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
for i = 4, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[2] then redis.call('DEL', KEYS[i]) end
end
return 1
"""
# KEYS[1] = h:<sid>; ARGV = node, the home seen before (or ''), ttl ms. Homes the session here if
# nobody claimed it meanwhile: 1, else 0.
_CLAIM_HOME = """
local home = redis.call('GET', KEYS[1])
if home and home ~= ARGV[2] and home ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""
# KEYS[1] = the node-name lock; ARGV = instance, ttl ms. 1 if this process holds the name.
_NODE_LOCK = """
local held = redis.call('GET', KEYS[1])
if (not held) or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def _client_options() -> dict[str, Any]:
    """Options of this redis-py release: no ``CLIENT MAINT_NOTIFICATIONS`` handshake (a Redis
    Enterprise/Cloud feature; Redis and Valkey answer it with an error on every connection)."""
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # redis-py before 7: no such handshake.
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


class SharedStoreDown(ResourceError):
    """The shared session store cannot be reached (or answered with an error)."""


def lease_key(address: object) -> str:
    """The key of a lease (an ``IPv4Address`` or an ``IPv6Network``)."""
    return f"{PREFIX}l:{address}"


def held_leases(session: Session) -> list[object]:
    """The addresses ``session`` holds (its IPv4 address, its IPv6 network)."""
    return [a for a in (session.ipv4, session.ipv6) if a is not None]


def _session_ttl_ms(session: Session, now: float) -> int:
    """How long the keys of ``session`` live from ``now`` (module docstring)."""
    if session.connected or session.expires_at is None:
        seconds = session.cookie_timeout + CONNECTED_GRACE
    else:
        seconds = session.expires_at - now
    if session.session_deadline is not None:
        seconds = min(seconds, session.session_deadline - now)
    return max(1000, int(seconds * 1000))


def encode_row(session: Session) -> bytes:
    """The session as stored in Redis (the SQLite row, msgpack-encoded)."""
    return msgspec.msgpack.encode(list(encode_session(session)))


def decode_row(blob: bytes) -> Session:
    """:raises ValueError: the row is not a session of this version."""
    try:
        row = msgspec.msgpack.decode(blob)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a session row: {exc}") from None
    if not isinstance(row, list) or len(row) != 19:
        raise ValueError("not a session row")
    try:
        return decode_session(row)
    except Exception as exc:  # An unpickling of anything: the row is unusable, nothing more.
        raise ValueError(f"bad session row: {type(exc).__name__}: {exc}") from None


class SharedState:
    """The connection to the shared store and this node's view of it.

    :param url: ``redis://`` or ``rediss://`` (with redis-py's query arguments).
    :param node: this gateway's ``node-name`` (unique among the nodes).
    :param on_event: told every event another node published (a dict, checked by the caller).
    """

    def __init__(self, url: str, node: str, *, on_event: Callable[[dict[str, Any]], None]) -> None:
        self.node = node
        self._label = redact_store_url(url)
        # A bounded pool that makes a burst wait for a connection (redis-py's default pool
        # refuses the 101st concurrent call, which would read as an outage).
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=TIMEOUT,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            health_check_interval=0,
            retry_on_timeout=False,
            **_client_options(),
        )
        self._redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._on_event = on_event
        self.on_reconnect: Callable[[bool], Awaitable[None]] | None = None
        """Run when the store answers again, or answers with its data lost (re-assert)."""
        self.on_lost: Callable[[str, str], None] = lambda _sid, _why: None
        """Told ``(sid, "moved"|"ended")`` when a write finds the session is no longer here."""
        self.on_lease_lost: Callable[[str, object], None] = lambda _sid, _lease: None
        """Told ``(sid, lease)`` when re-arming a lease of a session here found it not held."""
        self.healthy = False
        self._last_ok = 0.0
        self._epoch: bytes | None = None
        self._hold_window = 0.0
        """Until when a recovery hold may be on (monotonic): a new epoch was seen shortly before."""
        self._instance = secrets.token_hex(8)
        self._clash_logged = 0.0
        self._take = self._redis.register_script(_TAKE_LEASE)
        self._release = self._redis.register_script(_RELEASE_LEASE)
        self._refresh = self._redis.register_script(_REFRESH_LEASE)
        self._write = self._redis.register_script(_WRITE_SESSION)
        self._delete = self._redis.register_script(_DELETE_SESSION)
        self._claim = self._redis.register_script(_CLAIM_HOME)
        self._lock_name = self._redis.register_script(_NODE_LOCK)
        self._dirty: dict[str, Session | None] = {}
        """Sessions to write (``None``: to delete, with its digest and leases in ``_gone``)."""
        self._gone: dict[str, tuple[str, list[str]]] = {}
        self.confirmed: dict[str, set[object]] = {}
        """The leases each session here was seen holding in the store (only those are
        re-armed by a write: one still being confirmed is not the session's yet)."""
        self.written: set[str] = set()
        """Sessions written in the store's current epoch (a missing key then means: ended)."""
        self._flushing: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._ping_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"SharedState(url={self._label!r}, node={self.node!r}, healthy={self.healthy})"

    # Lifetime ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (a failure is logged and retried; the node serves in outage mode meanwhile)."""
        await self.ping()
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self._listen()), loop.create_task(self._watch())]

    async def close(self) -> None:
        """Stop listening, write what is queued and let the background calls finish."""
        for task in getattr(self, "_loops", ()):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=TIMEOUT * 2)
        with contextlib.suppress(SharedStoreDown):
            await self.flush()
        with contextlib.suppress(SharedStoreDown):
            await self._call(self._redis.delete(f"{PREFIX}n:{self.node}"))
            name = f"{PREFIX}nl:{self.node}"  # The name is free for this node's next start.
            await self._call(self._release(keys=[name], args=[self._instance]))
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose(close_connection_pool=True)

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        try:
            result = await asyncio.wait_for(awaitable, TIMEOUT * 2)
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)
            raise SharedStoreDown("the session store is unavailable") from None
        self._last_ok = time.monotonic()
        return result

    async def check(self) -> bool:
        """Whether the store answers now: a ping unless it answered in the last second (a
        stopped or unreachable server is noticed before a login relies on it)."""
        if self.healthy and time.monotonic() - self._last_ok < 1.0:
            return True
        return await self.ping()

    def _down(self, exc: BaseException) -> None:
        if self.healthy:
            reason = str(exc) or repr(exc)
            log.error("event=session-store-down url=%s error=%r", self._label, reason)
        self.healthy = False

    async def ping(self) -> bool:
        """Check the server (reading its epoch). On the way back from an outage, or when the
        epoch changed (the store lost its data), re-assert this node's sessions and leases."""
        async with self._ping_lock:
            was = self.healthy
            try:
                epoch = await self._call(self._redis.get(_EPOCH))
            except SharedStoreDown:
                return False
            self.healthy = True
            lost = epoch is None or (self._epoch is not None and epoch != self._epoch)
            if lost:
                self._hold_window = time.monotonic() + RECOVERY_HOLD + 2 * TIMEOUT
                with contextlib.suppress(SharedStoreDown):
                    epoch = await self._mark_epoch()
                self.written.clear()
            self._epoch = epoch if isinstance(epoch, bytes) else None
            if not was:
                log.info("event=session-store-up url=%s node=%s", self._label, self.node)
            if (lost or not was) and self.on_reconnect is not None:
                try:
                    await self.on_reconnect(lost)
                except SharedStoreDown:
                    return False
            with contextlib.suppress(SharedStoreDown):
                await self._hold_node_name()
        with contextlib.suppress(SharedStoreDown):
            await self.flush()
        return True

    async def _mark_epoch(self) -> bytes:
        """A store that lost its data (a restart without persistence, a fail-over to an empty
        replica) has no epoch key: the first node to see it so writes one and holds new leases
        for :data:`RECOVERY_HOLD` seconds, while every node writes its leases again (each sees
        the new epoch within a second).

        :returns: the epoch now.
        """
        epoch = secrets.token_hex(8).encode()
        if await self._call(self._redis.set(_EPOCH, epoch, nx=True)):
            await self._call(self._redis.set(_RECOVERING, self.node, px=int(RECOVERY_HOLD * 1000)))
            log.warning("event=session-store-empty url=%s node=%s hold=%g",
                        self._label, self.node, RECOVERY_HOLD)  # fmt: skip
            return epoch
        now = await self._call(self._redis.get(_EPOCH))
        return now if isinstance(now, bytes) else epoch

    async def _hold_node_name(self) -> None:
        """Each node name belongs to one running gateway: two that share one (cloned machines
        whose host names agree, a copied configuration) would take each other's sessions."""
        key = f"{PREFIX}nl:{self.node}"
        ttl = int(NODE_TTL * 1000)
        if await self._call(self._lock_name(keys=[key], args=[self._instance, ttl])):
            return
        if time.monotonic() - self._clash_logged > 60:
            self._clash_logged = time.monotonic()
            log.error("event=node-name-clash node=%s reason='another running gateway uses this "
                      "node-name; give every gateway its own'", self.node)  # fmt: skip

    async def lease_hold(self) -> float:
        """Seconds to wait before taking a new lease (see :meth:`_mark_epoch`): asked of the
        store only in the seconds after this node saw a new epoch (when a hold can be on).

        :raises SharedStoreDown: the store cannot be reached.
        """
        if time.monotonic() >= self._hold_window:
            return 0.0
        left = await self._call(self._redis.pttl(_RECOVERING))
        return min(RECOVERY_HOLD, left / 1000) if isinstance(left, int) and left > 0 else 0.0

    async def _watch(self) -> None:
        """A ping a second: an outage, a return and a store that lost its data are all noticed
        within about a second on every node."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.ping()
            except Exception:  # A bug must not end the watch: log it and go on.
                log.exception("event=shared-store-watch-failed")

    async def _listen(self) -> None:
        """Receive the other nodes' events (re-subscribing after an outage)."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(EVENTS)
                async for message in pubsub.listen():
                    self._event(message.get("data"))
            except (RedisError, OSError) as exc:
                self._down(exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(1.0)

    def _event(self, data: object) -> None:
        if not isinstance(data, bytes) or len(data) > MAX_EVENT:
            return
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            return
        if not isinstance(event, dict) or event.get("node") == self.node:
            return
        try:
            self._on_event(event)
        except Exception:  # One event that trips a bug must not end the listening.
            log.exception("event=shared-event-failed kind=%r", str(event.get("t"))[:32])

    async def publish(self, kind: str, **fields: object) -> None:
        """Tell every other node (``kind`` and JSON-able ``fields``)."""
        payload = json.dumps({"node": self.node, "t": kind, **fields})
        await self._call(self._redis.publish(EVENTS, payload))

    def publish_soon(self, kind: str, **fields: object) -> None:
        """:meth:`publish` without waiting; a failure only logs (the store is down)."""
        self.soon(self.publish(kind, **fields))

    def soon(self, call: Awaitable[object]) -> None:
        """Run ``call`` in the background; :class:`SharedStoreDown` is only logged (by
        :meth:`_call`)."""

        async def run() -> None:
            with contextlib.suppress(SharedStoreDown):
                await call

        if len(self._tasks) >= MAX_BACKGROUND:  # A backlog (a slow store): drop, do not pile up.
            if asyncio.iscoroutine(call):
                call.close()
            log.warning("event=shared-call-dropped reason='too many in flight'")
            return
        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Sessions ------------------------------------------------------------------------------------

    def dirty(self, session: Session) -> None:
        """Write ``session`` soon (this node is its home)."""
        self._dirty[session.sid] = session
        self._gone.pop(session.sid, None)
        self._schedule()

    def gone(self, session: Session, leases: Iterable[object]) -> None:
        """Delete ``session`` and give back its ``leases`` soon (it ended for good)."""
        self._dirty[session.sid] = None
        self._gone[session.sid] = (session.token_digest.hex(), [lease_key(a) for a in leases])
        self.confirmed.pop(session.sid, None)
        self._schedule()

    def forget(self, sid: str) -> None:
        """This node no longer holds ``sid`` (it moved): nothing queued for it is written."""
        self._dirty.pop(sid, None)
        self._gone.pop(sid, None)
        self.written.discard(sid)
        self.confirmed.pop(sid, None)

    @property
    def queued(self) -> int:
        return len(self._dirty)

    def _schedule(self) -> None:
        if self._flushing is None or self._flushing.done():
            with contextlib.suppress(RuntimeError):  # No loop: a tool; flush() is explicit.
                self._flushing = asyncio.get_running_loop().create_task(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        await asyncio.sleep(0)
        with contextlib.suppress(SharedStoreDown):
            while self._dirty:  # Changes queued while a batch was being written.
                await self.flush()

    async def flush(self) -> None:
        """Write every queued change (kept queued if the store is down). Batches are written one
        at a time, in order, so a newer state of a session never loses to an older one.

        :raises SharedStoreDown: the store cannot be reached.
        """
        async with self._write_lock:
            await self._flush()

    async def _flush(self) -> None:
        if not self._dirty:
            return
        batch, self._dirty = self._dirty, {}
        gone = {sid: self._gone.pop(sid) for sid, s in batch.items() if s is None}
        now = time.time()
        rows: dict[str, bytes] = {}
        for sid, session in batch.items():
            if session is None:
                continue
            try:
                rows[sid] = encode_row(session)
            except TypeError as exc:  # Its ``extra`` cannot be pickled (a bug): the rest goes.
                log.error("event=shared-session-unwritable session=%s reason=%r", sid, str(exc))
        writes: list[tuple[str, object]] = []  # What each result answers: (sid, lease or None).
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid, session in batch.items():
                    if session is None:
                        digest, leases = gone[sid]
                        keys = [f"{PREFIX}s:{digest}", f"{PREFIX}i:{sid}", f"{PREFIX}h:{sid}"]
                        await self._delete(keys=[*keys, *leases], args=[self.node, sid],
                                           client=pipe)  # fmt: skip
                        writes.append(("", None))
                        continue
                    if sid not in rows:
                        continue
                    ttl = _session_ttl_ms(session, now)
                    digest = session.token_digest.hex()
                    created = "0" if sid in self.written else "1"
                    keys = [f"{PREFIX}s:{digest}", f"{PREFIX}i:{sid}", f"{PREFIX}h:{sid}", _EPOCH]
                    epoch = self._epoch or b""
                    args: list[str | bytes | int] = [
                        self.node,
                        rows[sid],
                        digest,
                        ttl,
                        created,
                        epoch,
                    ]
                    await self._write(keys=keys, args=args, client=pipe)
                    writes.append((sid, None))
                    confirmed = self.confirmed.get(sid, ())
                    for lease in held_leases(session):
                        if lease not in confirmed:
                            continue
                        await self._refresh(keys=[lease_key(lease)], args=[sid, ttl], client=pipe)
                        writes.append((sid, lease))
                results = await self._call(pipe.execute())
        except BaseException:
            for sid, session in batch.items():  # Newer changes queued meanwhile win.
                self._dirty.setdefault(sid, session)
                if session is None and sid in gone:
                    self._gone.setdefault(sid, gone[sid])
            raise
        lost: dict[str, str] = {}
        stale = False
        for (sid, lease), result in zip(writes, results, strict=False):
            if not sid or sid in lost:
                continue
            if lease is not None:
                if result == 0:  # Its lease expired or was taken: it must be taken again.
                    self.confirmed.get(sid, set()).discard(lease)
                    self.on_lease_lost(sid, lease)
            elif result == 1:
                self.written.add(sid)
            elif result == 3:  # A new epoch: written again once this node has re-asserted.
                stale = True
                session = batch.get(sid)
                if session is not None:
                    self._dirty.setdefault(sid, session)
            elif result in (0, 2):  # Another node took it, or it ended elsewhere.
                self.written.discard(sid)
                lost[sid] = "moved" if result == 0 else "ended"
        for sid, why in lost.items():
            self.on_lost(sid, why)
        if stale:
            self.soon(self.ping())

    async def fetch(self, digest: bytes) -> tuple[Session, str | None] | None:
        """The session stored under ``digest`` and its home node, or ``None``.

        :raises SharedStoreDown: the store cannot be reached.
        """
        blob = await self._call(self._redis.get(f"{PREFIX}s:{digest.hex()}"))
        if blob is None:
            return None
        try:
            session = decode_row(blob)
        except ValueError as exc:
            log.warning("event=shared-session-unreadable reason=%r", str(exc))
            return None
        if session.token_digest != digest:
            return None
        home = await self._call(self._redis.get(f"{PREFIX}h:{session.sid}"))
        return session, home.decode("utf-8", "replace") if isinstance(home, bytes) else None

    async def home_of(self, sid: str) -> str | None:
        """The node ``sid`` is homed at (``None``: no longer stored).

        :raises SharedStoreDown: the store cannot be reached.
        """
        home = await self._call(self._redis.get(f"{PREFIX}h:{sid}"))
        return home.decode("utf-8", "replace") if isinstance(home, bytes) else None

    async def claim_home(self, session: Session, seen: str | None) -> bool:
        """Home ``session`` here unless another node claimed it since its home was ``seen``;
        the former home is told and drops its copy.

        :raises SharedStoreDown: the store cannot be reached.
        """
        ttl = _session_ttl_ms(session, time.time())
        key = f"{PREFIX}h:{session.sid}"
        if not await self._call(self._claim(keys=[key], args=[self.node, seen or "", ttl])):
            return False
        self.written.add(session.sid)
        await self.publish("claimed", sid=session.sid)
        return True

    async def node_alive(self, node: str) -> bool:
        """Whether ``node`` runs (it holds its name, re-armed every second).

        :raises SharedStoreDown: the store cannot be reached.
        """
        return bool(await self._call(self._redis.exists(f"{PREFIX}nl:{node}")))

    async def end_everywhere(self, sid: str, reason: str) -> bool:
        """End the session ``sid`` homed at another node: its home ends it (tunnel, keys and
        leases). A session whose home no longer runs has its keys and leases removed here.
        ``False``: no such session is stored.

        :raises SharedStoreDown: the store cannot be reached.
        """
        digest = await self._call(self._redis.get(f"{PREFIX}i:{sid}"))
        if not isinstance(digest, bytes):
            return False
        found = await self.fetch(bytes.fromhex(digest.decode("ascii", "replace")))
        await self.publish("end", sid=sid, reason=reason[:200])
        if found is None:
            return True
        session, home = found
        if home is None or not await self.node_alive(home):
            keys = [f"{PREFIX}s:{digest.decode('ascii', 'replace')}", f"{PREFIX}i:{sid}",
                    f"{PREFIX}h:{sid}", *(lease_key(a) for a in held_leases(session))]  # fmt: skip
            await self._call(self._delete(keys=keys, args=["", sid]))
        return True

    # Leases --------------------------------------------------------------------------------------

    async def take_lease(self, address: object, session: Session) -> str:
        """Take ``address`` for ``session`` unless another session holds it.

        :returns: the sid holding the lease now (``session.sid`` on success).
        :raises SharedStoreDown: the store cannot be reached.
        """
        ttl = _session_ttl_ms(session, time.time())
        holder = await self._call(self._take(keys=[lease_key(address)], args=[session.sid, ttl]))
        sid = holder.decode("ascii", "replace") if isinstance(holder, bytes) else str(holder)
        if sid == session.sid:
            self.confirmed.setdefault(sid, set()).add(address)
        return sid

    # Login contexts ------------------------------------------------------------------------------

    @staticmethod
    def _context_key(token: str) -> str:
        return f"{PREFIX}c:{hashlib.sha256(token.encode()).hexdigest()}"

    async def put_context(self, token: str, blob: bytes, seconds: float) -> None:
        """Keep a login's state under its ``webvpncontext`` token (hashed) for ``seconds``.

        :raises SharedStoreDown: the store cannot be reached.
        """
        ttl = max(1000, int(seconds * 1000))
        await self._call(self._redis.set(self._context_key(token), blob, px=ttl))

    async def take_context(self, token: str) -> bytes | None:
        """The login state kept under ``token``, removed from the store (one node goes on).

        :raises SharedStoreDown: the store cannot be reached.
        """
        blob = await self._call(self._redis.getdel(self._context_key(token)))
        return blob if isinstance(blob, bytes) else None

    async def drop_context(self, token: str) -> None:
        """:raises SharedStoreDown: the store cannot be reached."""
        await self._call(self._redis.delete(self._context_key(token)))

    # Bans ----------------------------------------------------------------------------------------

    async def put_ban(self, address: str, seconds: float) -> None:
        """``address`` is banned for ``seconds`` (for the nodes that start or return later; one
        hash of address → end, so reading them back never walks the keyspace).

        :raises SharedStoreDown: the store cannot be reached.
        """
        await self._call(self._redis.hset(_BANS, address, str(time.time() + seconds)))

    async def drop_ban(self, address: str) -> None:
        """:raises SharedStoreDown: the store cannot be reached."""
        await self._call(self._redis.hdel(_BANS, address))

    async def bans(self) -> dict[str, float]:
        """Every ban in force: address → when it ends (wall clock); ended ones are removed.

        :raises SharedStoreDown: the store cannot be reached.
        """
        entries = await self._call(self._redis.hgetall(_BANS))
        now = time.time()
        found: dict[str, float] = {}
        ended: list[bytes] = []
        for key, value in entries.items():
            try:
                address, until = key.decode("ascii"), float(value)
            except (ValueError, UnicodeError):
                ended.append(key)
                continue
            if until <= now:
                ended.append(key)
            elif len(found) < MAX_BANS:
                found[address] = until
        if ended:
            await self._call(self._redis.hdel(_BANS, *ended))
        return found

    # Nodes, OTP ----------------------------------------------------------------------------------

    async def put_node_rows(self, rows: bytes) -> None:
        """This node's users list (encoded by the caller), listed for :data:`NODE_TTL` seconds;
        the node's name joins the set of nodes (so listing never walks the keyspace).

        :raises SharedStoreDown: the store cannot be reached.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(f"{PREFIX}n:{self.node}", rows, px=int(NODE_TTL * 1000))
            pipe.sadd(_NODES, self.node)
            await self._call(pipe.execute())

    async def node_rows(self) -> dict[str, bytes]:
        """Every other node's users list, by node name (a node whose list expired leaves the
        set of nodes).

        :raises SharedStoreDown: the store cannot be reached.
        """
        names = [
            n.decode("utf-8", "replace") for n in await self._call(self._redis.smembers(_NODES))
        ]
        names = sorted(n for n in names if n != self.node)[:MAX_NODES]
        if not names:
            return {}
        values = await self._call(self._redis.mget([f"{PREFIX}n:{n}" for n in names]))
        gone = [n for n, v in zip(names, values, strict=True) if not isinstance(v, bytes)]
        if gone:
            await self._call(self._redis.srem(_NODES, *gone))
        return {n: v for n, v in zip(names, values, strict=True) if isinstance(v, bytes)}

    async def otp_first_use(self, username: str, code: str, seconds: int) -> bool:
        """Record that ``username`` used ``code``; ``False`` if any node recorded it already.

        :raises SharedStoreDown: the store cannot be reached.
        """
        key = f"{PREFIX}o:{len(username)}:{username}:{code}"
        return bool(await self._call(self._redis.set(key, b"1", nx=True, ex=max(1, seconds))))
