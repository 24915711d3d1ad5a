"""The gateway: owner of the listeners, the session store, the address pools and the live tunnels.

State ownership (docs/ARCHITECTURE.md): the session store owns cookies and session records; the
pools own which addresses are taken; a session holds its leases from its first CONNECT until it ends
(logout, expiry, session timeout), so a cookie reconnect gets the same addresses; a tunnel owns its
TUN device and lives exactly as long as its TLS connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING

from ocgate.auth import SessionAccounting, build_accounting, build_auth_backends
from ocgate.bans import BanPolicy, BanTable
from ocgate.certauth import CertRequest, cert_request_mode, configure_client_cert_request
from ocgate.config import Config, load_config
from ocgate.control import BanInfo
from ocgate.cstp import (
    CstpConnection,
)
from ocgate.daemon._client import ClientConnection
from ocgate.daemon._control import ControlService, ServerStats
from ocgate.daemon._dtls import DtlsChannel
from ocgate.daemon._scripts import run_script
from ocgate.daemon._tunnel import Tunnel, TunnelMeta
from ocgate.daemon._udp import DtlsPort
from ocgate.dtls import DtlsOffer, PskMode, negotiate_dtls
from ocgate.errors import ConfigError, InvalidCookie, OcgateError, ResourceError
from ocgate.gateway import (
    GroupMenu,
    LoginServices,
    ScriptContext,
    SessionSettings,
    TunnelPlan,
    connect_headers,
    plan_tunnel,
    script_environment,
)
from ocgate.http import Request, Response
from ocgate.metrics import GatewayMetrics, LiveState, parse_listen_address, serve_metrics
from ocgate.radius import AccountingSession, RadiusResult
from ocgate.session import Ipv4Pool, Ipv6Pool, MemorySessionStore, Session
from ocgate.tls import build_server_context, load_credentials, translate_priorities
from ocgate.tun import TunDevice, configure_tun, open_tun

if TYPE_CHECKING:
    from ocgate.nvm._collector import LeasePublisher
    from ocgate.nvm._serve import NvmService

__all__ = ["Gateway"]

log = logging.getLogger("ocgate")

# Keys that only take effect at start-up (sockets, process); a reload keeps the running values.
_STATIC_KEYS = (
    "listen_host",
    "tcp_port",
    "udp_port",
    "udp_listen_host",
    "socket_file",
    "occtl_socket_file",
    "use_occtl",
    "pid_file",
    "run_as_user",
    "run_as_group",
    "metrics_listen",
    "device",
)
_MAINTENANCE_PERIOD = 5.0
PSK_EXPORTER_LABEL = b"EXPORTER-openconnect-psk"  # anyconnect-protocol.md §9.3
_COOKIE_SLACK = 15  # ocserv keeps a cookie cookie-timeout + 15 s after its tunnel ends.
_CONNECT_PATHS = frozenset({"/CSCOSSLC/tunnel", "CSCOSSLC/tunnel"})


class Gateway:
    """Everything shared between client connections."""

    def __init__(self, config: Config) -> None:
        self.store = MemorySessionStore()
        self.pool4: Ipv4Pool | None = None
        self.pool6: Ipv6Pool | None = None
        self._retired_pools: list[Ipv4Pool | Ipv6Pool] = []
        self.tunnels: dict[str, Tunnel] = {}
        self.connections: set[ClientConnection] = set()
        self.bans = BanTable(BanPolicy())
        self.metrics = GatewayMetrics(self._live_state)  # Reads the state above at once.
        self.stats = ServerStats(started=time.time(), last_reset=time.time())
        self.control: ControlService | None = None
        self.dtls_port: DtlsPort | None = None
        self.nvm: NvmService | None = None
        self.leases: LeasePublisher | None = None
        self._servers: list[asyncio.Server] = []
        self._maintenance: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._ids = itertools.count(1)
        self.accounting: SessionAccounting | None = None
        self._next_accept = 0.0
        self._load(config)

    def _load(self, config: Config) -> None:
        """Build everything that depends on the configuration (at start-up and on reload).

        :raises ConfigError: the configuration cannot be served (bad certificate, no password file);
            nothing has been changed then.
        """
        policy = translate_priorities(
            config.tls_priorities, cisco_client_compat=config.cisco_client_compat
        )
        tls_context = build_server_context(
            cert_files=config.server_cert, key_files=config.server_key, policy=policy
        )
        credentials = load_credentials(config.server_cert[0])
        backends = build_auth_backends(config)
        accounting = build_accounting(config)
        cert_mode = cert_request_mode(config)
        if cert_mode is not CertRequest.IGNORE and config.ca_cert is not None:
            configure_client_cert_request(
                tls_context, required=cert_mode is CertRequest.REQUIRE, ca_file=config.ca_cert
            )
        for warning in policy.warnings:
            log.warning("event=config-warning %s", warning)
        self.config = config
        self.tls_context = tls_context
        self.credentials = credentials
        self.backends = backends
        if accounting is not None and self.accounting is None:
            self.accounting = SessionAccounting(
                accounting, stats_report_time=config.stats_report_time
            )
        self.bans.policy = _ban_policy(config)
        self._load_pools(config)
        wants_menu = config.select_group or config.default_select_group or config.auto_select_group
        self.login_services = LoginServices(
            config=config,
            backends=backends,
            groups=GroupMenu(config, backends.file_groups()) if wants_menu else None,
            is_banned=self.is_banned,
            on_auth_failure=self._wrong_password,
            store=self.store,
            credentials=credentials,
            clock=time.monotonic,
            count_connected=self._count_connected,
            end_session=self.end_session,
            on_login=self._count_login,
        )

    def _load_pools(self, config: Config) -> None:
        """Keep a pool whose network is unchanged; retire a replaced one until its leases return."""
        if self.pool4 is None or config.ipv4_network != self.pool4.network:
            if self.pool4 is not None:
                self._retired_pools.append(self.pool4)
            self.pool4 = (
                Ipv4Pool(config.ipv4_network, predictable=config.predictable_ips)
                if config.ipv4_network is not None
                else None
            )
        if self.pool6 is None or config.ipv6_network != self.pool6.network:
            if self.pool6 is not None:
                self._retired_pools.append(self.pool6)
            self.pool6 = (
                Ipv6Pool(
                    config.ipv6_network,
                    config.ipv6_subnet_prefix,
                    predictable=config.predictable_ips,
                )
                if config.ipv6_network is not None
                else None
            )

    def reload(self) -> bool:
        """Re-read the configuration, password file and certificates (SIGHUP, ``ctl reload``).

        New logins and tunnels see the new settings; running tunnels keep theirs. A broken
        configuration leaves the running one in place and is reported.
        """
        source = self.config.source
        try:
            config = load_config(source)
            for key in _STATIC_KEYS:
                if getattr(config, key) != getattr(self.config, key):
                    log.warning(
                        "event=reload-ignored key=%s reason='needs a restart'",
                        key.replace("_", "-"),
                    )
                    config = dataclasses.replace(config, **{key: getattr(self.config, key)})
            self._load(config)
        except (ConfigError, OSError) as exc:
            log.error("event=reload-failed config=%s reason=%r", source, str(exc))
            return False
        for warning in config.warnings:
            log.warning("event=config-warning %s", warning)
        log.info("event=reloaded config=%s", source)
        return True

    # Lifecycle ------------------------------------------------------------------------------------

    async def start(self, *, request_stop: Callable[[], None] = lambda: None) -> None:
        loop = asyncio.get_running_loop()
        # The collector first: a client's flows may arrive as soon as its tunnel is up.
        await self._start_nvm()
        host = self.config.listen_host
        server = await loop.create_server(
            lambda: ClientConnection(self),
            host=host,
            port=self.config.tcp_port,
            reuse_address=True,
            family=socket.AF_UNSPEC,
            backlog=512,
        )
        self._servers.append(server)
        for sock in server.sockets:
            log.info("event=listening proto=tcp address=%s", sock.getsockname()[:2])
        if self.config.metrics_listen:
            mhost, mport = parse_listen_address(self.config.metrics_listen)
            self._servers.append(await serve_metrics(mhost, mport, self.metrics.render))
            log.info("event=listening proto=metrics address=%s", (mhost, mport))
        if self.config.udp_port is not None:
            # Listen before any CONNECT reply: openconnect gives up on DTLS for the whole session
            # if its first ClientHello meets a closed port (anyconnect-protocol.md §9.1).
            self.dtls_port = DtlsPort()
            await self.dtls_port.start(
                self.config.udp_listen_host or self.config.listen_host, self.config.udp_port
            )
        if self.config.use_occtl:
            self.control = ControlService(self, request_stop=request_stop)
            await self.control.start(self.config.occtl_socket_file)
        self._maintenance = loop.create_task(self._maintain())

    async def _start_nvm(self) -> None:
        """The NVM collector runs in this process when ``nvm-listen``/``nvm-dtls-listen`` is set.

        Every tunnel's addresses are published to it as lease history, so a flow from a VPN
        address is attributed to the user who held that address at the time.
        """
        from ocgate.nvm._collector import LeasePublisher
        from ocgate.nvm._config import nvm_configured
        from ocgate.nvm._serve import start_embedded_collector

        if not nvm_configured(self.config):
            return
        self.leases = LeasePublisher()
        self.nvm = await start_embedded_collector(self.config, lease_events=self.leases)

    async def stop(self) -> None:
        """Stop accepting, tell every client, remove every TUN device."""
        if self.dtls_port is not None:
            self.dtls_port.close()
        for server in self._servers:
            server.close()
        if self._maintenance is not None:
            self._maintenance.cancel()
        for conn in list(self.connections):
            conn.close()
        for server in self._servers:
            await server.wait_closed()
        if self.nvm is not None:
            await self.nvm.close()
        if self.control is not None:
            await self.control.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.occtl_socket_file)

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(_MAINTENANCE_PERIOD)
            for session in self.store.expire(time.monotonic()):
                log.info("event=session-expired user=%r session=%s", session.username, session.sid)
                tunnel = self.tunnels.get(session.sid)
                if tunnel is not None:  # Past its session-timeout while connected.
                    tunnel.close("session expired", end_session=True, notify=True)
                else:
                    self._release(session, "session expired")
            self.bans.expire(time.monotonic())

    # Bans (ocserv-compatibility §4.9) -------------------------------------------------------------

    def is_banned(self, address: str) -> bool:
        """Whether ``address`` is banned now (its connections and logins are refused)."""
        return self.bans.is_banned(address, time.monotonic())

    def admit(self, address: str) -> float | None:
        """A new TCP connection from ``address``: ``None`` to close it (banned), else the delay in
        seconds before serving it (``rate-limit-ms`` paces new connections)."""
        now = time.monotonic()
        if self.bans.is_banned(address, now):
            log.info("event=connection-refused remote=%s reason='address is banned'", address)
            return None
        self._add_points(address, self.bans.policy.points_connection, "connection")
        rate = self.config.rate_limit_ms / 1000
        if rate <= 0:
            return 0.0
        slot = max(now, self._next_accept)
        self._next_accept = slot + rate
        return slot - now

    def _add_points(self, address: str, points: int, why: str) -> None:
        was_banned = self.bans.is_banned(address, time.monotonic())
        if self.bans.add_points(address, points, time.monotonic()) and not was_banned:
            self.metrics.bans.inc()
            log.warning(
                "event=address-banned remote=%s reason=%s ban_time=%d",
                address,
                why,
                self.bans.policy.ban_time,
            )

    def _wrong_password(self, address: str) -> None:
        self._add_points(address, self.bans.policy.points_wrong_password, "wrong-password")

    def unban(self, address: str) -> bool:
        """Remove ``address`` from the ban list (``ocgate ctl unban ip``)."""
        found = self.bans.unban(address)
        if found:
            log.info("event=address-unbanned remote=%s", address)
        return found

    def ban_entries(self) -> list[BanInfo]:
        """Every scored or banned address (``show ip bans`` / ``show ip ban points``)."""
        now, wall = time.monotonic(), time.time()
        return [
            BanInfo(
                ip=entry.address,
                score=entry.score,
                expires=None if entry.banned_until is None else wall + entry.banned_until - now,
            )
            for entry in self.bans.entries(now)
        ]

    # Sessions -------------------------------------------------------------------------------------

    def session_config(self, session: Session) -> Config:
        """The session's effective configuration (per-user/group files, RADIUS)."""
        settings = session.extra.get("settings")
        return settings.config if isinstance(settings, SessionSettings) else self.config

    def _count_connected(self, username: str) -> int:
        return sum(1 for t in self.tunnels.values() if t.session.username == username)

    def end_session(self, session: Session, reason: str) -> None:
        """End ``session`` for good: close its tunnel, forget its cookie, release its leases."""
        tunnel = self.tunnels.get(session.sid)
        if tunnel is not None:
            tunnel.close(reason, end_session=True, notify=True)
            return  # _tunnel_closed finishes the job.
        self.store.invalidate(session)
        self._release(session, reason)
        log.info(
            "event=session-ended user=%r session=%s reason=%r",
            session.username,
            session.sid,
            reason,
        )

    def _release(self, session: Session, reason: str = "session ended") -> None:
        if self.accounting is not None:
            self.accounting.session_ended(session.sid, reason)
        # Leases go back to the pool of their own family that owns them (retired ones too).
        if session.ipv4 is not None:
            for pool4 in (self.pool4, *self._retired_pools):
                if isinstance(pool4, Ipv4Pool) and pool4.owns(session.ipv4):
                    pool4.release(session.ipv4)
                    break
        if session.ipv6 is not None:
            for pool6 in (self.pool6, *self._retired_pools):
                if isinstance(pool6, Ipv6Pool) and pool6.owns(session.ipv6):
                    pool6.release(session.ipv6)
                    break
        session.ipv4 = None
        session.ipv6 = None

    def connection_opened(self, conn: ClientConnection) -> None:
        self.connections.add(conn)

    def connection_closed(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)

    # CONNECT --------------------------------------------------------------------------------------

    async def handle_connect(self, conn: ClientConnection, request: Request) -> None:
        """Validate the cookie, lease addresses, create the TUN device and switch to CSTP."""
        if request.target.split("?", 1)[0] not in _CONNECT_PATHS:
            conn.respond(Response(404, "Not Found", (), b"", close=True))
            return
        now = time.monotonic()
        try:
            session = self.store.lookup(request.cookies().get("webvpn", ""), now)
        except InvalidCookie as exc:
            log.warning("event=connect-refused remote=%s reason=%r", conn.remote, str(exc))
            conn.respond(Response(401, "Cookie is not acceptable", (), b"", close=True))
            return
        old = self.tunnels.get(session.sid)
        if old is not None:
            old.close("replaced by a reconnect")  # The session and its leases carry over.
        limit = self.config.max_clients
        if limit and len(self.tunnels) >= limit:
            self._refuse(conn, "maximum number of clients reached")
            return
        try:
            offer = self._dtls_offer(conn, request)
            plan = self._plan(session, request, now, offer)
            tun = await asyncio.to_thread(self._create_tun, plan)
        except (ResourceError, OSError, OcgateError) as exc:
            log.error(
                "event=connect-failed user=%r session=%s reason=%r",
                session.username,
                session.sid,
                str(exc),
            )
            self._refuse(conn, str(exc))
            return
        meta = TunnelMeta.from_request(
            next(self._ids), request, conn.remote, conn.local, time.time()
        )
        if self.config.connect_script:
            env = self._script_env("connect", session, plan, tun.name, meta)
            if await run_script(self.config.connect_script, env) != 0:
                self.metrics.script_failures.labels(script="connect").inc()
                tun.close()
                log.warning(
                    "event=connect-refused user=%r session=%s reason='connect-script failed'",
                    session.username,
                    session.sid,
                )
                self.end_session(session, "connect-script refused the session")
                self._refuse(conn, "connect-script refused the session")
                return
        if conn.tunnel is not None or conn.closed_by_peer():
            tun.close()
            return
        self._start_tunnel(conn, session, plan, tun, meta, offer)

    def _refuse(self, conn: ClientConnection, reason: str) -> None:
        conn.respond(Response(503, "Service Unavailable", (("X-Reason", reason),), b"", close=True))

    def _dtls_offer(self, conn: ClientConnection, request: Request) -> DtlsOffer | None:
        """The DTLS mode for this CONNECT (anyconnect-protocol.md §9), or None for CSTP only."""
        if self.dtls_port is None:
            return None
        config = self.config
        headers = {name: value for name, value in reversed(request.headers)}
        return negotiate_dtls(
            headers,
            psk_enabled=config.dtls_psk,
            legacy_enabled=config.dtls_legacy,
            tls_cipher_hint=conn.tls_cipher_name() if config.match_tls_dtls_ciphers else None,
            random_bytes=os.urandom,
            psk=conn.tls_exporter(PSK_EXPORTER_LABEL, 32),
        )

    def _plan(
        self, session: Session, request: Request, now: float, offer: DtlsOffer | None
    ) -> TunnelPlan:
        return plan_tunnel(
            config=self.session_config(session),
            session=session,
            request=request,
            now=now,
            offer=offer,
            pool4=self.pool4,
            pool6=self.pool6,
            sessions=self.store.sessions(),
        )

    def _create_tun(self, plan: TunnelPlan) -> TunDevice:
        tun = open_tun(self.config.device)
        try:
            configure_tun(
                tun.name,
                mtu=plan.mtu,
                local4=self.pool4.server_address if self.pool4 is not None and plan.ipv4 else None,
                peer4=plan.ipv4,
                local6=self.pool6.server_address if self.pool6 is not None and plan.ipv6 else None,
                peer6=plan.ipv6,
            )
        except BaseException:
            tun.close()
            raise
        return tun

    def _start_tunnel(
        self,
        conn: ClientConnection,
        session: Session,
        plan: TunnelPlan,
        tun: TunDevice,
        meta: TunnelMeta,
        offer: DtlsOffer | None,
    ) -> None:
        config = self.session_config(session)
        conn.respond(Response(200, "CONNECTED", tuple(connect_headers(config, plan)), b""))
        tls, transport, initial = conn.take_over_for_tunnel()
        now = time.monotonic()
        cstp = CstpConnection(
            now=now,
            dpd=plan.dpd,
            keepalive=config.keepalive,
            idle_timeout=plan.idle_timeout,
            session_deadline=session.session_deadline,
        )
        tunnel = Tunnel(
            session=session,
            tun=tun,
            cstp=cstp,
            tls=tls,
            transport=transport,
            on_closed=self._tunnel_closed,
            plan=plan,
            meta=meta,
        )
        conn.tunnel = tunnel
        self.tunnels[session.sid] = tunnel
        if offer is not None and self.dtls_port is not None:
            self._attach_dtls(tunnel, offer, self.dtls_port)
        session.device = tun.name
        session.remote_addr = conn.remote
        session.user_agent = meta.user_agent or session.user_agent
        self.store.mark_connected(session, now, tunnel_id=id(tunnel))
        log.info(
            "event=tunnel-up user=%r session=%s device=%s ipv4=%s ipv6=%s mtu=%d tls=%s remote=%s",
            session.username,
            session.sid,
            tun.name,
            plan.ipv4,
            plan.ipv6,
            plan.mtu,
            tls.cipher_description(),
            conn.remote,
        )
        if self.leases is not None:
            # NVM flow times have whole-second precision: cover the whole second the tunnel
            # came up in (and, below, the one it went down in).
            started = float(math.floor(time.time()))
            for address in (plan.ipv4, plan.ipv6.network_address if plan.ipv6 else None):
                if address is not None:
                    self.leases.lease_started(session.username, session.sid, str(address), started)
        self.stats.tunnel_up(plan.mtu)
        if self.control is not None:
            self.control.publish("connect", tunnel)
        if self.accounting is not None:
            self._accounting_up(session, tunnel, conn.local)
        tunnel.start(initial)

    def _accounting_up(self, session: Session, tunnel: Tunnel, local: str) -> None:
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

        def live() -> tuple[int, int, int, int]:
            c = tunnel.counters()
            return (c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets)

        interim = radius.interim_interval if radius is not None else None
        self.accounting.tunnel_up(session.sid, info, live, interim_interval=interim)

    def _attach_dtls(self, tunnel: Tunnel, offer: DtlsOffer, port: DtlsPort) -> None:
        mode = offer.mode
        label = "psk" if isinstance(mode, PskMode) else "legacy"
        channel = DtlsChannel(
            mode=mode,
            session_sid=tunnel.session.sid,
            dpd=tunnel.plan.dpd,
            switch_to_tcp_timeout=self.config.switch_to_tcp_timeout,
            mtu=tunnel.plan.mtu,
            mtu_discovery=self.config.try_mtu_discovery,
            on_packets=tunnel.write_packets,
            on_established=lambda _: self.metrics.dtls_handshakes.labels(mode=label).inc(),
            on_activity=tunnel.note_activity,
            on_timer_change=tunnel.rearm_timer,
        )
        tunnel.attach_dtls(channel)
        port.offer(mode.app_id if isinstance(mode, PskMode) else mode.session_id, channel)

    def _tunnel_closed(self, tunnel: Tunnel, reason: str, end_session: bool) -> None:
        session = tunnel.session
        if self.leases is not None:
            self.leases.lease_ended(session.username, session.sid, None, math.ceil(time.time()))
        if tunnel.dtls is not None and self.dtls_port is not None:
            self.dtls_port.forget(tunnel.dtls)
        if self.tunnels.get(session.sid) is tunnel:
            del self.tunnels[session.sid]
        log.info(
            "event=tunnel-down user=%r session=%s device=%s reason=%r rx_bytes=%d tx_bytes=%d",
            session.username,
            session.sid,
            tunnel.tun.name,
            reason,
            tunnel.rx_bytes,
            tunnel.tx_bytes,
        )
        if self.config.disconnect_script:
            env = self._script_env("disconnect", session, tunnel.plan, tunnel.tun.name, tunnel.meta)
            env["STATS_BYTES_IN"] = str(tunnel.rx_bytes)
            env["STATS_BYTES_OUT"] = str(tunnel.tx_bytes)
            env["STATS_DURATION"] = str(int(time.time() - tunnel.meta.connected_at))
            self._background(self._disconnect_script(env))
        counters = tunnel.counters()
        if self.accounting is not None:
            self.accounting.tunnel_down(
                session.sid,
                (counters.rx_bytes, counters.tx_bytes, counters.rx_packets, counters.tx_packets),
            )
        self.metrics.tunnel_closed(counters, reason)
        duration = time.time() - tunnel.meta.connected_at
        self.stats.tunnel_down(duration, reason, counters.rx_bytes, counters.tx_bytes)
        if self.control is not None:
            self.control.publish("disconnect", tunnel, reason)
        if end_session:
            self.store.invalidate(session)
            self._release(session, reason)
        else:
            # A replaced tunnel's late teardown must not disconnect its successor (ocserv #706); the
            # store ignores a tunnel_id that is no longer the session's.
            self.store.mark_disconnected(
                session,
                time.monotonic(),
                self.config.cookie_timeout + _COOKIE_SLACK,
                tunnel_id=id(tunnel),
            )

    def _script_env(
        self, reason: str, session: Session, plan: TunnelPlan, device: str, meta: TunnelMeta
    ) -> dict[str, str]:
        ctx = ScriptContext(
            reason=reason,
            tunnel_id=meta.id,
            username=session.username,
            groupname=session.group or "",
            hostname=session.hostname or "",
            device=device,
            user_agent=meta.user_agent,
            device_type=meta.device_type,
            device_platform=meta.platform,
            remote_ip=meta.remote_ip,
            local_ip=meta.local_ip,
            ipv4=plan.ipv4,
            server_ipv4=self.pool4.server_address if self.pool4 is not None else None,
            ipv6=plan.ipv6,
            server_ipv6=self.pool6.server_address if self.pool6 is not None else None,
        )
        return script_environment(self.session_config(session), ctx)

    async def _disconnect_script(self, env: dict[str, str]) -> None:
        assert self.config.disconnect_script is not None
        if await run_script(self.config.disconnect_script, env) != 0:
            self.metrics.script_failures.labels(script="disconnect").inc()

    def _count_login(self, result: str, reason: str) -> None:
        self.metrics.logins.labels(result=result, reason=reason).inc()
        if result != "success":
            self.stats.login_failed()

    def _live_state(self) -> LiveState:
        sessions = self.store.sessions()
        now = time.monotonic()
        return LiveState(
            tunnels=[t.counters() for t in self.tunnels.values()],
            sessions_disconnected=sum(1 for s in sessions if not s.connected),
            banned_addresses=sum(1 for e in self.bans.entries(now) if e.banned_until is not None),
        )

    def _background(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Introspection --------------------------------------------------------------------------------

    def stats_line(self) -> str:
        sessions = self.store.sessions()
        leases4 = self.pool4.in_use if self.pool4 is not None else 0
        leases6 = self.pool6.in_use if self.pool6 is not None else 0
        connected = sum(1 for s in sessions if s.connected)
        tasks = len(asyncio.all_tasks())
        return (
            f"stats sessions={len(sessions)} connected={connected} leases4={leases4} "
            f"leases6={leases6} tunnels={len(self.tunnels)} tasks={tasks}"
        )


def _ban_policy(config: Config) -> BanPolicy:
    return BanPolicy(
        max_score=config.max_ban_score,
        reset_time=config.ban_reset_time,
        ban_time=config.ban_time,
        points_wrong_password=config.ban_points_wrong_password,
        points_connection=config.ban_points_connection,
        points_kkdcp=config.ban_points_kkdcp,
    )
