"""The authentication service ("sec-mod"): credentials, sessions, cookies, leases and bans.

It is the only process that reads the password and OTP files, talks RADIUS, holds the session store
and hands out addresses. Workers reach it over one typed channel each
(:mod:`ocgate.ipc`): they forward the pre-tunnel HTTP requests of a connection to its login dialog
(which lives here, so the verdict and the cookie never depend on a worker's word), claim a session
by cookie at CONNECT and report tunnels up and down. Hashing and OTP file updates run in a thread
pool and RADIUS does asynchronous I/O, so a slow check never holds up another login, and workers
never wait on it for data-path work.

Virtual hosts (``[vhost:NAME]``): each has its own login services (backends, group menu, per-user
files), chosen by the vhost the connection's TLS server name selected (``LoginRequest.vhost``);
each network has one pool (a vhost with the top level's network shares its pool); a session's
settings carry its vhost's configuration, and its cookie is claimed only through that vhost.

Per-user and per-group networks (``ipv4-network``/``ipv6-network`` in those files; ocserv
``src/ip-lease.c`` leases from the session's network): a session whose settings name a network
other than its vhost's leases from a pool of that network.

Four parts have modules of their own, where their rules are written: the address pools
(:class:`~ocgate.daemon._auth_pools.AddressPools`), the bans
(:class:`~ocgate.daemon._auth_bans.AddressBans`), the checks of a CONNECT's cookie claim
(:class:`~ocgate.daemon._auth_claims.ClaimRules`) and the login dialogs of the workers'
connections (:class:`~ocgate.daemon._auth_logins.LoginDialogs`).

Session times here are wall-clock seconds: the store is durable (SQLite) and a restarted gateway
must read them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ocgate import ipc
from ocgate.auth import AuthBackends, SessionAccounting, build_accounting, build_auth_backends
from ocgate.config import Config
from ocgate.control import SessionInfo
from ocgate.daemon._auth_bans import AddressBans
from ocgate.daemon._auth_claims import ClaimRules
from ocgate.daemon._auth_logins import LoginDialogs
from ocgate.daemon._auth_pools import AddressPools
from ocgate.daemon._cluster import Cluster
from ocgate.daemon._shared import REFRESH_PERIOD, SharedState
from ocgate.daemon._shared_store import SharedSessionStore
from ocgate.daemon._store import open_session_store, shared_store_url
from ocgate.daemon._wire import ConfigReferences, dump_session
from ocgate.errors import InvalidCookie, OcgateError, ResourceError
from ocgate.gateway import GroupMenu, LoginServices, SessionSettings, SsoService, lease_addresses
from ocgate.ipc import messages as m
from ocgate.metrics import GatewayMetrics, LiveState
from ocgate.radius import AccountingSession, RadiusResult
from ocgate.session import Ipv4Pool, Ipv6Pool, Session, SessionStore
from ocgate.sso import load_sso_provider
from ocgate.tls import ServerCredentials, load_credentials

__all__ = ["AuthService"]

log = logging.getLogger("ocgate.secmod")

_MAINTENANCE_PERIOD = 5.0
_COMMIT_DELAY = 0.01
"""Seconds the session store's row changes wait to be committed together (group commit: one
login makes five or six of them; at most this much is lost if the service crashes)."""


@dataclass(slots=True)
class _Owner:
    worker: int
    tunnel_id: int
    local: str


class AuthService:
    """The state and the request handlers of the authentication service."""

    def __init__(self, config: Config, *, store_path: str) -> None:
        self._commit: asyncio.TimerHandle | None = None
        self._references = ConfigReferences(config)
        self.store: SessionStore = open_session_store(
            store_path, now=time.time(), references=self._references, on_queued=self._commit_soon
        )
        self.cluster: Cluster | None = None
        """With a shared (Redis) ``session-store``: this node among the others."""
        url = shared_store_url(config)
        if url is not None:
            shared = SharedState(url, config.node_name, on_event=self._cluster_event)
            self.store = SharedSessionStore(self.store, shared)  # type: ignore[arg-type]
            self.cluster = Cluster(self, shared)
        self._pools = AddressPools(self.session_host)
        self.vhost_services: dict[str, LoginServices] = {}
        """Each ``[vhost:NAME]``'s login services (its own backends, group menu, settings)."""
        # Late-bound: the metrics are made below, and the process sets publish_bans once running.
        self._bans = AddressBans(
            self.store,
            self.cluster,
            publish=lambda entries, full: self.publish_bans(entries, full),
            on_ban=lambda: self.metrics.bans.inc(),
        )
        self.bans = self._bans.table
        """Ban points per client address (the cluster restores the other nodes' bans in it)."""
        self.workers: dict[int, ipc.Channel] = {}
        self.owners: dict[str, _Owner] = {}
        self._claims = ClaimRules(
            config=lambda: self.config,
            host_of=self.session_host,
            services_for=self.services_for,
            owners=self.owners,
            store=self.store,
            end_session=self.end_session,
        )
        self.counters: dict[str, tuple[int, int, int, int]] = {}
        self._logins = LoginDialogs(config, services_for=self.services_for, cluster=self.cluster)
        """The login dialog of each pre-tunnel connection, and the logins under way."""
        self.metrics = GatewayMetrics(self._live_state)
        self.accounting: SessionAccounting | None = None
        self.auth_failures = 0
        # The supervisor's accept gate refuses banned sources; it hears of every ban change here.
        self.publish_bans: Callable[[list[m.BanState], bool], None] = lambda _entries, _all: None
        self.ping_address: Callable[[str], Awaitable[bool]] | None = None
        """``ping-leases``: asks the supervisor whether an address answers (``daemon/_ping.py``)."""
        self._maintenance: asyncio.Task[None] | None = None
        self._cluster_start: asyncio.Task[None] | None = None
        self.load(config)
        self._restore_leases()

    # Configuration --------------------------------------------------------------------------------

    def load(self, config: Config) -> None:
        """Build everything that depends on the configuration (start and reload).

        :raises ConfigError: a file cannot be used; nothing has changed then.
        """
        backends = build_auth_backends(config)
        accounting = build_accounting(config)
        credentials = load_credentials(config.server_cert[0])
        sso = self._sso(config, backends)
        vhosts = {}
        for vhost in config.vhosts:
            vhost_backends = build_auth_backends(vhost)
            vhosts[vhost.vhost_name or ""] = (
                vhost,
                vhost_backends,
                load_credentials(vhost.server_cert[0]),
                self._sso(vhost, vhost_backends),
            )
        self.config = config
        self._references.config = config
        self._logins.load(config)
        if accounting is not None and self.accounting is None:
            self.accounting = SessionAccounting(
                accounting, stats_report_time=config.stats_report_time
            )
        self._bans.load(config)
        self._pools.load(config)
        self.login_services = self._services(config, backends, credentials, sso)
        self.vhost_services = {name: self._services(*built) for name, built in vhosts.items()}

    def _sso(self, config: Config, backends: AuthBackends) -> SsoService | None:
        """The ``oidc``/``saml`` flow of one host: its provider is loaded here, in sec-mod, with
        its secrets and (OIDC) the provider's discovery document and keys (docs/SSO.md).

        :raises ConfigError: a bad provider config or an unreachable provider.
        """
        method = backends.sso_method
        if method is None:
            return None
        base_url = method.params.get("base-url") or _default_base_url(config)
        provider = load_sso_provider(method.name, method.params["config"], base_url=base_url)
        return SsoService(
            provider,
            base_url=base_url,
            clock=time.time,
            run_blocking=asyncio.to_thread,
            on_refusal=self._wrong_password,
            login_lifetime=float(config.auth_timeout),
        )

    def _services(
        self,
        config: Config,
        backends: AuthBackends,
        credentials: ServerCredentials,
        sso: SsoService | None = None,
    ) -> LoginServices:
        """The login services of one host (the default or a vhost): its backends, its menu."""
        wants_menu = config.select_group or config.default_select_group or config.auto_select_group
        if self.cluster is not None:
            backends.otp_first_use = self.cluster.otp_first_use
        return LoginServices(
            config=config,
            backends=backends,
            groups=GroupMenu(config, backends.file_groups()) if wants_menu else None,
            is_banned=self.is_banned,
            on_auth_failure=self._wrong_password,
            store=self.store,
            credentials=credentials,
            clock=time.time,
            count_connected=lambda username: self._count_connected(username, config.vhost_name),
            end_session=self.end_session,
            on_login=self._count_login,
            unavailable=self.cluster.unavailable if self.cluster is not None else lambda: None,
            sso=sso,
        )

    def services_for(self, vhost: str) -> LoginServices:
        """The login services of the host a connection's SNI chose (``""``: the default host;
        a name that is no longer a vhost, after a reload: the default host too)."""
        return self.vhost_services.get(vhost, self.login_services) if vhost else self.login_services

    def session_host(self, session: Session) -> Config:
        """The configuration of the host ``session`` logged in to (its vhost, else default)."""
        settings = session.extra.get("settings")
        name = settings.config.vhost_name if isinstance(settings, SessionSettings) else None
        return self.config.vhost(name)

    # Address pools (:mod:`ocgate.daemon._auth_pools`) ---------------------------------------------

    def pools_for(self, host: Config) -> tuple[Ipv4Pool | None, Ipv6Pool | None]:
        """The address pools of ``host`` (:meth:`AddressPools.for_host`)."""
        return self._pools.for_host(host)

    def session_pools(self, session: Session) -> tuple[Ipv4Pool | None, Ipv6Pool | None]:
        """The pools ``session`` leases from (:meth:`AddressPools.for_session`).

        :raises ResourceError: the session's network overlaps another pool without being it, or
            :data:`~ocgate.daemon._auth_pools.MAX_SESSION_POOLS` are in use.
        """
        return self._pools.for_session(session)

    def live_pools(self) -> list[Ipv4Pool | Ipv6Pool]:
        """Every pool that may hold a lease: configured, per-user and retired."""
        return self._pools.live()

    @property
    def pool4(self) -> Ipv4Pool | None:
        """The default host's IPv4 pool."""
        return self._pools.pool4

    @property
    def pool6(self) -> Ipv6Pool | None:
        """The default host's IPv6 pool."""
        return self._pools.pool6

    def _restore_leases(self) -> None:
        """Sessions read back from the durable store keep their addresses."""
        self._bans.restore()
        restore = getattr(self.store, "restore_leases", None)
        if restore is None:
            return
        for session in restore(self._pools.pool4, self._pools.pool6):
            log.warning("event=lease-lost session=%s user=%r", session.sid, session.username)
        self._pools.reserve(self.store.sessions(), self._save)
        count = len(self.store.sessions())
        if count:
            log.info("event=sessions-restored count=%d", count)

    # Running --------------------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._maintenance = loop.create_task(self._maintain())
        if self.cluster is not None:
            self._cluster_start = loop.create_task(self.cluster.start())

    def _cluster_event(self, event: dict[str, object]) -> None:
        if self.cluster is not None:
            self.cluster.on_event(event)

    def _commit_soon(self) -> None:
        if self._commit is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # Not serving (a tool, a test): commit at once.
            self._commit_now()
            return
        self._commit = loop.call_later(_COMMIT_DELAY, self._commit_now)

    def _commit_now(self) -> None:
        self._commit = None
        flush = getattr(self.store, "flush", None)
        if callable(flush):
            try:
                flush()
            except OSError as exc:  # The changes hold in memory; the next save writes again.
                log.error("event=session-store-write-failed error=%r", str(exc))

    async def close(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
        if self._commit is not None:
            self._commit.cancel()
            self._commit = None
        self._bans.save()
        if self.cluster is not None:
            await self.cluster.close()
        if self.accounting is not None:
            await self.accounting.close()
        closer = getattr(self.store, "close", None)
        if callable(closer):
            closer()

    async def _maintain(self) -> None:
        refreshed = time.monotonic()
        while True:
            await asyncio.sleep(_MAINTENANCE_PERIOD)
            if self.cluster is not None and time.monotonic() - refreshed >= REFRESH_PERIOD:
                refreshed = time.monotonic()
                await self.cluster.refresh()
            for session in self.store.expire(time.time()):
                log.info("event=session-expired user=%r session=%s", session.username, session.sid)
                owner = self.owners.pop(session.sid, None)
                if owner is not None:
                    self._tell(owner.worker, m.CloseSession(
                        sid=session.sid, reason="session expired", notify=True
                    ))  # fmt: skip
                self._release(session, "session expired")
            self._bans.expire()

    # Bans (:mod:`ocgate.daemon._auth_bans`) -------------------------------------------------------

    def is_banned(self, address: str) -> bool:
        return self._bans.is_banned(address)

    def connection_points(self, addresses: list[str]) -> None:
        """Connections the supervisor accepted from ``addresses`` (``ban-points-connection``)."""
        self._bans.connection_points(addresses)

    def unban(self, address: str, *, share: bool = True) -> bool:
        """Lift the ban of ``address`` (``share``: on every node of a shared store too)."""
        return self._bans.unban(address, share=share)

    def publish_all_bans(self) -> None:
        """Tell the supervisor every ban in force (at start: it forgets its copy)."""
        self._bans.publish_all()

    def add_points(self, address: str, points: int, why: str, *, share: bool = True) -> None:
        """Ban points for ``address`` (``share``: they count on every node of a shared store)."""
        self._bans.add_points(address, points, why, share=share)

    def _wrong_password(self, address: str) -> None:
        self._bans.wrong_password(address)

    # Sessions -------------------------------------------------------------------------------------

    def _count_connected(self, username: str, vhost: str | None = None) -> int:
        """Tunnels of ``username`` (``max-same-clients``): a walk over tunnels, not sessions."""
        count = 0
        for sid in self.owners:
            with contextlib.suppress(KeyError):
                other = self.store.by_sid(sid)
                # A vhost's users are its own: alice of one vhost is not alice of another.
                if other.username == username and self.session_host(other).vhost_name == vhost:
                    count += 1
        return count

    def _count_login(self, result: str, reason: str) -> None:
        self.metrics.logins.labels(result=result, reason=reason).inc()
        if result != "success":
            self.auth_failures += 1

    def end_session(self, session: Session, reason: str) -> None:
        """End ``session`` for good: its tunnel (on whichever worker), cookie and leases."""
        owner = self.owners.get(session.sid)
        if owner is not None and owner.worker in self.workers:
            self._tell(owner.worker, m.CloseSession(
                sid=session.sid, reason=reason, end_session=True, notify=True
            ))  # fmt: skip
            return  # The worker's TunnelDown finishes the job.
        self.owners.pop(session.sid, None)
        self.store.invalidate(session)
        self._release(session, reason)
        log.info(
            "event=session-ended user=%r session=%s reason=%r",
            session.username,
            session.sid,
            reason,
        )

    def release_locally(self, session: Session) -> None:
        """Free ``session``'s addresses in the pools here: it moved to another node."""
        self._release(session, "moved to another gateway")

    def tell(self, worker: int, message: ipc.messages.Message) -> None:
        self._tell(worker, message)

    def _release(self, session: Session, reason: str) -> None:
        if self.accounting is not None:
            self.accounting.session_ended(session.sid, reason)
        self.counters.pop(session.sid, None)
        self._pools.release(session)

    def claim(self, worker: int, msg: m.ClaimSession) -> m.SessionGranted:
        """CONNECT: find the session, take it from an older tunnel, lease its addresses.

        :raises InvalidCookie: the cookie names no live session.
        :raises ResourceError: no address can be given.
        """
        session = self.store.lookup(msg.cookie, time.time())
        self._claims.check_vhost(session, msg.vhost)
        self._claims.check_roaming(session, msg.remote)
        self._claims.check_certificate(session, msg.peer_chain)
        self._claims.check_strap(session, msg)
        limit = self.config.max_clients
        connected = len(self.owners) - (1 if session.sid in self.owners else 0)  # Tunnels.
        if limit and connected >= limit:
            raise ResourceError("maximum number of clients reached")
        self._claims.check_same_clients(session)
        old = self.owners.get(session.sid)
        if old is not None and (old.worker, old.tunnel_id) != (worker, msg.tunnel_id):
            # A reconnect replaces the older tunnel; the session and its leases carry over. Two
            # CONNECTs racing with one cookie: the later claim wins and the earlier one's
            # TunnelUp is refused, so a session never has two tunnels. The older connection is
            # told (a DISCONNECT, as ocserv's SIGTERM to its worker does), so a second client
            # that still holds it exits instead of reconnecting and taking the cookie back.
            self._tell(old.worker, m.CloseSession(
                sid=session.sid, reason="replaced by a newer connection", notify=True
            ))  # fmt: skip
        self._lease(session, msg)
        if session.ipv4 is None and session.ipv6 is None:
            raise ResourceError("no address family left to assign")
        self.owners[session.sid] = _Owner(worker=worker, tunnel_id=msg.tunnel_id, local="")
        self._save(session)
        return m.SessionGranted(payload=dump_session(session, self.config))

    async def claim_pinged(self, worker: int, msg: m.ClaimSession) -> m.SessionGranted:
        """:meth:`claim`, then with ``ping-leases`` replace each address newly taken from a pool
        that answers a ping (ocserv ``src/ip-lease.c``): another pool address is taken while the
        answering one is held, then the answering one is given back. An address the session
        already held (a reconnect) or an explicit one is not pinged.

        :raises InvalidCookie: as :meth:`claim`.
        :raises ResourceError: as :meth:`claim`, or every address tried answers.
        """
        session = self.store.lookup(msg.cookie, time.time())
        had4, had6 = session.ipv4, session.ipv6
        granted = self.claim(worker, msg)
        ping = self.ping_address
        if not self.config.ping_leases or ping is None:
            return granted
        pool4, pool6 = self.session_pools(session)
        key = session.username
        try:
            if had4 is None and session.ipv4 is not None and pool4 and pool4.owns(session.ipv4):
                leased4, session.ipv4 = session.ipv4, None
                session.ipv4 = await _first_silent(
                    leased4, lambda: pool4.allocate(key), pool4.release, str, ping
                )
            if had6 is None and session.ipv6 is not None and pool6 and pool6.owns(session.ipv6):
                leased6, session.ipv6 = session.ipv6, None
                session.ipv6 = await _first_silent(
                    leased6,
                    lambda: pool6.allocate(key),
                    pool6.release,
                    lambda lease: str(lease.network_address),
                    ping,
                )
        except ResourceError as exc:
            log.warning("event=address-refused user=%r session=%s reason=%r",
                        session.username, session.sid, str(exc))  # fmt: skip
            owner = self.owners.get(session.sid)
            if owner is not None and (owner.worker, owner.tunnel_id) == (worker, msg.tunnel_id):
                del self.owners[session.sid]
            self._pools.drop_empty()
            raise
        if (session.ipv4, session.ipv6) == (had4, had6):
            return granted
        self._save(session)
        return m.SessionGranted(payload=dump_session(session, self.config))

    def _lease(self, session: Session, msg: m.ClaimSession) -> None:
        """The session's addresses (:func:`~ocgate.gateway.lease_addresses`): the ones it holds,
        else its explicit or a pool address. The client's ``X-CSTP-Address`` is never honoured
        for a session without a lease; a refused explicit address refuses the tunnel.

        :raises ResourceError: an explicit address is refused or taken, or a pool is full.
        """
        had4, had6 = session.ipv4, session.ipv6
        settings = session.extra.get("settings")
        explicit = isinstance(settings, SessionSettings) and settings.explicit_ipv4 is not None
        # Only an explicit address outside the pool needs the other sessions checked.
        others = self.store.sessions() if explicit else ()
        try:
            pool4, pool6 = self.session_pools(session)
            lease_addresses(session, pool4, pool6, others, want6=msg.want6)
        except ResourceError as exc:
            log.warning("event=address-refused user=%r session=%s reason=%r",
                        session.username, session.sid, str(exc))  # fmt: skip
            self._pools.drop_empty()
            raise
        asked4, asked6 = _ipv4(msg.prefer4), _ipv6(msg.prefer6)
        ignored = []
        if had4 is None and asked4 is not None and session.ipv4 not in (None, asked4):
            ignored.append(str(asked4))
        got6 = session.ipv6
        if had6 is None and asked6 is not None and got6 is not None and asked6 not in got6:
            ignored.append(str(asked6))
        if ignored:  # A client may only ask back for the lease its session holds.
            log.info("event=address-request-ignored user=%r session=%s asked=%s",
                     session.username, session.sid, ",".join(ignored))  # fmt: skip

    def _save(self, session: Session) -> None:
        save = getattr(self.store, "save", None)
        if callable(save):
            save(session)

    def tunnel_up(self, worker: int, msg: m.TunnelUp) -> bool:
        """The tunnel is about to carry data; ``False`` if a later claim replaced it meanwhile."""
        owner = self.owners.get(msg.sid)
        if owner is None or (owner.worker, owner.tunnel_id) != (worker, msg.tunnel_id):
            return False
        try:
            session = self.store.by_sid(msg.sid)
        except KeyError:
            return False
        owner.local = msg.local
        session.device = msg.device
        session.remote_addr = msg.remote
        session.user_agent = msg.user_agent or session.user_agent
        if msg.hostname is not None:
            session.hostname = msg.hostname
        self.store.mark_connected(session, time.time(), tunnel_id=msg.tunnel_id)
        self._save(session)
        if self.accounting is not None:
            self._accounting_up(session, msg.local)
        return True

    def _accounting_up(self, session: Session, local: str) -> None:
        assert self.accounting is not None
        radius = session.extra.get("radius")
        radius = radius if isinstance(radius, RadiusResult) else None
        info = AccountingSession(
            username=radius.username if radius is not None else session.username,
            session_id=session.sid,
            client_ip=session.remote_addr or "",
            user_agent=session.user_agent,
            framed_ipv4=session.ipv4,
            framed_ipv6=session.ipv6.network_address if session.ipv6 is not None else None,
            server_ip=local,
            classes=radius.classes if radius is not None else (),
        )
        sid = session.sid

        def live() -> tuple[int, int, int, int]:
            return self.counters.get(sid, (0, 0, 0, 0))

        interim = radius.interim_interval if radius is not None else None
        self.accounting.tunnel_up(sid, info, live, interim_interval=interim)

    def tunnel_down(self, worker: int, msg: m.TunnelDown) -> None:
        owner = self.owners.get(msg.sid)
        if owner is not None and (owner.worker, owner.tunnel_id) == (worker, msg.tunnel_id):
            del self.owners[msg.sid]
        self.counters.pop(msg.sid, None)
        counters = (msg.rx_bytes, msg.tx_bytes, msg.rx_packets, msg.tx_packets)
        if self.accounting is not None:
            self.accounting.tunnel_down(msg.sid, counters)
        try:
            session = self.store.by_sid(msg.sid)
        except KeyError:
            return
        if msg.end_session:
            self.store.invalidate(session)
            self._release(session, msg.reason)
            return
        # A replaced tunnel's late teardown must not disconnect its successor (ocserv #706). The
        # cookie lives exactly cookie-timeout from here (ocserv 1.1.6 adds 15 s of slack; the
        # administrator's number is the contract).
        self.store.mark_disconnected(
            session,
            time.time(),
            self.session_host(session).cookie_timeout,
            tunnel_id=msg.tunnel_id,
        )

    def worker_gone(self, worker: int) -> None:
        """A worker died: its tunnels are down, their sessions wait for a cookie reconnect."""
        self.workers.pop(worker, None)
        self._logins.worker_gone(worker)
        for sid, owner in list(self.owners.items()):
            if owner.worker == worker:
                self.tunnel_down(worker, m.TunnelDown(
                    sid=sid, tunnel_id=owner.tunnel_id, reason="worker exited", end_session=False
                ))  # fmt: skip

    def _live_state(self) -> LiveState:
        return LiveState(
            tunnels=[],
            sessions_disconnected=sum(1 for s in self.store.sessions() if not s.connected),
            banned_addresses=self._bans.banned_count(),
        )

    # Snapshots ------------------------------------------------------------------------------------

    def sessions_reply(self) -> m.Sessions:
        now = time.time()  # An expired session is over even before the sweep removes it.
        sessions = [
            SessionInfo(
                session_id=s.sid,
                created=s.created,
                expires=s.expires_at or 0.0,
                state="authenticated",
                username=s.username,
                groupname=s.group or "",
                vhost=self.session_host(s).vhost_label,
                user_agent=s.user_agent or "",
                remote_ip=s.remote_addr or "",
                in_use=s.connected,
                # ocserv's "Activated" (session_is_open): a tunnel has used the session. Leases
                # are held from the first CONNECT until the session ends.
                activated=s.connected or s.ipv4 is not None or s.ipv6 is not None,
            )
            for s in self.store.sessions()
            if not s.is_expired(now)
        ]
        # Logins under way are sec-mod entries in ocserv too: `show sessions all` lists them, also
        # those waiting for their next round on a new connection.
        for dialog in self._logins.under_way():
            progress = dialog.progress()
            if progress is not None:
                sessions.append(SessionInfo(
                    session_id=progress.display_id,
                    created=progress.created,
                    state=progress.state,
                    username=progress.username,
                    user_agent=progress.user_agent,
                    remote_ip=progress.remote,
                ))  # fmt: skip
        pools = self._pools.live()  # Vhosts', per-user and retired pools' leases count too.
        leases4 = sum(pool.in_use for pool in pools if isinstance(pool, Ipv4Pool))
        leases6 = sum(pool.in_use for pool in pools if isinstance(pool, Ipv6Pool))
        stats = {
            "auth_failures": float(self.auth_failures),
            "leases4": float(leases4),
            "leases6": float(leases6),
            "tasks": float(len(asyncio.all_tasks())),
        }
        return m.Sessions(sessions=sessions, bans=self._bans.entries(), stats=stats)

    # Channel plumbing -----------------------------------------------------------------------------

    def _tell(self, worker: int, message: ipc.messages.Message) -> None:
        channel = self.workers.get(worker)
        if channel is not None:
            with contextlib.suppress(ipc.ChannelClosed):
                channel.send(message)

    def worker_handler(self, worker: int) -> Callable[..., object]:
        """The handler of the channel to worker ``worker``."""

        async def handle(msg: object, fds: list[int]) -> ipc.messages.Message | None:
            for fd in fds:
                os.close(fd)  # Workers send no descriptors.
            return await self._from_worker(worker, msg)

        return handle

    async def _from_worker(self, worker: int, msg: object) -> ipc.messages.Message | None:
        if isinstance(msg, m.LoginRequest):
            return await self._logins.handle(worker, msg)
        if isinstance(msg, m.ConnectionGone):
            self._logins.connection_gone(worker, msg.conn)
            return None
        if isinstance(msg, m.ClaimSession):
            try:
                if self.cluster is not None:
                    return await self._claim_shared(self.cluster, worker, msg)
                return await self.claim_pinged(worker, msg)
            except (InvalidCookie, ResourceError, OcgateError) as exc:
                return m.Failed(message=str(exc))
        if isinstance(msg, m.TunnelUp):
            if self.tunnel_up(worker, msg):
                return m.Ok()
            return m.Failed(message="replaced by a newer connection")
        if isinstance(msg, m.TunnelDown):
            self.tunnel_down(worker, msg)
            return m.Ok()
        if isinstance(msg, m.CountersUpdate):
            for c in msg.tunnels:
                owner = self.owners.get(c.sid)
                if owner is not None and owner.worker == worker:
                    self.counters[c.sid] = (c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets)
            return None
        if isinstance(msg, m.EndSession):
            try:
                session = self.store.by_sid(msg.sid)
            except KeyError:
                return m.Ok(found=False)
            self.owners.pop(msg.sid, None)
            self.store.invalidate(session)
            self._release(session, msg.reason)
            return m.Ok()
        return m.Failed(message=f"unexpected {type(msg).__name__}")

    async def _claim_shared(
        self, cluster: Cluster, worker: int, msg: m.ClaimSession
    ) -> m.SessionGranted:
        """:meth:`claim_pinged` with the session and its addresses shared with other nodes
        (:mod:`ocgate.daemon._cluster`); one CONNECT per cookie at a time."""
        async with cluster.claim_lock(msg.cookie):
            return await self._claim_shared_locked(cluster, worker, msg)

    async def _claim_shared_locked(
        self, cluster: Cluster, worker: int, msg: m.ClaimSession
    ) -> m.SessionGranted:
        moved = await cluster.prepare_claim(msg.cookie)
        session = self.store.lookup(msg.cookie, time.time())
        # A session that moved here has its addresses taken in the shared store again (its old
        # home may not have written them back after an outage): one held by another session is
        # replaced, as a new one would be.
        had = (None, None) if moved else (session.ipv4, session.ipv6)
        granted = await self.claim_pinged(worker, msg)
        if moved or (session.ipv4, session.ipv6) != had:
            try:
                await cluster.confirm_leases(session, had)
            except ResourceError:
                owner = self.owners.get(session.sid)
                if owner is not None and (owner.worker, owner.tunnel_id) == (worker, msg.tunnel_id):
                    del self.owners[session.sid]
                self._pools.drop_empty()
                raise
            granted = m.SessionGranted(payload=dump_session(session, self.config))
        await cluster.after_claim()
        return granted


def _ipv4(text: str | None) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text) if text is not None else None
    except ValueError:
        return None


def _ipv6(text: str | None) -> ipaddress.IPv6Address | None:
    try:
        return ipaddress.IPv6Address(text) if text is not None else None
    except ValueError:
        return None


def _default_base_url(config: Config) -> str:
    """``https://HOST[:PORT]`` from ``listen-host`` (else this host's name) and ``tcp-port``."""
    host = config.listen_host or socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}" if config.tcp_port == 443 else f"https://{host}:{config.tcp_port}"


_L = TypeVar("_L")

_PING_TRIES = 16
"""Pool addresses tried per lease with ``ping-leases`` before the CONNECT is refused."""


async def _first_silent(
    lease: _L,
    allocate: Callable[[], _L],
    release: Callable[[_L], None],
    address_of: Callable[[_L], str],
    ping: Callable[[str], Awaitable[bool]],
) -> _L:
    """``lease`` if its address does not answer a ping, else the first of up to ``_PING_TRIES``
    further leases that does not. Leases that answered are released before returning or raising
    (so is ``lease`` if none is silent).

    :raises ResourceError: the pool is full, or every address tried answers.
    """
    answered: list[_L] = []
    try:
        for attempt in range(_PING_TRIES):
            if not await ping(address_of(lease)):
                return lease
            log.warning("event=lease-skipped address=%s reason='answers a ping'", address_of(lease))
            answered.append(lease)
            if attempt + 1 < _PING_TRIES:
                lease = allocate()
        raise ResourceError(f"the {_PING_TRIES} pool addresses tried all answer a ping")
    finally:
        for busy in answered:
            release(busy)
