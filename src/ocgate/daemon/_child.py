"""The entry point of every child process: ``python -m ocgate.daemon._child ROLE ...``.

The supervisor starts each child with a fresh interpreter (nothing of its own memory is inherited)
and the descriptors named on its command line: the channel to the supervisor; for a worker also
the channel to the authentication service and the shared UDP sockets. The first message on the
channel is
:class:`~ocgate.ipc.messages.Configure` with the pickled :class:`ChildSetup` (and, for a worker,
the certificate, key and CA as memory files). The child sets itself up with the privileges it
started with (reading the TLS key, binding collector ports), then gives them up
(:mod:`ocgate.sandbox`), and only then answers ``Ok`` and starts serving.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import Sequence

from OpenSSL import SSL

from ocgate import ipc
from ocgate.config import Config
from ocgate.daemon._memory import trim, trim_periodically
from ocgate.daemon._setup import ChildSetup, vhost_tls_context
from ocgate.ipc import messages as m

__all__ = ["main"]

log = logging.getLogger("ocgate")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ocgate-child")
    parser.add_argument("role", choices=("worker", "auth", "nvm", "console"))
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--generation", type=int, default=0)
    parser.add_argument("--channel", type=int, required=True)
    parser.add_argument("--auth", type=int, default=-1)
    parser.add_argument("--udp", default="")
    parser.add_argument("--nvm", type=int, default=-1)
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR2, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)  # The supervisor decides; its death ends the channel.
    udp = [int(fd) for fd in args.udp.split(",") if fd]
    try:
        return asyncio.run(
            _run(args.role, args.index, args.generation, args.channel, args.auth, udp, args.nvm)
        )
    except KeyboardInterrupt:
        return 0


async def _run(
    role: str,
    index: int,
    generation: int,
    channel_fd: int,
    auth_fd: int,
    udp: list[int],
    nvm_fd: int = -1,
) -> int:
    from ocgate.sandbox import set_role

    set_role(f"worker {index}" if role == "worker" else {"auth": "sec-mod"}.get(role, role))
    first: asyncio.Future[tuple[m.Configure, list[int]]] = (
        asyncio.get_running_loop().create_future()
    )
    done = asyncio.Event()
    runner: _Role | None = None

    async def handle(msg: object, fds: list[int]) -> ipc.messages.Message | None:
        if runner is None:
            if isinstance(msg, m.Configure) and not first.done():
                first.set_result((msg, fds))
                return await ready
            for fd in fds:
                os.close(fd)
            return m.Failed(message="not configured yet")
        if isinstance(msg, m.Stop):
            await runner.stop(notify=msg.notify)
            done.set()
            return m.Ok()
        return await runner.handle(msg, fds)

    ready: asyncio.Future[ipc.messages.Message] = asyncio.get_running_loop().create_future()
    accepts = {
        "worker": m.WORKER_ACCEPTS,
        "auth": m.AUTH_ACCEPTS,
        "nvm": m.NVM_ACCEPTS,
        "console": m.CONSOLE_ACCEPTS,
    }[role]
    supervisor = ipc.Channel(
        socket.socket(fileno=channel_fd),
        accepts=accepts,
        handler=handle,
        on_closed=done.set,
        name="supervisor",
    )
    configure, fds = await first
    setup: ChildSetup = pickle.loads(configure.payload)  # From the supervisor: trusted.
    from ocgate.daemon._logs import setup_logging

    setup_logging(
        setup.log_level,
        to_stderr=setup.log_stderr,
        json_lines=setup.log_json,
        facility=setup.log_facility,
    )
    try:
        if role == "worker":
            runner = await _WorkerRole.create(
                index, generation, setup, fds, supervisor, auth_fd, udp
            )
        elif role == "auth":
            runner = await _AuthRole.create(setup, supervisor)
        elif role == "console":
            runner = await _ConsoleRole.create(setup, fds, supervisor, auth_fd, nvm_fd)
        else:
            runner = await _NvmRole.create(setup, supervisor)
    except Exception as exc:
        log.exception("event=child-start-failed role=%s", role)
        ready.set_result(m.Failed(message=f"{type(exc).__name__}: {exc}"[:4000]))
        await asyncio.sleep(0.2)
        return 1
    ready.set_result(m.Ok())
    trim()  # Start-up garbage (the setup, the TLS context) is free now: give its pages back.
    trimmer = asyncio.get_running_loop().create_task(trim_periodically())
    await done.wait()
    trimmer.cancel()
    with contextlib.suppress(Exception):
        await runner.stop(notify=False)
    supervisor.close()
    return 0


NVM_NICENESS = 19
_CAP_CHOWN = 0
_CAP_FOWNER = 3

# Imported before giving up root: the interpreter's own library may not be readable afterwards
# (a Python under /root), and these load lazily on first use.
_PRELOAD = (
    "concurrent.futures.thread",
    "ctypes.util",
    "encodings.idna",
    "ocgate.certauth",
    "ocgate.metrics._http",
    "ocgate.metrics._registry",
    "ocgate.dtls",
    "ocgate.daemon._scripts",
    "json",
    "hmac",
    "secrets",
)


def _drop(setup: ChildSetup, *, keep_caps: Sequence[int] = (), profile: str | None = None) -> None:
    """Give up root (when running as root) and confine this process."""
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)
    if profile is not None:
        importlib.import_module("ocgate.sandbox._filter")  # libseccomp through ctypes
    from ocgate.sandbox import (
        Account,
        drop_privileges,
        install_seccomp,
        sandbox_report,
        set_no_new_privs,
        set_not_dumpable,
    )

    if os.geteuid() == 0 and isinstance(setup.account, Account):
        drop_privileges(setup.account, keep_caps=keep_caps)
    set_not_dumpable()
    set_no_new_privs()
    if profile is not None:
        install_seccomp(profile)
    log.info("event=sandboxed %s", " ".join(f"{k}={v}" for k, v in sandbox_report().items()))


class _Role:
    async def handle(self, msg: object, fds: list[int]) -> ipc.messages.Message | None:
        raise NotImplementedError

    async def stop(self, *, notify: bool) -> None:
        raise NotImplementedError


def worker_tls(config: Config, fds: list[int]) -> SSL.Context:
    """The TLS context from the certificates, keys and CAs the supervisor passed as memory files
    (``daemon._setup.tls_files``: the default host's, then each vhost's, chosen by SNI)."""
    ctx, warnings = vhost_tls_context(config, [f"/proc/self/fd/{fd}" for fd in fds])
    for warning in warnings:
        log.debug("event=config-warning %s", warning)
    return ctx


class _WorkerRole(_Role):
    def __init__(self, worker: object, auth: ipc.Channel) -> None:
        from ocgate.daemon._worker import Worker

        assert isinstance(worker, Worker)
        self.worker = worker
        self.auth = auth

    @classmethod
    async def create(
        cls,
        index: int,
        generation: int,
        setup: ChildSetup,
        fds: list[int],
        supervisor: ipc.Channel,
        auth_fd: int,
        udp: list[int],
    ) -> _WorkerRole:
        from ocgate.daemon._worker import Worker

        try:
            tls = worker_tls(setup.config, fds)
        finally:
            for fd in fds:
                os.close(fd)
        _drop(setup, profile="worker" if setup.config.isolate_workers else None)
        role: _WorkerRole | None = None

        async def from_auth(msg: object, got: list[int]) -> ipc.messages.Message | None:
            for fd in got:
                os.close(fd)
            if role is not None and isinstance(msg, m.CloseSession):
                role.worker.close_session(msg)
            return None

        auth = ipc.Channel(
            socket.socket(fileno=auth_fd),
            accepts=m.WORKER_ACCEPTS,
            handler=from_auth,
            on_closed=lambda: os._exit(3),  # Without the auth service a worker serves nobody.
            name="sec-mod",
        )
        worker = Worker(
            index=index,
            generation=generation,
            config=setup.config,
            tls_context=tls,
            supervisor=supervisor,
            auth=auth,
            cookie_key=setup.cookie_key,
        )
        udp_socks = [socket.socket(fileno=fd) for fd in udp]
        await worker.start(udp_socks)
        role = cls(worker, auth)
        log.info("event=worker-ready index=%d pid=%d", index, os.getpid())
        return role

    async def handle(self, msg: object, fds: list[int]) -> ipc.messages.Message | None:
        worker = self.worker
        if isinstance(msg, m.NewConnection):
            for fd in fds:
                worker.adopt_connection(fd, msg.token, proxied=msg.proxied)
            return None
        if isinstance(msg, m.MetricsConnection):
            for fd in fds:
                asyncio.get_running_loop().create_task(
                    _serve_scrape(worker.supervisor, fd, msg.health, metrics=msg.metrics)
                )
            return None
        if isinstance(msg, m.Drain):
            for fd in fds:
                os.close(fd)
            worker.drain(msg.deadline)
            return None
        if isinstance(msg, m.Steered):
            if worker.dtls_port is None or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                return None
            await worker.dtls_port.steered(
                (msg.host, msg.port), msg.data, socket.socket(fileno=fds[0])
            )
            return None
        if isinstance(msg, m.Configure):
            setup: ChildSetup = pickle.loads(msg.payload)
            try:
                worker.reconfigure(setup.config, worker_tls(setup.config, fds))
            except Exception as exc:
                log.error("event=reload-failed role=worker reason=%r", str(exc))
                return m.Failed(message=str(exc)[:4000])
            finally:
                for fd in fds:
                    os.close(fd)
            return m.Ok()
        for fd in fds:
            os.close(fd)
        if isinstance(msg, m.UsersQuery):
            return worker.users()
        if isinstance(msg, m.CloseTunnels):
            return m.Ok(found=worker.close_tunnels(msg.ids, terminate=msg.terminate))
        if isinstance(msg, m.CollectMetrics):
            from ocgate.metrics import samples_of

            return samples_of(worker.metrics.registry)
        return m.Failed(message=f"unexpected {type(msg).__name__}")

    async def stop(self, *, notify: bool) -> None:
        for conn in list(self.worker.connections):
            if conn.tunnel is not None:
                conn.tunnel.close("server shutting down", notify=notify)
        await self.worker.stop()
        await asyncio.sleep(0.05)  # Let the TunnelDown reports reach the auth service.


async def _serve_scrape(supervisor: ipc.Channel, fd: int, health: str, *, metrics: bool) -> None:
    """One request on ``metrics-listen`` (``/metrics``, ``/health``) or ``health-listen``
    (``/health`` only); ``health`` is the node's state the supervisor handed over with it."""
    from ocgate.metrics._http import answer_http

    async def scrape() -> bytes:
        try:
            reply: m.ScrapeText = await supervisor.call(m.Scrape(), timeout=10.0)
        except (ipc.ChannelClosed, ipc.RemoteFailure, TimeoutError):
            return b"# the supervisor did not answer\n"
        return reply.text.encode()

    await answer_http(socket.socket(fileno=fd), scrape=scrape if metrics else None, health=health)


class _AuthRole(_Role):
    def __init__(self, service: object, supervisor: ipc.Channel) -> None:
        from ocgate.daemon._auth import AuthService

        assert isinstance(service, AuthService)
        self.service = service
        self.supervisor = supervisor
        self.console: object = None
        """sec-mod's side of the web console's channel (``ConsoleRequests``), when it runs."""
        self.console_channel: ipc.Channel | None = None

    @classmethod
    async def create(cls, setup: ChildSetup, supervisor: ipc.Channel) -> _AuthRole:
        from ocgate.daemon._auth import AuthService
        from ocgate.sandbox import AUTH_CAPS
        from ocgate.sso import preload_sso_modules

        preload_sso_modules()  # SSO providers load after the drop below.
        # The OTP users file is rewritten in place of a root-owned one: keep its owner and mode.
        _drop(setup, keep_caps=(*AUTH_CAPS, _CAP_CHOWN, _CAP_FOWNER))
        service = AuthService(setup.config, store_path=setup.store_path)

        def publish(entries: list[m.BanState], replace: bool) -> None:
            with contextlib.suppress(ipc.ChannelClosed):
                supervisor.send(m.Bans(entries=entries, replace=replace))

        service.publish_bans = publish

        async def ping_address(address: str) -> bool:
            try:
                reply = await supervisor.call(m.PingAddress(address=address), timeout=10.0)
            except (ipc.ChannelClosed, ipc.RemoteFailure, TimeoutError):
                return False
            return isinstance(reply, m.Ok) and reply.found

        service.ping_address = ping_address
        service.publish_all_bans()
        service.start()
        log.info(
            "event=sec-mod-ready pid=%d sessions=%d", os.getpid(), len(service.store.sessions())
        )
        role = cls(service, supervisor)
        if setup.config.admin_listen:
            from ocgate.daemon._console_auth import ConsoleRequests

            role.console = ConsoleRequests(setup.config)
        return role

    def _attach_console(self, fds: list[int]) -> ipc.messages.Message:
        from ocgate.daemon._console_auth import ConsoleRequests

        console = self.console
        if len(fds) != 1 or not isinstance(console, ConsoleRequests):
            for fd in fds:
                os.close(fd)
            return m.Failed(message="no console channel")
        if self.console_channel is not None:
            self.console_channel.close()
        self.console_channel = ipc.Channel(
            socket.socket(fileno=fds[0]),
            accepts=m.AUTH_FROM_CONSOLE,
            handler=console.handle,
            name="console",
        )
        return m.Ok()

    async def handle(self, msg: object, fds: list[int]) -> ipc.messages.Message | None:
        service = self.service
        if isinstance(msg, m.AttachConsole):
            return self._attach_console(fds)
        if isinstance(msg, m.AttachWorker):
            if len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                return m.Failed(message="no channel")
            index = msg.index
            old = service.workers.pop(index, None)
            if old is not None:
                old.close()
                service.worker_gone(index)
            channel = ipc.Channel(
                socket.socket(fileno=fds[0]),
                accepts=m.AUTH_ACCEPTS,
                handler=service.worker_handler(index),  # type: ignore[arg-type]
                name=f"worker {index}",
            )
            channel._on_closed = lambda: _worker_channel_closed(service, index, channel)
            service.workers[index] = channel
            return m.Ok()
        for fd in fds:
            os.close(fd)
        if isinstance(msg, m.SessionsQuery):
            reply = service.sessions_reply()
            if service.cluster is not None:
                reply.remote_users = await service.cluster.remote_users()
            return reply
        if isinstance(msg, m.TerminateUser):
            if service.cluster is not None:
                service.cluster.end_user_elsewhere(msg.username)
            return None
        if isinstance(msg, m.NodeUsers):
            if service.cluster is not None:
                await service.cluster.publish_rows(msg.users)
            return None
        if isinstance(msg, m.Unban):
            return m.Ok(found=service.unban(msg.address))
        if isinstance(msg, m.ConnectionPoints):
            service.connection_points(msg.addresses)
            return None
        if isinstance(msg, m.TerminateSession):
            for session in service.store.sessions():
                if session.sid == msg.sid or session.sid.startswith(msg.sid):
                    service.end_session(session, "admin terminate")
                    return m.Ok()
            if service.cluster is not None:  # A session of another node (ctl lists them too).
                return m.Ok(found=await service.cluster.end_elsewhere(msg.sid, "admin terminate"))
            return m.Ok(found=False)
        if isinstance(msg, m.CollectMetrics):
            from ocgate.metrics import samples_of

            return samples_of(service.metrics.registry)
        if isinstance(msg, m.Configure):
            setup: ChildSetup = pickle.loads(msg.payload)
            try:
                service.load(setup.config)
                if self.console is not None:
                    self.console.load(setup.config)  # type: ignore[attr-defined]
            except Exception as exc:
                log.error("event=reload-failed role=sec-mod reason=%r", str(exc))
                return m.Failed(message=str(exc)[:4000])
            return m.Ok()
        return m.Failed(message=f"unexpected {type(msg).__name__}")

    async def stop(self, *, notify: bool) -> None:
        await self.service.close()


def _worker_channel_closed(service: object, index: int, channel: ipc.Channel) -> None:
    from ocgate.daemon._auth import AuthService

    assert isinstance(service, AuthService)
    if service.workers.get(index) is channel:
        service.worker_gone(index)


class _NvmRole(_Role):
    def __init__(self, service: object, leases: object) -> None:
        self.service = service
        self.leases = leases
        self.metrics: object = None
        self.console_channel: ipc.Channel | None = None

    def _attach_console(self, fds: list[int]) -> ipc.messages.Message:
        """The web console's telemetry queries, answered by the NVM API's own handlers."""
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return m.Failed(message="no console channel")
        api = self.service.internal_api()  # type: ignore[attr-defined]

        async def answer(msg: object, got: list[int]) -> ipc.messages.Message | None:
            for fd in got:
                os.close(fd)
            if isinstance(msg, m.TelemetryQuery):
                status, body = await api.get(msg.path, msg.query)
                return m.TelemetryAnswer(status=status, body=body)
            return m.Failed(message=f"unexpected {type(msg).__name__}")

        if self.console_channel is not None:
            self.console_channel.close()
        self.console_channel = ipc.Channel(
            socket.socket(fileno=fds[0]), accepts=m.NVM_FROM_CONSOLE, handler=answer,
            name="console",
        )  # fmt: skip
        return m.Ok()

    @classmethod
    async def create(cls, setup: ChildSetup, supervisor: ipc.Channel) -> _NvmRole:
        from ocgate.nvm._collector import LeasePublisher
        from ocgate.nvm._metrics import CollectorMetrics
        from ocgate.nvm._serve import start_embedded_collector
        from ocgate.sandbox import CAP_DAC_READ_SEARCH, CAP_NET_BIND_SERVICE
        from ocgate.sandbox._caps import keep_across_exec

        # Tunnels first: under a flood of telemetry the collector yields the CPU to the workers
        # (and drops at its socket, counted) rather than slowing every tunnel.
        os.nice(NVM_NICENESS)
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        _drop(setup, keep_caps=(CAP_NET_BIND_SERVICE, CAP_DAC_READ_SEARCH))
        # The SQLite writer is a fresh interpreter (forkserver): it must read the same files.
        keep_across_exec([CAP_DAC_READ_SEARCH])
        leases = LeasePublisher()
        service = await start_embedded_collector(setup.config, lease_events=leases)
        role = cls(service, leases)
        role.metrics = CollectorMetrics(service.collector.stats)
        return role

    async def handle(self, msg: object, fds: list[int]) -> ipc.messages.Message | None:
        from ocgate.nvm._collector import LeasePublisher

        if isinstance(msg, m.AttachConsole):
            return self._attach_console(fds)
        for fd in fds:
            os.close(fd)
        leases = self.leases
        assert isinstance(leases, LeasePublisher)
        if isinstance(msg, m.LeaseEvent):
            if msg.kind == "start" and msg.address is not None:
                device = (msg.device_platform, msg.device_name, msg.device_unique_id)
                leases.lease_started(
                    msg.username, msg.session_id, msg.address, msg.when, device=device
                )
            elif msg.kind == "end":
                leases.lease_ended(msg.username, msg.session_id, msg.address, msg.when)
            return None
        if isinstance(msg, m.CollectMetrics):
            from ocgate.metrics import samples_of
            from ocgate.nvm._metrics import CollectorMetrics

            if isinstance(self.metrics, CollectorMetrics):
                return samples_of(self.metrics.registry)
            return m.Metrics()
        if isinstance(msg, m.Configure):
            return m.Ok()
        return m.Failed(message=f"unexpected {type(msg).__name__}")

    async def stop(self, *, notify: bool) -> None:
        close = getattr(self.service, "close", None)
        if close is not None:
            await close()


class _ConsoleRole(_Role):
    """The web console: TLS and HTTP from administrators' browsers, as run-as-user with no
    capability; it asks the supervisor, sec-mod and the collector for everything."""

    def __init__(self, server: object, channels: list[ipc.Channel], backend: object) -> None:
        self.server = server
        self.channels = channels
        self.backend = backend

    @classmethod
    async def create(
        cls,
        setup: ChildSetup,
        fds: list[int],
        supervisor: ipc.Channel,
        auth_fd: int,
        nvm_fd: int,
    ) -> _ConsoleRole:
        import ssl

        from ocgate.console import AuditLog, ConsoleSettings, create_console_app, serve_console
        from ocgate.console._backend import Role
        from ocgate.console._process import ProcessBackend, preload_console_modules

        listen_fd, cert_fd, key_fd, *rest = fds
        audit_fd = rest[0] if rest else None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
        os.close(cert_fd)
        os.close(key_fd)

        async def refuse(msg: object, got: list[int]) -> ipc.messages.Message | None:
            for fd in got:
                os.close(fd)
            return m.Failed(message="the console answers no requests")

        auth = ipc.Channel(
            socket.socket(fileno=auth_fd), accepts=m.CONSOLE_ACCEPTS, handler=refuse,
            name="sec-mod",
        )  # fmt: skip
        channels = [auth]
        nvm: ipc.Channel | None = None
        if nvm_fd >= 0:
            nvm = ipc.Channel(
                socket.socket(fileno=nvm_fd), accepts=m.CONSOLE_ACCEPTS, handler=refuse,
                name="nvm",
            )  # fmt: skip
            channels.append(nvm)
        backend = ProcessBackend(setup.config, supervisor=supervisor, auth=auth, nvm=nvm)

        def write_audit(line: str) -> None:
            log.info("event=console-audit %s", line)
            if audit_fd is not None:
                os.write(audit_fd, line.encode("utf-8") + b"\n")

        tokens: dict[bytes, Role] = {
            digest: ("admin" if role == "admin" else "readonly")
            for digest, role in setup.console_tokens.items()
        }
        settings = ConsoleSettings(token_digests=tokens, audit=AuditLog(write_audit))
        app = create_console_app(backend, settings)
        # The interpreter's library may not be readable once root is gone: load now what the
        # server and the pages load lazily.
        await preload_console_modules(app)
        sock = socket.socket(fileno=listen_fd)
        # Like a worker: it reads bytes from the network (administrators' browsers).
        _drop(setup, profile="worker" if setup.config.isolate_workers else None)
        server = await serve_console(app, sock, context)
        log.info("event=console-ready address=%s", sock.getsockname()[:2])
        return cls(server, channels, backend)

    async def handle(self, msg: object, fds: list[int]) -> ipc.messages.Message | None:
        for fd in fds:
            os.close(fd)
        if isinstance(msg, m.Configure):
            setup: ChildSetup = pickle.loads(msg.payload)
            self.backend.config = setup.config  # type: ignore[attr-defined]
            return m.Ok()
        if isinstance(msg, m.CollectMetrics):
            return m.Metrics()
        return m.Failed(message=f"unexpected {type(msg).__name__}")

    async def stop(self, *, notify: bool) -> None:
        close = getattr(self.server, "close", None)
        if close is not None:
            await close()
        for channel in self.channels:
            channel.close()


if __name__ == "__main__":
    sys.exit(main())
