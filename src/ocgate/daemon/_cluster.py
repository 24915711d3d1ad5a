"""The authentication service's side of several gateways sharing one Redis/Valkey store.

:class:`Cluster` is what the authentication service asks before and after a CONNECT, and what it
does with the other nodes' events; its session store is a
:class:`~ocgate.daemon._shared_store.SharedSessionStore`. The Redis I/O is in
:mod:`ocgate.daemon._shared` (its docstring gives the key layout and the outage rules).

A CONNECT with a cookie (one at a time per cookie on a node, :meth:`Cluster.claim_lock`):

1. :meth:`Cluster.prepare_claim`: the session is looked up in the shared store when this node does
   not hold it, or holds a copy while another node is its home (the copy is then dropped; a copy
   whose keys are gone was ended elsewhere and ends here). A session from another node is homed
   here by compare-and-set (two nodes claiming it at once: one is refused) and the old home is
   told: it drops its copy and closes a tunnel it may still have. The session keeps its addresses;
2. the claim itself runs as on a single gateway (``AuthService.claim``);
3. :meth:`Cluster.confirm_leases`: every address the session got from a pool here, and every
   address of a session that moved here, is taken in the shared store; one another session holds
   is marked as taken here for :data:`FOREIGN_HOLD` seconds and the next free one is tried.

During an outage a session this node holds keeps its addresses and reconnects here; a CONNECT
that needs a session from elsewhere or a new address is refused, and so is a login.
:meth:`Cluster._reassert` makes the store agree with this node again afterwards (and at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from ocgate.bans import SavedBan
from ocgate.control import UserInfo
from ocgate.daemon._shared import SharedState, SharedStoreDown
from ocgate.daemon._shared import held_leases as _leases
from ocgate.daemon._shared_store import SharedSessionStore
from ocgate.errors import AuthFailed, InvalidCookie, ResourceError
from ocgate.ipc import messages as m
from ocgate.session import Ipv4Pool, Ipv6Pool, Session
from ocgate.session._store import cookie_digest_untrusted

if TYPE_CHECKING:
    from ocgate.daemon._auth import AuthService

__all__ = ["UNAVAILABLE", "Cluster"]

log = logging.getLogger("ocgate.secmod.cluster")

UNAVAILABLE = "The session store is unavailable; please try again later."
"""What a client is told when it cannot log in during an outage of the shared store."""
MAX_LEASE_TRIES = 64
"""Addresses tried for one lease before a CONNECT is refused (others' leases in between)."""
POINTS_DELAY = 0.2
"""Seconds ban points given here wait to be published together."""
MAX_POINTS_BATCH = 1000
"""Addresses in one batch of ban points (a flood from more sources loses the excess)."""
FOREIGN_HOLD = 60.0
"""Seconds an address another node holds stays marked as taken here before it is asked again."""
_USERS = msgspec.msgpack.Decoder(list[UserInfo])
_ENCODE = msgspec.msgpack.Encoder()


class Cluster:
    """This node among others: the authentication service's use of the shared store."""

    def __init__(self, service: AuthService, shared: SharedState) -> None:
        self._service = service
        self.shared = shared
        shared.on_reconnect = self._reassert
        shared.on_lost = self._lost
        shared.on_lease_lost = self._lease_lost
        self._points: dict[str, tuple[int, str]] = {}
        """Ban points given here and not yet published (one event per :data:`POINTS_DELAY`)."""
        self._claims: dict[bytes, asyncio.Lock] = {}
        """One CONNECT at a time per cookie (by digest) on this node."""
        self._restored = {session.sid for session in service.store.sessions()}
        """Sessions read back from this node's SQLite file at start, not yet checked against
        the shared store (:meth:`_reassert`)."""
        self._foreign: dict[object, float] = {}
        """Addresses another node holds, marked as taken in a pool here, until when."""
        self._rows = b""
        self._remote: list[UserInfo] = []

    @property
    def store(self) -> SharedSessionStore:
        store = self._service.store
        assert isinstance(store, SharedSessionStore)
        return store

    async def start(self) -> None:
        await self.shared.start()

    async def close(self) -> None:
        await self.shared.close()

    def unavailable(self) -> str | None:
        """Why a login cannot succeed now (``None``: it can); see :meth:`check`."""
        return None if self.shared.healthy else UNAVAILABLE

    async def check(self) -> None:
        """Find out whether the store answers, before a login's credentials are checked."""
        await self.shared.check()

    # CONNECT -------------------------------------------------------------------------------------

    def claim_lock(self, cookie: str) -> asyncio.Lock:
        """The lock that makes this node's CONNECTs with one cookie run one after the other.

        :raises InvalidCookie: the cookie is malformed.
        """
        digest = cookie_digest_untrusted(cookie)
        lock = self._claims.get(digest)
        if lock is None:
            if len(self._claims) >= 4096:  # Idle locks go; a bound for hostile cookies.
                for key in [k for k, v in self._claims.items() if not v.locked()]:
                    del self._claims[key]
            lock = self._claims[digest] = asyncio.Lock()
        return lock

    async def prepare_claim(self, cookie: str) -> bool:
        """Make sure this node holds the session ``cookie`` names, as its home (step 1 of the
        module docstring: a session that comes from another node is homed here now).

        :returns: whether the session came from another node.
        :raises InvalidCookie: the cookie is malformed or names no session (here or anywhere).
        :raises ResourceError: another node took the session meanwhile, or the session is not
            here and the store cannot be reached (:class:`SharedStoreDown`).
        """
        digest = cookie_digest_untrusted(cookie)
        local = self._local_by_digest(cookie)
        try:
            if local is not None:
                home = await self.shared.home_of(local.sid)
                stored = local.sid in self.shared.written or local.sid in self._restored
                if home == self.shared.node or (home is None and not stored):
                    return False  # Ours (or made here and not written yet).
                if home is None:  # Written before, gone from the store: ended elsewhere.
                    self._service.end_session(local, "ended on another gateway")
                    raise InvalidCookie(f"session {local.sid} ended on another gateway")
                log.info("event=session-moved-away session=%s home=%s", local.sid, home)
                self._drop_copy(local, "moved to another gateway")
            found = await self.shared.fetch(digest)
        except SharedStoreDown:
            if local is not None:
                return False  # The node's own session keeps working through an outage.
            raise
        if found is None:
            raise InvalidCookie("unknown cookie")
        session, home = found
        if session.is_expired(time.time()):
            raise InvalidCookie(f"session {session.sid} has expired")
        if not await self.shared.claim_home(session, home):
            raise ResourceError("the session was taken by another gateway")
        session.connected = False
        session.tunnel_id = None
        if session.expires_at is None:
            session.expires_at = time.time() + session.cookie_timeout
        self._take_over_leases(session)
        self.store.adopt(session)
        log.info(
            "event=session-adopted user=%r session=%s from=%s",
            session.username,
            session.sid,
            home or "-",
        )
        return True

    def _local_by_digest(self, cookie: str) -> Session | None:
        try:
            return self.store.lookup(cookie, time.time())
        except InvalidCookie:
            return None

    def _take_over_leases(self, session: Session) -> None:
        """Reserve a moving session's addresses in the pools here (it keeps them)."""
        service = self._service
        try:
            pool4, pool6 = service.session_pools(session)
        except ResourceError:
            pool4 = pool6 = None
        for pool, lease in ((pool4, session.ipv4), (pool6, session.ipv6)):
            if pool is None or lease is None or not pool.owns(lease):  # type: ignore[arg-type]
                continue  # An explicit address: not a pool's.
            self._unmark(pool, lease)
            if lease in pool:
                holder = self._local_holder(lease, session)
                log.warning("event=lease-conflict session=%s address=%s holder=%s",
                            session.sid, lease, holder or "?")  # fmt: skip
                if isinstance(lease, ipaddress.IPv4Address):
                    session.ipv4 = None
                else:
                    session.ipv6 = None
                continue
            pool.allocate(session.username, prefer=lease)  # type: ignore[arg-type]

    def _local_holder(self, lease: object, session: Session) -> str | None:
        for other in self.store.sessions():
            if other.sid != session.sid and lease in (other.ipv4, other.ipv6):
                return other.sid
        return None

    def _unmark(self, pool: Ipv4Pool | Ipv6Pool, lease: object) -> None:
        if self._foreign.pop(lease, None) is not None and lease in pool:
            pool.release(lease)  # type: ignore[arg-type]

    def _mark(self, lease: object) -> None:
        """``lease`` (allocated in a pool here) is another node's: the pool skips it a while."""
        self._foreign[lease] = time.monotonic() + FOREIGN_HOLD

    async def confirm_leases(self, session: Session, had: tuple[object, object]) -> None:
        """Take the session's new pool addresses in the shared store too (step 3 above).

        An address another node holds stays taken here (for :data:`FOREIGN_HOLD` seconds) and the
        next free one is tried.

        :raises ResourceError: no address is left, or the store cannot be reached.
        """
        service = self._service
        pool4, pool6 = service.session_pools(session)
        try:
            hold = await self.shared.lease_hold()
        except SharedStoreDown:
            if session.ipv4 != had[0]:
                self._give_back(session, pool4, session.ipv4, 4)
            if session.ipv6 != had[1]:
                self._give_back(session, pool6, session.ipv6, 6)
            raise
        if hold:  # The store came back empty: the other nodes write their leases first.
            await asyncio.sleep(hold)
        for family, pool in ((4, pool4), (6, pool6)):
            lease: object = session.ipv4 if family == 4 else session.ipv6
            if lease is None or lease == had[0 if family == 4 else 1]:
                continue  # Confirmed when the session first got it (or explicit, or none).
            for _ in range(MAX_LEASE_TRIES):
                try:
                    holder = await self.shared.take_lease(lease, session)
                except SharedStoreDown:
                    self._give_back(session, pool, lease, family)
                    raise
                if holder == session.sid:
                    break
                log.info("event=lease-held-elsewhere session=%s address=%s holder=%s",
                         session.sid, lease, holder)  # fmt: skip
                if pool is None or not pool.owns(lease):  # type: ignore[arg-type]
                    self._give_back(session, pool, lease, family)
                    self.store.save(session)
                    raise ResourceError(f"address {lease} is leased by another gateway")
                self._mark(lease)  # Stays allocated here: the pool skips it.
                try:
                    lease = pool.allocate(session.username)
                except ResourceError:
                    self._give_back(session, None, None, family)
                    self.store.save(session)
                    raise
                if family == 4:
                    session.ipv4 = lease  # type: ignore[assignment]
                else:
                    session.ipv6 = lease  # type: ignore[assignment]
            else:
                self._give_back(session, pool, lease, family)
                self.store.save(session)
                raise ResourceError("no address is free on every gateway")
        self.store.save(session)

    def _give_back(
        self, session: Session, pool: Ipv4Pool | Ipv6Pool | None, lease: object, family: int
    ) -> None:
        if pool is not None and lease is not None and lease in pool:
            pool.release(lease)  # type: ignore[arg-type]
        if family == 4:
            session.ipv4 = None
        else:
            session.ipv6 = None

    async def after_claim(self) -> None:
        """Write the claimed session (and whatever else is queued) soon: its home and its leases
        are in the store already, so the CONNECT does not wait for the row."""
        self.shared.soon(self.shared.flush())

    async def _flush(self) -> None:
        with contextlib.suppress(SharedStoreDown):
            await self.shared.flush()

    def release_foreign(self) -> None:
        """Give back, in the pools here, the addresses marked as another node's for too long."""
        now = time.monotonic()
        for lease, until in list(self._foreign.items()):
            if until > now:
                continue
            del self._foreign[lease]
            for pool in self._service.live_pools():
                if pool.owns(lease) and lease in pool:  # type: ignore[arg-type]
                    pool.release(lease)  # type: ignore[arg-type]
                    break

    # Logins --------------------------------------------------------------------------------------

    async def login_done(self) -> None:
        """A login made a session: write it before its cookie reaches the client."""
        await self._flush()

    async def otp_first_use(self, username: str, code: str, seconds: int) -> None:
        """:raises AuthFailed: the code was used already, here or on another node."""
        try:
            first = await self.shared.otp_first_use(username, code, seconds)
        except SharedStoreDown:
            raise AuthFailed("the session store is unavailable (OTP replay check)") from None
        if not first:
            raise AuthFailed("OTP code already used")

    async def keep_context(
        self, token: str, state: bytes, *, remote: str, vhost: str, seconds: float
    ) -> bool:
        """A login waiting for its next round: any node may continue it (``gateway/_resume``).

        :returns: whether the store keeps it (then the next round on a new connection, here
            too, takes it from there, so no node goes on from an older copy).
        """
        blob = _ENCODE.encode((remote, vhost, state))
        try:
            await self.shared.put_context(token, blob, seconds)
        except SharedStoreDown:
            return False
        return True

    async def take_context(self, token: str, *, remote: str, vhost: str) -> bytes | None:
        """The state of the login ``token`` names, if it came from ``remote`` through ``vhost``."""
        try:
            blob = await self.shared.take_context(token)
        except SharedStoreDown:
            return None
        if blob is None:
            return None
        try:
            own_remote, own_vhost, state = msgspec.msgpack.decode(blob, type=tuple[str, str, bytes])
        except msgspec.DecodeError:
            return None
        return state if (own_remote, own_vhost) == (remote, vhost) else None

    def forget_context(self, token: str) -> None:
        """The login ``token`` names is over (success, failure or a closed connection)."""
        self.shared.soon(self.shared.drop_context(token))

    # Ban points, ends, nodes ---------------------------------------------------------------------

    def points(self, address: str, points: int, why: str) -> None:
        """Ban points given here count on every node: published together every
        :data:`POINTS_DELAY` seconds (a connection flood makes one event, not one per
        connection); at most :data:`MAX_POINTS_BATCH` addresses per event, more are dropped."""
        if not self._points:
            asyncio.get_running_loop().call_later(POINTS_DELAY, self._publish_points)
        if address in self._points:
            total, _ = self._points[address]
            self._points[address] = (total + points, why)
        elif len(self._points) < MAX_POINTS_BATCH:
            self._points[address] = (points, why)

    def _publish_points(self) -> None:
        batch, self._points = self._points, {}
        entries = [[address, points, why[:32]] for address, (points, why) in batch.items()]
        for i in range(0, len(entries), 40):  # Events stay under MAX_EVENT.
            self.shared.publish_soon("points", entries=entries[i : i + 40])

    def unbanned(self, address: str) -> None:
        self.shared.publish_soon("unban", address=address)
        self.shared.soon(self.shared.drop_ban(address))

    def banned(self, address: str, seconds: float) -> None:
        """``address`` is banned: written down for the nodes that start or return later."""
        self.shared.soon(self.shared.put_ban(address, seconds))

    async def _load_bans(self) -> None:
        """The bans in force on the other nodes (at start, and back from an outage)."""
        try:
            bans = await self.shared.bans()
        except SharedStoreDown:
            return
        service = self._service
        wall, mono = time.time(), time.monotonic()
        service.bans.restore(
            (SavedBan(address=a, score=service.bans.policy.max_score, last_reset=wall,
                      banned_until=until) for a, until in bans.items() if until > wall),
            mono,
            wall,
        )  # fmt: skip
        service.publish_all_bans()

    async def end_elsewhere(self, sid: str, reason: str) -> bool:
        """End a session this node does not hold (``False``: no node holds it)."""
        try:
            return await self.shared.end_everywhere(sid, reason)
        except SharedStoreDown:
            return False

    def end_user_elsewhere(self, username: str) -> None:
        """``ctl terminate user`` here: every other node ends the user's sessions."""
        self.shared.publish_soon("user", username=username)

    def on_event(self, event: dict[str, Any]) -> None:
        """Another node's event (module docstring of :mod:`ocgate.daemon._shared`)."""
        service = self._service
        kind = event.get("t")
        if kind == "points":
            entries = event.get("entries")
            for entry in entries[:MAX_POINTS_BATCH] if isinstance(entries, list) else ():
                if not (isinstance(entry, list) and len(entry) == 3):
                    continue
                address, points, why = entry
                if isinstance(address, str) and isinstance(points, int) and 0 < points <= 10_000:
                    service.add_points(address[:64], points, f"{why}@{event.get('node')}"[:64],
                                       share=False)  # fmt: skip
        elif kind == "unban":
            address = event.get("address")
            if isinstance(address, str):
                service.unban(address[:64], share=False)
        elif kind == "user":
            username = event.get("username")
            if not isinstance(username, str):
                return
            for session in [s for s in self.store.sessions() if s.username == username]:
                service.end_session(session, "admin terminate")
        elif kind in ("claimed", "end"):
            sid = event.get("sid")
            if not isinstance(sid, str):
                return
            try:
                session = self.store.by_sid(sid)
            except KeyError:
                return
            if kind == "claimed":
                self._drop_copy(session, "replaced by a connection to another gateway")
            else:
                reason = event.get("reason")
                service.end_session(session, reason if isinstance(reason, str) else "ended")

    def _drop_copy(self, session: Session, reason: str) -> None:
        """Another node is ``session``'s home now: close its tunnel here, free its addresses here
        (not in the shared store: they moved with it) and forget it."""
        service = self._service
        owner = service.owners.pop(session.sid, None)
        if owner is not None:
            service.tell(owner.worker, m.CloseSession(sid=session.sid, reason=reason, notify=True))
        self.shared.forget(session.sid)
        self.store.forget(session)
        service.release_locally(session)
        log.info("event=session-copy-dropped user=%r session=%s reason=%r",
                 session.username, session.sid, reason)  # fmt: skip

    async def publish_rows(self, users: list[UserInfo]) -> None:
        """This node's users, for ``show users`` on the others."""
        rows = _ENCODE.encode(users)
        self._rows = rows
        with contextlib.suppress(SharedStoreDown):
            await self.shared.put_node_rows(rows)

    async def remote_users(self) -> list[UserInfo]:
        """Every other node's users (the last list read, during an outage)."""
        try:
            parts = await self.shared.node_rows()
        except SharedStoreDown:
            return self._remote
        users: list[UserInfo] = []
        for node, blob in sorted(parts.items()):
            try:
                rows = _USERS.decode(blob)
            except msgspec.DecodeError as exc:
                log.warning("event=node-users-unreadable node=%s reason=%r", node, str(exc))
                continue
            users.extend(dataclasses.replace(u, node=u.node or node) for u in rows)
        self._remote = users
        return users

    async def refresh(self) -> None:
        """Re-arm the keys of this node's connected sessions (every :data:`REFRESH_PERIOD`)."""
        for session in self.store.sessions():
            if session.connected:
                self.shared.dirty(session)
        self.release_foreign()
        await self._flush()

    def _lost(self, sid: str, why: str) -> None:
        """A write found ``sid`` no longer here: another node took it, or it ended elsewhere."""
        try:
            session = self.store.by_sid(sid)
        except KeyError:
            return
        if why == "moved":
            self._drop_copy(session, "moved to another gateway")
        else:
            self._service.end_session(session, "ended on another gateway")

    def _lease_lost(self, sid: str, lease: object) -> None:
        """A lease of a session here expired in the store (an outage longer than its life):
        take it again, or, if another session has it now, end the session here."""

        async def retake() -> None:
            try:
                session = self.store.by_sid(sid)
            except KeyError:
                return
            if lease not in _leases(session):
                return
            holder = await self.shared.take_lease(lease, session)
            if holder != sid:
                log.warning("event=lease-conflict session=%s address=%s holder=%s",
                            sid, lease, holder)  # fmt: skip
                self._service.end_session(session, "address leased by another gateway")

        self.shared.soon(retake())

    async def _reassert(self, lost: bool) -> None:
        """At start, back from an outage, or with a store that lost its data (``lost``): make
        the store agree with the sessions this node holds.

        * A session another node took meanwhile is dropped here.
        * A session homed here stays; its leases are taken (again, with ``lost``).
        * A session whose keys are gone from a store that kept its data was ended elsewhere (a
          ``terminate`` while this node was away) or expired there: it ends here too. With
          ``lost`` it is written again instead.
        * Taking a lease another session took meanwhile is a conflict: the session here is
          ended (its client is told; the user logs in again).
        """
        for session in list(self.store.sessions()):
            try:
                home = await self.shared.home_of(session.sid)
            except SharedStoreDown:
                return
            sid = session.sid
            if home not in (None, self.shared.node):  # It moved while this node was away.
                self._drop_copy(session, "moved to another gateway")
                continue
            was_stored = sid in self.shared.written or sid in self._restored
            self._restored.discard(sid)
            if home == self.shared.node:
                self.shared.written.add(sid)  # Its leases are confirmed below (re-armed later).
            elif not lost and was_stored:
                self._service.end_session(session, "ended on another gateway")
                continue
            for lease in _leases(session):
                try:
                    holder = await self.shared.take_lease(lease, session)
                except SharedStoreDown:
                    return
                if holder != sid:
                    log.warning("event=lease-conflict session=%s address=%s holder=%s",
                                sid, lease, holder)  # fmt: skip
                    self._service.end_session(session, "address leased by another gateway")
                    break
            else:
                self.shared.dirty(session)
        if self._rows:
            with contextlib.suppress(SharedStoreDown):
                await self.shared.put_node_rows(self._rows)
        await self._load_bans()
