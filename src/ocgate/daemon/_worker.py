"""A worker: TLS, HTTP, CSTP and DTLS for the clients the supervisor hands it.

A worker runs as ``run-as-user`` with no capabilities, ``no_new_privs`` and (``isolate-workers``)
a seccomp allow-list, before it reads a single client byte. What it cannot do itself it asks for
over its two channels (:mod:`ocgate.ipc`):

* the **authentication service** decides logins (the worker forwards each pre-tunnel request to
  that connection's login dialog there), hands out the session and its leases at CONNECT, and
  hears about tunnels going up and down;
* the **supervisor** creates TUN devices (the descriptor comes back over the channel), runs
  connect/disconnect scripts, steers DTLS hellos to the worker that owns them, and gathers
  ``occtl`` snapshots and metrics.

State owned here: the client connections, the tunnels (each with its TUN descriptor, CSTP core
and DTLS channel) and this worker's steered UDP sockets. A worker that dies takes its tunnels with
it (the kernel removes their TUN devices as the descriptors close) and nothing else: the sessions
live in the authentication service, and the clients come back with their cookies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import itertools
import logging
import os
import socket
import time
from collections.abc import Coroutine, Sequence
from typing import Literal

from OpenSSL import SSL

from ocgate import ipc
from ocgate.aggauth import DeviceId
from ocgate.compress import CompressionMethod, PacketCompression
from ocgate.config import Config
from ocgate.control import UserInfo
from ocgate.cstp import CstpConnection
from ocgate.daemon._client import ClientConnection
from ocgate.daemon._closer import close_later
from ocgate.daemon._dtls import DtlsChannel
from ocgate.daemon._latency import LatencySampler
from ocgate.daemon._offload import Offload
from ocgate.daemon._setup import TUNNEL_IDS_PER_WORKER, server_addresses
from ocgate.daemon._tunnel import Tunnel, TunnelMeta
from ocgate.daemon._udp import MODE_LEGACY, MODE_PSK, DtlsPort, tag_id
from ocgate.daemon._wire import load_session
from ocgate.dtls import DtlsOffer, PskMode, negotiate_dtls
from ocgate.errors import OcgateError, ResourceError
from ocgate.gateway import (
    STRAP_PUBKEY,
    STRAP_VERIFY,
    ScriptContext,
    SessionSettings,
    TunnelPlan,
    client_wants_ipv6,
    connect_headers,
    plan_tunnel,
    previous_addresses,
    script_environment,
    tunnel_filter,
)
from ocgate.http import Request, Response
from ocgate.ipc import messages as m
from ocgate.metrics import GatewayMetrics, LiveState
from ocgate.session import Session
from ocgate.tls import TlsEndpoint
from ocgate.tun import TunDevice

__all__ = ["Worker"]

log = logging.getLogger("ocgate")

PSK_EXPORTER_LABEL = b"EXPORTER-openconnect-psk"  # anyconnect-protocol.md §9.3
_CONNECT_PATHS = frozenset({"/CSCOSSLC/tunnel", "CSCOSSLC/tunnel"})
_COUNTERS_PERIOD = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class _NewTunnel:
    """What a CONNECT prepared for its tunnel, carried through the steps that follow."""

    plan: TunnelPlan
    tun: TunDevice
    meta: TunnelMeta
    offer: DtlsOffer | None


class Worker:
    """Everything one worker process shares between its client connections."""

    def __init__(
        self,
        *,
        index: int,
        generation: int,
        config: Config,
        tls_context: SSL.Context,
        supervisor: ipc.Channel,
        auth: ipc.Channel,
        cookie_key: bytes,
    ) -> None:
        self.index = index
        self.config = config
        self.tls_context = tls_context
        self.supervisor = supervisor
        self.auth = auth
        self.tunnels: dict[str, Tunnel] = {}
        self.connections: set[ClientConnection] = set()
        self.metrics = GatewayMetrics(self._live_state)
        self.dtls_port: DtlsPort | None = None
        self._cookie_key = cookie_key
        self._conn_ids = itertools.count(1)
        self._ids = itertools.count(generation * TUNNEL_IDS_PER_WORKER + 1)
        self._tasks: set[asyncio.Task[object]] = set()
        self._counters_task: asyncio.Task[None] | None = None
        self._offload: Offload | None = None
        self._offload_tried = False
        self.stats: dict[str, float] = {
            "sessions_total": 0, "sessions_handled": 0, "timed_out": 0, "timed_out_idle": 0,
            "closed_due_to_error": 0, "session_time_total": 0.0, "session_time_max": 0.0,
            "min_mtu": 0, "max_mtu": 0, "rx": 0, "tx": 0,
        }  # fmt: skip
        self.latency = LatencySampler(self.stats)
        """occtl's ``Median latency``/``STDEV latency`` (see ``daemon/_latency.py``)."""
        self.server4, self.server6 = server_addresses(config)
        self.draining_until: float | None = None
        """Set by the supervisor's ``Drain``: new logins and CONNECTs are refused (so clients
        go to another node behind the balancer); a reload does not clear it."""

    def drain(self, deadline: float) -> None:
        self.draining_until = deadline
        log.info("event=draining node=%s tunnels=%d", self.config.node_name, len(self.tunnels))

    def _draining_refusal(self, conn: ClientConnection, what: str) -> Response | None:
        """The answer to a login request or CONNECT while the node drains, else ``None``."""
        if self.draining_until is None:
            return None
        log.info("event=%s-refused remote=%s reason='node draining'", what, conn.remote)
        reason = f"gateway {self.config.node_name} is draining: connect again to reach another node"
        return Response(503, "Service Unavailable", (("X-Reason", reason[:200]),), b"", close=True)

    def next_conn_id(self) -> int:
        return next(self._conn_ids)

    def reconfigure(self, config: Config, tls_context: SSL.Context) -> None:
        """A reload: new connections and tunnels see it; running tunnels keep their settings."""
        self.config = config
        self.tls_context = tls_context
        self.server4, self.server6 = server_addresses(config)

    async def start(self, udp_sockets: list[socket.socket]) -> None:
        if udp_sockets:
            self.dtls_port = DtlsPort(
                worker=self.index, cookie_key=self._cookie_key, steer=self._steer
            )
            await self.dtls_port.adopt(udp_sockets)
        self._counters_task = asyncio.get_running_loop().create_task(self._report_counters())

    async def stop(self) -> None:
        """Tell every client, remove every TUN device."""
        if self._counters_task is not None:
            self._counters_task.cancel()
        for conn in list(self.connections):
            conn.close()
        if self.dtls_port is not None:
            self.dtls_port.close()
        if self._offload is not None:
            self._offload.close()
            self._offload = None
        await asyncio.sleep(0)

    def _data_path_thread(self) -> Offload | None:
        """The worker's data-path thread, started with the first tunnel."""
        if self._offload is None and not self._offload_tried:
            self._offload_tried = True
            self._offload = Offload.start()
        return self._offload

    def adopt_connection(self, fd: int, gate_token: int = 0, *, proxied: bool = False) -> None:
        """A TCP connection the supervisor accepted; ``gate_token`` names it at the accept gate;
        ``proxied``: it starts with a PROXY protocol header (``listen-proxy-proto``)."""
        sock = socket.socket(fileno=fd)
        loop = asyncio.get_running_loop()
        protocol = ClientConnection(self, gate_token, proxied=proxied)

        async def adopt() -> None:
            try:
                await loop.connect_accepted_socket(lambda: protocol, sock)
            except OSError:  # Gone before it was adopted: the gate must not count it forever.
                sock.close()
                self.gate_done(protocol)

        self._background(adopt())

    # Calls into the other processes ---------------------------------------------------------------

    async def login(self, conn: ClientConnection, request: Request) -> Response:
        """A pre-tunnel request: answered by the connection's login dialog in the auth service."""
        refusal = self._draining_refusal(conn, "login")
        if refusal is not None:
            return refusal
        conn.asked_auth = True
        try:
            reply: m.LoginResponse = await self.auth.call(
                m.LoginRequest(
                    conn=conn.conn_id,
                    request=request,
                    remote=conn.remote[:64],
                    local=conn.local[:64],
                    peer_chain=list(conn.peer_chain()[:16]),
                    vhost=conn.vhost().vhost_name or "",
                ),
                timeout=120.0,
            )
        except (ipc.ChannelClosed, ipc.RemoteFailure, TimeoutError) as exc:
            log.error("event=login-unavailable remote=%s reason=%r", conn.remote, str(exc))
            return Response(503, "Service Unavailable", (), b"", close=True)
        return Response(reply.status, reply.reason, tuple(reply.headers), reply.body, reply.close)

    def connection_opened(self, conn: ClientConnection) -> None:
        self.connections.add(conn)

    async def admit_client(self, conn: ClientConnection, address: str) -> float | None:
        """``listen-proxy-proto``: the accept gate's verdict on the client a PROXY protocol
        header named (bans, per-source cap, rate slot).

        :returns: the delay before the connection may go on, or ``None``: refused (the
            supervisor logged why) or no verdict to be had; close it.
        """
        try:
            reply: m.Admitted = await self.supervisor.call(
                m.RealAddress(token=conn.gate_token, address=address[:64]), timeout=30.0
            )
        except ipc.RemoteFailure:
            return None
        except (ipc.ChannelClosed, TimeoutError) as exc:
            log.error("event=accept-gate-unavailable remote=%s reason=%r", address, str(exc))
            return None
        return reply.delay

    def gate_done(self, conn: ClientConnection) -> None:
        """``conn`` has its tunnel or is closed: the accept gate counts it no more."""
        if conn.gate_token:
            self._tell_supervisor(m.ConnectionDone(token=conn.gate_token))
            conn.gate_token = 0

    def connection_closed(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        self.gate_done(conn)
        if conn.asked_auth and conn.tunnel is None:
            self._tell_auth(m.ConnectionGone(conn=conn.conn_id))

    def _tell_auth(self, message: m.Message) -> None:
        with contextlib.suppress(ipc.ChannelClosed):
            self.auth.send(message)

    def _tell_supervisor(self, message: m.Message) -> None:
        with contextlib.suppress(ipc.ChannelClosed):
            self.supervisor.send(message)

    def _steer(self, owner: int, client: tuple[str, int], data: bytes) -> None:
        self._tell_supervisor(
            m.SteerDatagram(owner=owner, host=client[0], port=client[1], data=data)
        )

    # CONNECT --------------------------------------------------------------------------------------

    def session_config(self, session: Session) -> Config:
        settings = session.extra.get("settings")
        return settings.config if isinstance(settings, SessionSettings) else self.config

    def _servers(
        self, session: Session
    ) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
        """The gateway's tunnel addresses for ``session``: the first hosts of its pools (its
        vhost's, or its own per-user or per-group network's)."""
        config = self.session_config(session)
        if config.vhost_name is None and _networks(config) == _networks(self.config):
            return self.server4, self.server6
        return server_addresses(config)

    def _own_networks(self, session: Session) -> tuple[str | None, str | None]:
        """The session's pool networks where they are its own (not its vhost's), for OpenTun."""
        config = self.session_config(session)
        host = self.config.vhost(config.vhost_name)
        own4, own6 = config.ipv4_network, config.ipv6_network
        return (
            str(own4) if own4 is not None and own4 != host.ipv4_network else None,
            str(own6) if own6 is not None and own6 != host.ipv6_network else None,
        )

    async def handle_connect(self, conn: ClientConnection, request: Request) -> None:
        """Claim the session, create the TUN device, run the connect-script, switch to CSTP."""
        if request.target.split("?", 1)[0] not in _CONNECT_PATHS:
            conn.respond(Response(404, "Not Found", (), b"", close=True))
            return
        refusal = self._draining_refusal(conn, "connect")
        if refusal is not None:
            conn.respond(refusal)
            return
        tunnel_id = next(self._ids)
        session = await self._claim_session(conn, request, tunnel_id)
        if session is None:
            return
        # The client may leave at any step (its connection's task is not cancelled meanwhile):
        # what the steps before took is then given back.
        if conn.closed_by_peer():
            self._client_left(session, tunnel_id, None)
            return
        prepared = await self._prepare_tunnel(conn, request, session, tunnel_id)
        if prepared is None:
            return
        plan, tun, offer = prepared
        meta = TunnelMeta.from_request(tunnel_id, request, conn.remote, conn.local, time.time())
        new = _NewTunnel(plan, tun, meta, offer)
        if not await self._connect_script_allows(conn, session, new):
            return
        if conn.tunnel is not None or conn.closed_by_peer():
            self._client_left(session, tunnel_id, new)
            return
        if not await self._announce_tunnel_up(conn, session, new):
            return
        if conn.closed_by_peer():  # sec-mod took the tunnel in: it hears of its end as usual.
            self._client_left(session, tunnel_id, new)
            return
        self._start_tunnel(conn, session, new)

    def _client_left(self, session: Session, tunnel_id: int, new: _NewTunnel | None) -> None:
        """The client closed its connection before its tunnel started: the session waits for a
        reconnect with its cookie. ``new``: the device exists and the connect-script (if any)
        accepted it, so the device goes and the disconnect-script runs, as for a tunnel that
        ends: ocserv's ``remove_proc`` (``src/main.c``) runs it for every client whose
        connect-script returned zero, also one that left while the script ran."""
        if new is not None:
            if self.config.disconnect_script:
                env = self._script_env("disconnect", session, new.plan, new.tun.name, new.meta)
                env.update(STATS_BYTES_IN="0", STATS_BYTES_OUT="0", STATS_DURATION="0")
                self._background(self._run_script("disconnect", env))
            _discard_device(new.tun)
        self._tell_auth(m.TunnelDown(sid=session.sid, tunnel_id=tunnel_id,
                                     reason="client left", end_session=False))  # fmt: skip

    async def _claim_session(
        self, conn: ClientConnection, request: Request, tunnel_id: int
    ) -> Session | None:
        """The session the CONNECT's cookie names, from the auth service with its leases; or
        ``None``: refused, and the client told why."""
        headers = {name: value for name, value in reversed(request.headers)}
        prefer4, prefer6 = previous_addresses(request)
        try:
            granted: m.SessionGranted = await self.auth.call(
                m.ClaimSession(
                    cookie=request.cookies().get("webvpn", "")[:64],
                    tunnel_id=tunnel_id,
                    prefer4=str(prefer4) if prefer4 else None,
                    prefer6=str(prefer6) if prefer6 else None,
                    want6=client_wants_ipv6(headers),
                    remote=conn.remote[:64],
                    peer_chain=list(conn.peer_chain()[:16]),
                    vhost=conn.vhost().vhost_name or "",
                    strap_finished=conn.tls_finished()[:64],
                    strap_verify=_bounded(request.header(STRAP_VERIFY), 256),
                    strap_pubkey=_bounded(request.header(STRAP_PUBKEY), 512),
                )
            )
        except ipc.RemoteFailure as exc:
            reason = str(exc)
            log.warning("event=connect-refused remote=%s reason=%r", conn.remote, reason)
            if "cookie" in reason or "expired" in reason:
                hidden = conn.camouflage.refusal() if conn.camouflage is not None else None
                # With camouflage, the VPN's own refusal would reveal it (ocserv: 405).
                conn.respond(
                    hidden or Response(401, "Cookie is not acceptable", (), b"", close=True)
                )
            else:
                self._refuse(conn, reason)
            return None
        except (ipc.ChannelClosed, TimeoutError) as exc:
            self._refuse(conn, f"authentication service unavailable: {exc}")
            return None
        # From the auth service: trusted. A session without settings of its own gets this
        # worker's configuration object (shared by its tunnels, not a copy per tunnel).
        session = load_session(granted.payload, self.config)
        settings = session.extra.get("settings")
        if isinstance(settings, SessionSettings):
            host = self.config.vhost(settings.config.vhost_name)  # The default host or a vhost.
            if settings.config is not host and settings.config == host:
                # Restored from the store after a restart: an equal copy, shared all the same.
                session.extra["settings"] = dataclasses.replace(settings, config=host)
        return session

    async def _prepare_tunnel(
        self, conn: ClientConnection, request: Request, session: Session, tunnel_id: int
    ) -> tuple[TunnelPlan, TunDevice, DtlsOffer | None] | None:
        """The tunnel's plan, its TUN device (from the supervisor) and DTLS offer; or ``None``:
        the tunnel cannot be had, the auth service and the client told so."""
        try:
            # no-udp (global, per user, per group): no X-DTLS-* headers, no DTLS channel.
            no_udp = self.session_config(session).no_udp
            offer = None if no_udp else self._dtls_offer(conn, request)
            plan = self._plan(session, request, offer)
            tun = await self._open_tun(
                plan,
                _iroutes(session),
                vhost=self.session_config(session).vhost_name or "",
                networks=self._own_networks(session),
            )
        except (ResourceError, OSError, OcgateError, ipc.RemoteFailure, TimeoutError) as exc:
            log.error(
                "event=connect-failed user=%r session=%s reason=%r",
                session.username,
                session.sid,
                str(exc),
            )
            self._tell_auth(m.TunnelDown(sid=session.sid, tunnel_id=tunnel_id,
                                         reason="connect failed", end_session=False))  # fmt: skip
            self._refuse(conn, str(exc))
            return None
        return plan, tun, offer

    async def _connect_script_allows(
        self, conn: ClientConnection, session: Session, new: _NewTunnel
    ) -> bool:
        """Run the ``connect-script``, if any: one that fails ends the session and refuses the
        client (``False``)."""
        if not self.config.connect_script:
            return True
        env = self._script_env("connect", session, new.plan, new.tun.name, new.meta)
        if await self._run_script("connect", env) == 0:
            return True
        _discard_device(new.tun)
        log.warning(
            "event=connect-refused user=%r session=%s reason='connect-script failed'",
            session.username,
            session.sid,
        )
        with contextlib.suppress(ipc.ChannelClosed, ipc.RemoteFailure, TimeoutError):
            await self.auth.call(
                m.EndSession(sid=session.sid, reason="connect-script refused the session")
            )
        self._refuse(conn, "connect-script refused the session")
        return False

    async def _announce_tunnel_up(
        self, conn: ClientConnection, session: Session, new: _NewTunnel
    ) -> bool:
        """Tell the auth service the tunnel is up; ``False``: it would not hear of it, and the
        client is refused."""
        up = m.TunnelUp(
            sid=session.sid,
            tunnel_id=new.meta.id,
            device=new.tun.name,
            remote=conn.remote[:64],
            local=conn.local[:64],
            user_agent=new.meta.user_agent[:4096],
            hostname=new.plan.hostname,
        )
        try:
            await self.auth.call(up)
        except (ipc.RemoteFailure, ipc.ChannelClosed, TimeoutError) as exc:
            _discard_device(new.tun)
            log.info("event=connect-refused user=%r session=%s reason=%r",
                     session.username, session.sid, str(exc))  # fmt: skip
            self._refuse(conn, str(exc))
            return False
        return True

    def _refuse(self, conn: ClientConnection, reason: str) -> None:
        conn.respond(Response(503, "Service Unavailable", (("X-Reason", reason[:200]),), b"",
                              close=True))  # fmt: skip

    def _dtls_offer(self, conn: ClientConnection, request: Request) -> DtlsOffer | None:
        """The DTLS mode for this CONNECT (anyconnect-protocol.md §9), or None for CSTP only."""
        if self.dtls_port is None:
            return None
        config = conn.vhost()
        headers = {name: value for name, value in reversed(request.headers)}
        psk = conn.tls_exporter(PSK_EXPORTER_LABEL, 32)
        offer = negotiate_dtls(
            headers,
            psk_enabled=config.dtls_psk,
            legacy_enabled=config.dtls_legacy,
            tls_cipher_hint=conn.tls_cipher_name() if config.match_tls_dtls_ciphers else None,
            random_bytes=tag_id(self.index, MODE_PSK, os.urandom),
            psk=psk,
        )
        if offer is not None and not isinstance(offer.mode, PskMode):
            # The legacy Session-ID names the mode for the other workers' steering.
            offer = negotiate_dtls(
                headers,
                psk_enabled=config.dtls_psk,
                legacy_enabled=config.dtls_legacy,
                tls_cipher_hint=conn.tls_cipher_name() if config.match_tls_dtls_ciphers else None,
                random_bytes=tag_id(self.index, MODE_LEGACY, os.urandom),
                psk=psk,
            )
        return offer

    def _plan(self, session: Session, request: Request, offer: DtlsOffer | None) -> TunnelPlan:
        return plan_tunnel(
            config=self.session_config(session),
            session=session,
            request=request,
            now=time.time(),
            offer=offer,
            pool4=None,
            pool6=None,
            sessions=(),
        )

    async def _open_tun(
        self,
        plan: TunnelPlan,
        iroutes: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
        *,
        vhost: str = "",
        networks: tuple[str | None, str | None] = (None, None),
    ) -> TunDevice:
        reply, fds = await self.supervisor.call_fds(
            m.OpenTun(
                mtu=plan.mtu,
                peer4=str(plan.ipv4) if plan.ipv4 is not None else None,
                peer6=str(plan.ipv6) if plan.ipv6 is not None else None,
                iroutes=[str(network) for network in iroutes],
                vhost=vhost,
                network4=networks[0],
                network6=networks[1],
            )
        )
        if len(fds) != 1 or not isinstance(reply, m.TunOpened):
            for fd in fds:
                os.close(fd)
            raise ResourceError("the supervisor sent no TUN device")
        os.set_blocking(fds[0], False)
        return TunDevice(fds[0], reply.name)

    async def _run_script(self, kind: Literal["connect", "disconnect"], env: dict[str, str]) -> int:
        try:
            reply: m.ScriptDone = await self.supervisor.call(
                m.RunScript(kind=kind, env=env),
                timeout=60.0,
            )
        except (ipc.ChannelClosed, ipc.RemoteFailure, TimeoutError):
            return 127
        if reply.status != 0:
            self.metrics.script_failures.labels(script=kind).inc()
        return reply.status

    def _start_tunnel(self, conn: ClientConnection, session: Session, new: _NewTunnel) -> None:
        plan, tun, offer = new.plan, new.tun, new.offer
        config = self.session_config(session)
        old = self.tunnels.get(session.sid)
        if old is not None:
            # The session and its leases carry over; the older client is told (ocserv).
            old.close("replaced by a newer connection", notify=True)
        headers = connect_headers(config, plan, secure_renegotiation=conn.secure_renegotiation)
        conn.respond(Response(200, "CONNECTED", tuple(headers), b""))
        tls, transport, initial = conn.take_over_for_tunnel()
        tls.rekey_interval = plan.rekey_time / 2  # ocserv: a rehandshake sooner is refused.
        tunnel = self._new_tunnel(conn, session, new, tls, transport)
        conn.tunnel = tunnel
        self.tunnels[session.sid] = tunnel
        self.gate_done(conn)
        if offer is not None and self.dtls_port is not None:
            self._attach_dtls(tunnel, offer, self.dtls_port)
        session.device = tun.name
        session.remote_addr = conn.remote
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
        stats = self.stats
        stats["sessions_total"] += 1
        stats["min_mtu"] = plan.mtu if not stats["min_mtu"] else min(stats["min_mtu"], plan.mtu)
        stats["max_mtu"] = max(stats["max_mtu"], plan.mtu)
        self._tell_supervisor(m.TunnelEvent(kind="connect", user=self.user_info(tunnel)))
        tunnel.start(initial)

    def _new_tunnel(
        self,
        conn: ClientConnection,
        session: Session,
        new: _NewTunnel,
        tls: TlsEndpoint,
        transport: asyncio.Transport,
    ) -> Tunnel:
        """The tunnel of a CONNECT just answered: its CSTP core, filter, limits and data path."""
        plan, config = new.plan, self.session_config(session)
        now = asyncio.get_running_loop().time()
        deadline = None
        if session.session_deadline is not None:
            deadline = now + (session.session_deadline - time.time())
        cstp = CstpConnection(
            now=now,
            dpd=plan.dpd,
            keepalive=config.keepalive,
            idle_timeout=plan.idle_timeout,
            session_deadline=deadline,
            compression=_compression(plan.cstp_compression, config, plan),
        )
        return Tunnel(
            session=session,
            tun=new.tun,
            cstp=cstp,
            tls=tls,
            transport=transport,
            on_closed=self._tunnel_closed,
            plan=plan,
            meta=new.meta,
            packet_filter=tunnel_filter(config, plan, _iroutes(session)),
            rx_per_sec=config.rx_data_per_sec,
            tx_per_sec=config.tx_data_per_sec,
            offload=self._data_path_thread(),
            receive_tls=conn.data_received,
        )

    def _attach_dtls(self, tunnel: Tunnel, offer: DtlsOffer, port: DtlsPort) -> None:
        mode = offer.mode
        label = "psk" if isinstance(mode, PskMode) else "legacy"
        channel = DtlsChannel(
            mode=mode,
            session_sid=tunnel.session.sid,
            dpd=tunnel.plan.dpd,
            switch_to_tcp_timeout=self.session_config(tunnel.session).switch_to_tcp_timeout,
            mtu=tunnel.plan.mtu,
            mtu_discovery=self.config.try_mtu_discovery,
            on_packets=tunnel.write_packets,
            on_established=lambda _: self.metrics.dtls_handshakes.labels(mode=label).inc(),
            on_activity=tunnel.note_activity,
            on_timer_change=tunnel.rearm_timer,
            rekey_interval=tunnel.plan.rekey_time / 2,
            compression=_compression(
                tunnel.plan.dtls_compression, self.session_config(tunnel.session), tunnel.plan
            ),
            offload=tunnel.offload_side(self._data_path_thread()),
        )
        tunnel.attach_dtls(channel)
        port.offer(mode.app_id if isinstance(mode, PskMode) else mode.session_id, channel)

    def _tunnel_closed(self, tunnel: Tunnel, reason: str, end_session: bool) -> None:
        session = tunnel.session
        if tunnel.dtls is not None and self.dtls_port is not None:
            self.dtls_port.forget(tunnel.dtls)
        if self.tunnels.get(session.sid) is tunnel:
            del self.tunnels[session.sid]
        counters = tunnel.counters()
        log.info(
            "event=tunnel-down user=%r session=%s device=%s reason=%r rx_bytes=%d tx_bytes=%d",
            session.username,
            session.sid,
            tunnel.tun.name,
            reason,
            counters.rx_bytes,
            counters.tx_bytes,
        )
        duration = time.time() - tunnel.meta.connected_at
        if self.config.disconnect_script:
            env = self._script_env("disconnect", session, tunnel.plan, tunnel.tun.name, tunnel.meta)
            env["STATS_BYTES_IN"] = str(counters.rx_bytes)
            env["STATS_BYTES_OUT"] = str(counters.tx_bytes)
            env["STATS_DURATION"] = str(int(duration))
            self._background(self._run_script("disconnect", env))
        self._tell_auth(
            m.TunnelDown(
                sid=session.sid,
                tunnel_id=tunnel.meta.id,
                reason=reason[:4096],
                end_session=end_session,
                rx_bytes=counters.rx_bytes,
                tx_bytes=counters.tx_bytes,
                rx_packets=counters.rx_packets,
                tx_packets=counters.tx_packets,
            )
        )
        self.metrics.tunnel_closed(counters, reason)
        self._count_down(duration, reason, counters.rx_bytes, counters.tx_bytes)
        self._tell_supervisor(
            m.TunnelEvent(kind="disconnect", user=self.user_info(tunnel), reason=reason[:4096])
        )

    def _count_down(self, duration: float, reason: str, rx: int, tx: int) -> None:
        stats = self.stats
        stats["sessions_handled"] += 1
        stats["session_time_total"] += duration
        stats["session_time_max"] = max(stats["session_time_max"], duration)
        stats["rx"] += rx
        stats["tx"] += tx
        if reason in {"session timeout", "session expired"}:
            stats["timed_out"] += 1
        elif reason == "idle timeout":
            stats["timed_out_idle"] += 1
        elif reason in {"protocol error", "TLS failure", "dead peer detected"}:
            stats["closed_due_to_error"] += 1

    def _script_env(
        self, reason: str, session: Session, plan: TunnelPlan, device: str, meta: TunnelMeta
    ) -> dict[str, str]:
        claimed = _device(session)
        ctx = ScriptContext(
            reason=reason,
            tunnel_id=meta.id,
            username=session.username,
            groupname=session.group or "",
            hostname=session.hostname or "",
            device=device,
            user_agent=meta.user_agent,
            device_type=meta.device_type or claimed.device_type,
            device_platform=meta.platform or claimed.platform,
            device_platform_version=claimed.platform_version,
            device_computer_name=claimed.computer_name,
            device_unique_id=claimed.unique_id,
            remote_ip=meta.remote_ip,
            local_ip=meta.local_ip,
            ipv4=plan.ipv4,
            server_ipv4=self._servers(session)[0],
            ipv6=plan.ipv6,
            server_ipv6=self._servers(session)[1],
        )
        return script_environment(self.session_config(session), ctx)

    def _background(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_counters(self) -> None:
        """Live byte counters to the auth service (RADIUS interim accounting)."""
        while True:
            await asyncio.sleep(_COUNTERS_PERIOD)
            if not self.tunnels:
                continue
            rows = []
            for sid, tunnel in self.tunnels.items():
                c = tunnel.counters()
                rows.append(m.TunnelCounters(sid, c.rx_bytes, c.tx_bytes, c.rx_packets,
                                             c.tx_packets))  # fmt: skip
            self._tell_auth(m.CountersUpdate(tunnels=rows))

    # Requests from the supervisor and the auth service --------------------------------------------

    def close_session(self, msg: m.CloseSession) -> None:
        tunnel = self.tunnels.get(msg.sid)
        if tunnel is not None:
            tunnel.close(msg.reason, end_session=msg.end_session, notify=msg.notify)
        elif msg.end_session:
            self._tell_auth(m.TunnelDown(sid=msg.sid, tunnel_id=0, reason=msg.reason,
                                         end_session=True))  # fmt: skip

    def close_tunnels(self, ids: list[int], *, terminate: bool) -> bool:
        found = False
        for tunnel in list(self.tunnels.values()):
            if tunnel.meta.id in ids:
                found = True
                if terminate:
                    log.info("event=admin-terminate session=%s", tunnel.session.sid)
                    tunnel.close("admin terminate", end_session=True, notify=True)
                else:
                    log.info("event=admin-disconnect session=%s", tunnel.session.sid)
                    tunnel.close("admin disconnect")
        return found

    def users(self) -> m.Users:
        tunnels = sorted(self.tunnels.values(), key=lambda t: t.meta.id)
        stats = dict(self.stats)
        stats["tunnels"] = len(self.tunnels)
        stats["tasks"] = len(asyncio.all_tasks())
        for t in self.tunnels.values():
            c = t.counters()
            stats["live_rx"] = stats.get("live_rx", 0) + c.rx_bytes
            stats["live_tx"] = stats.get("live_tx", 0) + c.tx_bytes
        return m.Users(users=[self.user_info(t) for t in tunnels], stats=stats)

    def user_info(self, tunnel: Tunnel) -> UserInfo:
        config = self.session_config(tunnel.session)
        session, plan, meta = tunnel.session, tunnel.plan, tunnel.meta
        counters = tunnel.counters()
        ports = config.restrict_user_to_ports
        server4, server6 = self._servers(session)
        device = _device(session)
        return UserInfo(
            id=meta.id,
            node=self.config.node_name,
            username=session.username,
            groupname=session.group or "",
            vhost=config.vhost_label,
            device=tunnel.tun.name,
            mtu=plan.mtu,
            remote_ip=meta.remote_ip,
            local_device_ip=meta.local_ip,
            ipv4=str(plan.ipv4) if plan.ipv4 else "",
            ptp_ipv4=str(server4) if server4 is not None and plan.ipv4 else "",
            ipv6=str(plan.ipv6.network_address) if plan.ipv6 else "",
            ptp_ipv6=str(server6) if server6 is not None and plan.ipv6 else "",
            user_agent=meta.user_agent,
            rx=counters.rx_bytes,
            tx=counters.tx_bytes,
            dpd=plan.dpd,
            keepalive=config.keepalive,
            hostname=session.hostname or "",
            platform=device.platform or meta.platform,
            platform_version=device.platform_version,
            device_type=device.device_type or meta.device_type,
            computer_name=device.computer_name,
            unique_id=device.unique_id,
            connected_at=meta.connected_at,
            session_started_at=session.created,
            session_id=session.sid,
            tls_ciphersuite=tunnel.tls_description,
            dtls_cipher=tunnel.dtls_description,
            cstp_compression=plan.cstp_compression.value if plan.cstp_compression else "",
            dtls_compression=plan.dtls_compression.value if plan.dtls_compression else "",
            dns=tuple(str(a) for a in config.dns),
            nbns=tuple(str(a) for a in config.nbns),
            split_dns=config.split_dns,
            routes=() if config.route_default else tuple(_route_text(r) for r in config.route),
            no_routes=tuple(_route_text(r) for r in config.no_route),
            iroutes=tuple(_route_text(r) for r in _iroutes(session)),
            restrict_to_routes=tunnel.packet_filter.restricted,
            restrict_to_ports=ports.entries() if ports is not None else (),
            dropped=tuple(tunnel.packet_filter.counts().items()),
        )

    def _live_state(self) -> LiveState:
        return LiveState(tunnels=[t.counters() for t in self.tunnels.values()],
                         sessions_disconnected=0)  # fmt: skip


def _discard_device(tun: TunDevice) -> None:
    """Remove a TUN device no tunnel will use. Closing its last descriptor waits for the kernel
    (RCU grace periods, milliseconds): off the event loop, as a tunnel's own (``Tunnel.close``)."""
    fd = tun.detach()
    if fd >= 0:
        close_later(fd)


def _compression(
    method: CompressionMethod | None, config: Config, plan: TunnelPlan
) -> PacketCompression | None:
    """The channel's compression state; a packet never decompresses beyond the tunnel MTU."""
    if method is None:
        return None
    return PacketCompression(method, no_compress_limit=config.no_compress_limit, limit=plan.mtu)


def _networks(config: Config) -> tuple[object, ...]:
    return config.ipv4_network, config.ipv6_network


def _iroutes(session: Session) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    settings = session.extra.get("settings")
    return settings.iroutes if isinstance(settings, SessionSettings) else ()


def _route_text(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    if isinstance(net, ipaddress.IPv4Network):
        return f"{net.network_address}/{net.netmask}"
    return str(net)


def _bounded(value: str | None, limit: int) -> str | None:
    """A header value for a size-bounded IPC field: one that is too long is not forwarded."""
    return value if value is not None and len(value) <= limit else None


def _device(session: Session) -> DeviceId:
    """What the session's login said of the client's machine (empty fields when nothing)."""
    device = session.extra.get("device")
    return device if isinstance(device, DeviceId) else DeviceId()
