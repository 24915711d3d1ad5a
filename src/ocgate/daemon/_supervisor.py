"""The supervisor: the one process that stays root, and never reads a byte a client sent.

It reads the configuration, binds the listening sockets, starts the authentication service
("sec-mod"), the workers and the NVM collector as fresh interpreters (:mod:`ocgate.daemon._child`),
restarts any that dies (:mod:`ocgate.daemon._children`), and does for them what needs privileges:

* accepts TCP connections (without reading them), refuses banned sources and those over the
  pre-authentication caps at once (:mod:`ocgate.daemon._accept`), and passes each other one to the
  worker with the fewest tunnels, ties going round-robin (``SCM_RIGHTS``);
* creates and configures TUN devices over netlink and passes their descriptors;
* binds a UDP socket connected to a DTLS client when a worker steers a hello to its owner;
* runs the connect and disconnect scripts;
* serves the occtl socket, gathering snapshots from the workers and the auth service;
* holds the node's state for a balancer (ready, draining until a deadline, stopping): it hands
  each connection on ``metrics-listen``/``health-listen`` to a worker with that state, which
  answers ``GET /health``; ``ctl stop drain`` tells the workers to refuse new logins and
  CONNECTs, and at the deadline stops the node as SIGTERM does (tunnels closed without a word,
  sessions kept, so clients reconnect with their cookies through the balancer elsewhere);
* handles SIGHUP (reload everywhere), SIGTERM/SIGINT (stop; sessions stay in the store), SIGUSR2.

Everything a child asks is a typed message validated on arrival (:mod:`ocgate.ipc.messages`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ocgate import ipc
from ocgate.config import Config, load_config
from ocgate.control import StatusInfo
from ocgate.daemon._accept import Acceptor
from ocgate.daemon._children import Child, ChildProcesses, tls_memory_files
from ocgate.daemon._latency import latency_figures
from ocgate.daemon._ping import address_answers
from ocgate.daemon._scripts import run_script
from ocgate.daemon._setup import TUNNEL_IDS_PER_WORKER, ChildSetup, bind_udp_socket
from ocgate.daemon._store import session_store_path, shared_store_url
from ocgate.daemon._tun_maker import TunMaker
from ocgate.errors import ConfigError
from ocgate.ipc import messages as m
from ocgate.ipc._channel import Handler, Outgoing
from ocgate.metrics import parse_listen_address, render_merged

__all__ = ["Supervisor"]

if TYPE_CHECKING:
    from ocgate.daemon._control import ControlService

log = logging.getLogger("ocgate")

_STATIC_KEYS = (
    "listen_host", "tcp_port", "udp_port", "udp_listen_host", "socket_file", "occtl_socket_file",
    "use_occtl", "pid_file", "run_as_user", "run_as_group", "metrics_listen", "device", "workers",
    "session_store", "isolate_workers", "node_name", "health_listen",
)  # fmt: skip
_USERS_PERIOD = 5.0
"""Seconds between two updates of this node's users list in a shared session store."""
_STEERS_PER_SECOND = 2000


@dataclass(frozen=True, slots=True)
class LogSetup:
    level: int
    stderr: bool
    json: bool
    facility: str = "daemon"


class Supervisor:
    """Starts, watches and serves the other processes."""

    def __init__(
        self,
        config: Config,
        *,
        logs: LogSetup,
        request_stop: Callable[[], None],
        request_exit: Callable[[], None] | None = None,
    ) -> None:
        """:param request_stop: stop telling the clients (``stop now``: they exit).
        :param request_exit: stop without telling them (SIGTERM; the end of a drain)."""
        from ocgate.sandbox import resolve_account

        self.config = config
        self.logs = logs
        self.request_stop = request_stop
        self.request_exit = request_exit or request_stop
        self.drain_deadline: float | None = None
        """Epoch seconds at which a draining node stops; ``None``: not draining."""
        self._drain_timer: asyncio.TimerHandle | None = None
        self.account = resolve_account(config.run_as_user or "nobody", config.run_as_group)
        self.cookie_key = secrets.token_bytes(32)
        self.children = ChildProcesses(
            config,
            setup=self._setup,
            handler=self._handler,
            forget=self._forget_pending,
            stopping=lambda: self.stopping,
            drain_deadline=lambda: self.drain_deadline,
            request_stop=request_stop,
        )
        self._console_tokens: dict[bytes, str] = {}
        """The console API's tokens as digests, read once at start (``admin-token-file`` is
        not reloadable)."""
        self.stopping = False
        self._tcp: list[socket.socket] = []
        self._metrics_sock: socket.socket | None = None
        self._health_sock: socket.socket | None = None
        self._rr = 0
        self._tasks: set[asyncio.Task[object]] = set()
        self._users_changed = asyncio.Event()
        self.shared_store = shared_store_url(config) is not None
        """Whether several gateways share the session store (``session-store = redis://``)."""
        self._steer_budget = float(_STEERS_PER_SECOND)
        self._steer_time = time.monotonic()
        self.control: ControlService | None = None
        self.started = time.time()
        self.tuns = TunMaker(config)
        self.acceptor = Acceptor(
            config,
            hand_over=self._hand_over,
            send_points=self.tell_auth,
        )

    # Start and stop -------------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        self._bind()
        from ocgate.nvm._config import nvm_configured

        children = self.children
        await children.spawn(children.auth)
        if nvm_configured(config):
            children.nvm = Child("nvm", 0, 0)
            self._prepare_nvm_store()
            await children.spawn(children.nvm)
        await asyncio.gather(*(children.spawn(w) for w in children.workers))
        if config.use_occtl or config.admin_listen:
            from ocgate.daemon._control import ControlService

            self.control = ControlService(self, request_stop=self.request_stop)
        if config.admin_listen:
            if config.admin_token_file:
                from ocgate.console._tokens import load_admin_tokens

                self._console_tokens = dict(load_admin_tokens(config.admin_token_file))
            children.console = Child("console", 0, 0)
            await children.spawn(children.console)
        if shared_store_url(config) is not None:
            self._background(self._publish_users())
        loop = asyncio.get_running_loop()
        for sock in self._tcp:
            sock.listen(1024)
            loop.add_reader(sock.fileno(), self.acceptor.accept, sock)
        if self._metrics_sock is not None:
            loop.add_reader(self._metrics_sock.fileno(), self._accept_metrics, self._metrics_sock)
        if self._health_sock is not None:
            loop.add_reader(self._health_sock.fileno(), self._accept_metrics, self._health_sock)
        if config.use_occtl:
            assert self.control is not None
            await self.control.start(config.occtl_socket_file)

    def _bind(self) -> None:
        config = self.config
        hosts = [config.listen_host] if config.listen_host else ["0.0.0.0", "::"]
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, config.tcp_port))  # listen() once the workers are ready.
            sock.setblocking(False)
            self._tcp.append(sock)
            log.info("event=listening proto=tcp address=%s", sock.getsockname()[:2])
        if config.udp_port is not None:
            # Bound before any CONNECT reply: openconnect gives up on DTLS for the whole session
            # if its first ClientHello meets a closed port (anyconnect-protocol.md §9.1).
            uhost = config.udp_listen_host or config.listen_host
            for host in [uhost] if uhost else ["0.0.0.0", "::"]:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = bind_udp_socket(host, config.udp_port, family)
                self.children.udp.append(sock)
                log.info("event=listening proto=udp address=%s", sock.getsockname()[:2])
        if config.metrics_listen:
            self._metrics_sock = _bind_http(config.metrics_listen, "metrics")
        if config.health_listen:
            self._health_sock = _bind_http(config.health_listen, "health")
        if config.admin_listen:
            self.children.admin_sock = _bind_http(config.admin_listen, "console")

    def _prepare_nvm_store(self) -> None:
        """The collector runs as run-as-user: its SQLite directory must be its own."""
        url = self.config.nvm_store
        if url.startswith(("postgresql://", "postgres://")):
            return
        path = url.removeprefix("sqlite://")
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if os.geteuid() != 0:
            return
        for name in (directory, path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, self.account.uid, self.account.gid)

    async def stop(self, *, notify: bool = False) -> None:
        """Stop accepting, stop the workers (their tunnels end), then the others."""
        self.stopping = True
        loop = asyncio.get_running_loop()
        for sock in self._tcp:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(sock.fileno())
            sock.close()
        self.acceptor.close()
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        for http in (self._metrics_sock, self._health_sock):
            if http is not None:
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(http.fileno())
                http.close()
        children = self.children
        if children.console is not None:
            await children.stop(children.console, False)
        if children.admin_sock is not None:
            children.admin_sock.close()
        if self.control is not None and self.config.use_occtl:
            await self.control.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.occtl_socket_file)
        await asyncio.gather(*(children.stop(w, notify) for w in children.workers))
        if children.nvm is not None:
            await children.stop(children.nvm, False)
        await children.stop(children.auth, False)
        for sock in children.udp:
            sock.close()

    # Children -------------------------------------------------------------------------------------

    def _setup(self, child: Child) -> ChildSetup:
        """What ``child`` is told at each start and reload (:class:`ChildProcesses` asks)."""
        return ChildSetup(
            config=self.config,
            log_level=self.logs.level,
            log_stderr=self.logs.stderr,
            log_json=self.logs.json,
            log_facility=self.logs.facility,
            account=self.account,
            cookie_key=self.cookie_key,
            store_path=session_store_path(self.config) if child.role == "auth" else "",
            console_tokens=self._console_tokens if child.role == "console" else {},
        )

    # Accepting ------------------------------------------------------------------------------------

    def _pick_worker(self) -> Child | None:
        ready = [w for w in self.children.workers if w.ready and w.channel is not None]
        if not ready:
            return None
        self._rr += 1
        return min(ready, key=lambda w: (w.tunnels, w.handed, (w.index - self._rr) % len(ready)))

    def _hand_over(self, conn: socket.socket, token: int, proxied: bool = False) -> bool:
        worker = self._pick_worker()
        if worker is None or worker.channel is None:
            return False
        try:
            message = m.NewConnection(token=token, proxied=proxied)
            worker.channel.send(message, [conn.fileno()])
        except (ipc.ChannelClosed, ValueError):
            return False
        worker.handed += 1
        worker.pending.add(token)
        return True

    def _forget_pending(self, child: Child) -> None:
        """``child`` is gone: its connections left the accept gate's count with it."""
        for token in child.pending:
            self.acceptor.release(token)
        child.pending.clear()

    def _accept_metrics(self, listener: socket.socket) -> None:
        """A connection on ``metrics-listen`` or ``health-listen``: a worker answers it (the
        supervisor parses no HTTP), with the node's state as of now for ``GET /health``."""
        try:
            conn, _addr = listener.accept()
        except OSError:
            return
        try:
            worker = self._pick_worker()
            if worker is not None and worker.channel is not None:
                handed = m.MetricsConnection(
                    health=self.health, metrics=listener is self._metrics_sock
                )
                with contextlib.suppress(ipc.ChannelClosed):
                    worker.channel.send(handed, [conn.fileno()])
        finally:
            conn.close()

    @property
    def health(self) -> Literal["ready", "draining", "stopping"]:
        """What ``GET /health`` answers: ``ready`` (200), else ``draining``/``stopping`` (503)."""
        if self.stopping:
            return "stopping"
        return "draining" if self.drain_deadline is not None else "ready"

    def drain(self, seconds: float) -> None:
        """Drain: health says ``draining`` at once, the workers refuse new logins and CONNECTs,
        and in ``seconds`` the node stops as SIGTERM stops it (no DISCONNECT, sessions kept).
        Draining again sets a new deadline; a reload does not end a drain."""
        loop = asyncio.get_running_loop()
        self.drain_deadline = time.time() + seconds
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        self._drain_timer = loop.call_later(seconds, self._drained)
        for worker in self.children.workers:
            if worker.channel is not None and worker.ready:
                with contextlib.suppress(ipc.ChannelClosed):
                    worker.channel.send(m.Drain(deadline=self.drain_deadline))
        log.warning("event=draining node=%s seconds=%g", self.config.node_name, seconds)

    def _drained(self) -> None:
        log.warning("event=drained node=%s reason='drain deadline'", self.config.node_name)
        self.request_exit()

    # Requests from the children -------------------------------------------------------------------

    def _handler(self, child: Child) -> Handler:
        async def handle(msg: object, fds: list[int]) -> Outgoing:
            for fd in fds:
                os.close(fd)  # Children send no descriptors up.
            if child.role == "auth" and isinstance(msg, m.Bans):
                self.acceptor.apply_bans(msg)
                return None
            if child.role == "auth" and isinstance(msg, m.PingAddress):
                try:
                    return m.Ok(found=await address_answers(msg.address))
                except ValueError:
                    return m.Failed(message="not an address")
            if child.role == "console" and isinstance(msg, m.ControlLine):
                if self.control is None:
                    return m.Failed(message="not ready")
                return m.ControlAnswer(line=await self.control.answer_console(msg.line))
            if child.role != "worker":
                return m.Failed(message="not allowed")
            return await self._from_worker(child, msg)

        return handle

    async def _from_worker(self, child: Child, msg: object) -> Outgoing:
        if isinstance(msg, m.OpenTun):
            return await self.tuns.open(msg)
        if isinstance(msg, m.RunScript):
            path = (
                self.config.connect_script
                if msg.kind == "connect"
                else self.config.disconnect_script
            )
            if not path:
                return m.ScriptDone(status=0)
            return m.ScriptDone(status=await run_script(path, msg.env))
        if isinstance(msg, m.SteerDatagram):
            self._steer(msg)
            return None
        if isinstance(msg, m.TunnelEvent):
            self._tunnel_event(child, msg)
            return None
        if isinstance(msg, m.ConnectionDone):
            if msg.token in child.pending:  # Only its own: a worker cannot free another's.
                child.pending.discard(msg.token)
                self.acceptor.release(msg.token)
            return None
        if isinstance(msg, m.RealAddress):  # listen-proxy-proto: the gate judges the client.
            if msg.token not in child.pending:  # Only its own connections.
                return m.Failed(message="not a connection of this worker")
            return self.acceptor.attribute(msg.token, msg.address)
        if isinstance(msg, m.Scrape):
            return m.ScrapeText(text=(await self.scrape()).decode())
        return m.Failed(message=f"unexpected {type(msg).__name__}")

    def _steer(self, msg: m.SteerDatagram) -> None:
        now = time.monotonic()
        self._steer_budget = min(
            float(_STEERS_PER_SECOND),
            self._steer_budget + (now - self._steer_time) * _STEERS_PER_SECOND,
        )
        self._steer_time = now
        if self._steer_budget < 1 or msg.owner >= len(self.children.workers):
            return
        self._steer_budget -= 1
        owner = self.children.workers[msg.owner]
        if owner.channel is None or not owner.ready:
            return
        config = self.config
        family = socket.AF_INET6 if ":" in msg.host else socket.AF_INET
        listen = config.udp_listen_host or config.listen_host
        host = listen if listen else ("::" if family == socket.AF_INET6 else "0.0.0.0")
        try:
            ipaddress.ip_address(msg.host)
            assert config.udp_port is not None
            sock = bind_udp_socket(host, config.udp_port, family, connect=(msg.host, msg.port))
        except (OSError, ValueError, AssertionError) as exc:
            log.debug("event=steer-failed remote=%s reason=%r", msg.host, str(exc))
            return
        try:
            with contextlib.suppress(ipc.ChannelClosed):
                owner.channel.send(m.Steered(host=msg.host, port=msg.port, data=msg.data),
                                   [sock.fileno()])  # fmt: skip
        finally:
            sock.close()

    async def _publish_users(self) -> None:
        """With a shared session store: this node's tunnels, for ``show users`` on the others
        (every few seconds, and soon after a tunnel comes up or goes down)."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._users_changed.wait(), _USERS_PERIOD)
            await asyncio.sleep(0.2)  # Tunnels that come up together: one update.
            self._users_changed.clear()
            parts, _ = await self.gather(sessions=False)
            self.tell_auth(m.NodeUsers(users=[u for part in parts for u in part.users]))

    def _tunnel_event(self, child: Child, msg: m.TunnelEvent) -> None:
        user = msg.user
        self._users_changed.set()
        if msg.kind == "connect":
            child.tunnels += 1
        else:
            child.tunnels = max(0, child.tunnels - 1)
        if self.control is not None:
            self.control.publish_info(msg.kind, user, msg.reason)
        nvm = self.children.nvm
        if nvm is not None and nvm.channel is not None:
            with contextlib.suppress(ipc.ChannelClosed):
                if msg.kind == "connect":
                    # NVM flow times have whole-second precision: cover the whole second.
                    start = float(math.floor(user.connected_at))
                    for address in (user.ipv4, user.ipv6):
                        if address:
                            event = m.LeaseEvent(
                                kind="start",
                                username=user.username,
                                session_id=user.session_id,
                                address=address,
                                when=start,
                                device_platform=user.platform,
                                device_name=user.computer_name,
                                device_unique_id=user.unique_id,
                            )
                            nvm.channel.send(event)
                else:
                    nvm.channel.send(m.LeaseEvent(kind="end", username=user.username,
                        session_id=user.session_id, address=None,
                        when=float(math.ceil(time.time()))))  # fmt: skip

    # Snapshots for occtl, metrics and SIGUSR2 -----------------------------------------------------

    async def gather(self, *, sessions: bool = True) -> tuple[list[m.Users], m.Sessions]:
        """Every worker's tunnels and (``sessions``) the authentication service's snapshot."""

        async def users(worker: Child) -> m.Users:
            if worker.channel is None or not worker.ready:
                return m.Users()
            try:
                reply: m.Users = await worker.channel.call(m.UsersQuery(), timeout=5.0)
            except (ipc.ChannelClosed, ipc.RemoteFailure, TimeoutError):
                return m.Users()
            return reply

        async def auth_snapshot() -> m.Sessions:
            channel = self.children.auth.channel
            if channel is None:
                return m.Sessions()
            try:
                reply: m.Sessions = await channel.call(m.SessionsQuery(), timeout=5.0)
            except (ipc.ChannelClosed, ipc.RemoteFailure, TimeoutError):
                return m.Sessions()
            return reply

        parts = await asyncio.gather(*(users(w) for w in self.children.workers))
        return list(parts), await auth_snapshot() if sessions else m.Sessions()

    async def scrape(self) -> bytes:
        async def collect(child: Child) -> m.Metrics:
            if child.channel is None or not child.ready:
                return m.Metrics()
            try:
                reply: m.Metrics = await child.channel.call(m.CollectMetrics(), timeout=5.0)
            except (ipc.ChannelClosed, ipc.RemoteFailure, TimeoutError):
                return m.Metrics()
            return reply

        nvm = self.children.nvm
        children = [self.children.auth, *self.children.workers] + ([nvm] if nvm else [])
        parts = await asyncio.gather(*(collect(c) for c in children))
        node = m.Metrics(
            samples=[m.Sample("ocgate_node_draining", {}, float(self.health != "ready"), "gauge")],
            help={"ocgate_node_draining": "1 while the node drains or stops (health 503), else 0"},
        )
        return render_merged(
            [*parts, self.acceptor.metrics(), node], {"node": self.config.node_name}
        )

    async def stats_line(self) -> str:
        workers, auth = await self.gather()
        connected = sum(1 for s in auth.sessions if s.in_use)
        tunnels = sum(int(w.stats.get("tunnels", 0)) for w in workers)
        tasks = sum(int(w.stats.get("tasks", 0)) for w in workers) + int(auth.stats.get("tasks", 0))
        return (
            f"stats sessions={len(auth.sessions)} connected={connected} "
            f"leases4={int(auth.stats.get('leases4', 0))} "
            f"leases6={int(auth.stats.get('leases6', 0))} "
            f"tunnels={tunnels} tasks={tasks}"
        )

    # Actions --------------------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the configuration and hand it to every process; running tunnels stay."""
        source = self.config.source
        try:
            config = load_config(source)
            for key in _STATIC_KEYS:
                if getattr(config, key) != getattr(self.config, key):
                    log.warning("event=reload-ignored key=%s reason='needs a restart'",
                                key.replace("_", "-"))  # fmt: skip
                    config = dataclasses.replace(config, **{key: getattr(self.config, key)})
            fds = tls_memory_files(config)  # Before the swap: a file that fails changes nothing.
            old, self.config = self.config, config
        except (ConfigError, OSError) as exc:
            log.error("event=reload-failed config=%s reason=%r", source, str(exc))
            return False
        try:
            if not await self.children.reconfigure(fds):
                self.config = old
                return False
        finally:
            for fd in fds:
                os.close(fd)
        self.tuns.configure(self.config)
        self.acceptor.configure(self.config)
        for warning in config.warnings:
            log.warning("event=config-warning %s", warning)
        log.info("event=reloaded config=%s", source)
        return True

    def close_tunnels(self, ids: list[int], *, terminate: bool) -> None:
        for worker in self.children.workers:
            mine = [i for i in ids if i // TUNNEL_IDS_PER_WORKER == worker.generation]
            if mine and worker.channel is not None:
                with contextlib.suppress(ipc.ChannelClosed):
                    worker.channel.send(m.CloseTunnels(ids=mine, terminate=terminate))

    def tell_auth(self, message: m.Message) -> None:
        if self.children.auth.channel is not None:
            with contextlib.suppress(ipc.ChannelClosed):
                self.children.auth.channel.send(message)

    def status(self, workers: list[m.Users], auth: m.Sessions) -> StatusInfo:
        def total(key: str) -> float:
            return sum(w.stats.get(key, 0) for w in workers)

        handled = int(total("sessions_handled"))
        latency = latency_figures(
            total("latency_median_total"), total("latency_rms_total"), total("latency_sets")
        )
        mins = [w.stats["min_mtu"] for w in workers if w.stats.get("min_mtu")]
        auth_proc = self.children.auth.proc
        return StatusInfo(
            server_pid=os.getpid(),
            sec_mod_pid=auth_proc.pid if auth_proc is not None else 0,
            up_since=self.started,
            active_sessions=int(total("tunnels")),
            total_sessions=int(total("sessions_total")),
            total_auth_failures=int(auth.stats.get("auth_failures", 0)),
            ips_in_ban_list=sum(1 for b in auth.bans if b.expires is not None),
            last_stats_reset=self.started,
            sessions_handled=handled,
            timed_out=int(total("timed_out")),
            timed_out_idle=int(total("timed_out_idle")),
            closed_due_to_error=int(total("closed_due_to_error")),
            auth_failures=int(auth.stats.get("auth_failures", 0)),
            avg_session_time=int(total("session_time_total") / handled) if handled else 0,
            max_session_time=int(
                max((w.stats.get("session_time_max", 0) for w in workers), default=0)
            ),
            median_latency_us=latency[0],
            stdev_latency_us=latency[1],
            min_mtu=int(min(mins)) if mins else 0,
            max_mtu=int(max((w.stats.get("max_mtu", 0) for w in workers), default=0)),
            rx=int(total("rx") + total("live_rx")),
            tx=int(total("tx") + total("live_tx")),
            node=self.config.node_name,
            state=self.health,
            drain_deadline=self.drain_deadline or 0.0,
        )

    def _background(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _bind_http(value: str, proto: str) -> socket.socket:
    """The listening socket of ``metrics-listen`` or ``health-listen`` (a worker answers it)."""
    host, port = parse_listen_address(value)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    sock.setblocking(False)
    log.info("event=listening proto=%s address=%s", proto, (host, port))
    return sock
