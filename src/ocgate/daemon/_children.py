"""The supervisor's children: how each process starts, is watched, restarted and stopped.

Theory of operation: a child (sec-mod, a worker, the NVM collector, the web console) is a fresh
interpreter (:mod:`ocgate.daemon._child`) that inherits a socket pair's end as its channel to the
supervisor and, by role, the others it needs: a worker its channel to sec-mod (announced to
sec-mod first with ``AttachWorker``) and the shared UDP sockets, the console its channels to
sec-mod and the collector (``AttachConsole``). Once it runs, it gets its setup
(:class:`~ocgate.daemon._setup.ChildSetup`) with the files of its role as memory files (it reads
none after dropping root) and counts as ready when it has applied them.

Each start is a new generation: a worker's tunnel ids carry it, and nothing of the old process
(its tunnels, its users, its connections in the accept gate) counts any more. A child that exits
while the node runs is started again after a short delay; a new sec-mod takes the workers and the
console with it (their channels to the old one are gone), a new collector the console. A child
that cannot be started again stops the node.

:class:`ChildProcesses` holds the children and knows nothing else of the supervisor: what a child
is told, how its requests are answered and what its exit releases come in as callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import sys
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from ocgate import ipc
from ocgate.config import Config
from ocgate.control import UserInfo
from ocgate.daemon._setup import ChildSetup, tls_files
from ocgate.daemon._store import shared_store_url
from ocgate.ipc import messages as m
from ocgate.ipc._channel import Handler

__all__ = ["Child", "ChildProcesses", "tls_memory_files"]

log = logging.getLogger("ocgate")

_RESTART_DELAY = 0.5


@dataclass(slots=True, eq=False)
class Child:
    """One of the children (by role and index): its process of the current generation, the
    supervisor's channel to it and what the supervisor counts for it."""

    role: str
    index: int
    generation: int
    proc: asyncio.subprocess.Process | None = None
    channel: ipc.Channel | None = None
    ready: bool = False
    tunnels: int = 0
    handed: int = 0
    users: list[UserInfo] = field(default_factory=list)
    pending: set[int] = field(default_factory=set)
    """Gate tokens of the connections handed to this worker that are not done yet."""


@dataclass(frozen=True, slots=True)
class _Command:
    """How the supervisor starts a child."""

    argv: list[str]
    pass_fds: list[int]
    """The descriptors the child inherits."""
    ends: list[socket.socket]
    """The ends among them that belong to the child alone: closed once it has started."""


class ChildProcesses:
    """Starts the supervisor's children, restarts any that dies and stops them.

    :param config: the configuration at start (the number of workers, the node's name).
    :param setup: what a child is told (its :class:`ChildSetup`), asked at each start and reload.
    :param handler: answers the requests of a child.
    :param forget: a child's process is gone (or replaced): its connections leave the accept gate.
    :param stopping: whether the node stops (a child that exits then is not started again).
    :param drain_deadline: when a draining node stops (``None``: not draining).
    :param request_stop: stops the node (a child could not be started again).
    """

    def __init__(
        self,
        config: Config,
        *,
        setup: Callable[[Child], ChildSetup],
        handler: Callable[[Child], Handler],
        forget: Callable[[Child], None],
        stopping: Callable[[], bool],
        drain_deadline: Callable[[], float | None],
        request_stop: Callable[[], None],
    ) -> None:
        self._setup = setup
        self._handler = handler
        self._forget = forget
        self._stopping = stopping
        self._drain_deadline = drain_deadline
        self._request_stop = request_stop
        count = config.workers or os.cpu_count() or 1
        self.workers = [Child("worker", i, 0) for i in range(count)]
        self.auth = Child("auth", 0, 0)
        self.nvm: Child | None = None
        self.console: Child | None = None
        """The web console (``admin-listen``): unprivileged, it asks the others for everything."""
        self.udp: list[socket.socket] = []
        """The shared UDP sockets every worker inherits (bound and closed by the supervisor)."""
        self.admin_sock: socket.socket | None = None
        """The console's listening socket (bound and closed by the supervisor)."""
        self._generations = _first_generation(config)
        self._tasks: set[asyncio.Task[object]] = set()

    async def spawn(self, child: Child) -> None:
        """Start ``child`` and wait until it is configured and confined."""
        self._new_generation(child)
        sup_end, child_end = ipc.socket_pair()
        command = await self._command(child, child_end)
        child.proc = await asyncio.create_subprocess_exec(
            *command.argv,
            pass_fds=command.pass_fds,
            stdin=asyncio.subprocess.DEVNULL,
            cwd="/",  # Paths in the configuration are absolute; run-as-user may not enter ours.
        )
        for end in command.ends:
            end.close()
        channel = self._open_channel(child, child.proc, sup_end)
        await self._configure(child, channel)
        child.ready = True
        deadline = self._drain_deadline()
        if child.role == "worker" and deadline is not None:
            with contextlib.suppress(ipc.ChannelClosed):  # A restarted worker drains too.
                channel.send(m.Drain(deadline=deadline))
        log.info(
            "event=child-started role=%s index=%d generation=%d pid=%d",
            child.role,
            child.index,
            child.generation,
            child.proc.pid,
        )

    async def stop(self, child: Child, notify: bool) -> None:
        """Ask ``child`` to stop (``notify``: telling its clients), kill it if it does not."""
        if child.channel is not None and not child.channel.closed:
            with contextlib.suppress(ipc.ChannelClosed, ipc.RemoteFailure, TimeoutError):
                await child.channel.call(m.Stop(notify=notify), timeout=10.0)
        if child.proc is not None and child.proc.returncode is None:
            try:
                await asyncio.wait_for(child.proc.wait(), 5.0)
            except TimeoutError:
                child.proc.kill()
                await child.proc.wait()

    async def reconfigure(self, tls: list[int]) -> bool:
        """Send every running child but the collector its setup again, the workers with ``tls``
        (their TLS files, which the caller closes); False if sec-mod refused it."""
        for child in [self.auth, *self.workers, *([self.console] if self.console else [])]:
            if child.channel is None:
                continue
            payload = pickle.dumps(self._setup(child))
            try:
                await child.channel.call(m.Configure(payload=payload),
                                         tls if child.role == "worker" else [])  # fmt: skip
            except ipc.RemoteFailure as exc:
                log.error("event=reload-failed role=%s reason=%r", child.role, str(exc))
                if child is self.auth:
                    return False
            except (ipc.ChannelClosed, TimeoutError):
                pass
        return True

    # Starting -------------------------------------------------------------------------------------

    def _new_generation(self, child: Child) -> None:
        """``child`` gets a process of a new generation: nothing of its old one counts."""
        self._generations += 1
        child.generation = self._generations
        child.ready = False
        child.tunnels = 0
        child.users = []
        self._forget(child)

    async def _command(self, child: Child, child_end: socket.socket) -> _Command:
        """How to start ``child`` with ``child_end`` as its channel: the peers it talks to
        directly are told of their ends before it starts."""
        argv = [sys.executable, "-m", "ocgate.daemon._child", child.role,
                "--channel", str(child_end.fileno())]  # fmt: skip
        ends = [child_end]
        shared: list[int] = []
        if child.role == "worker":
            args, role_ends, shared = await self._worker_command(child)
        elif child.role == "console":
            args, role_ends = await self._console_command()
        else:
            args, role_ends = [], []
        ends += role_ends
        return _Command(argv + args, [end.fileno() for end in ends] + shared, ends)

    async def _worker_command(
        self, child: Child
    ) -> tuple[list[str], list[socket.socket], list[int]]:
        """A worker's own arguments, its end of a channel to sec-mod (announced to sec-mod with
        ``AttachWorker``) and the shared UDP sockets, which the supervisor keeps."""
        args = ["--index", str(child.index), "--generation", str(child.generation)]
        auth_end, worker_auth = ipc.socket_pair()
        args += ["--auth", str(worker_auth.fileno())]
        udp_fds = [sock.fileno() for sock in self.udp]
        if udp_fds:
            args += ["--udp", ",".join(str(fd) for fd in udp_fds)]
        assert self.auth.channel is not None
        try:
            await self.auth.channel.call(
                m.AttachWorker(index=child.index, generation=child.generation),
                [auth_end.fileno()],
            )
        finally:
            auth_end.close()
        return args, [worker_auth], udp_fds

    async def _console_command(self) -> tuple[list[str], list[socket.socket]]:
        """The console's arguments and its ends of channels to sec-mod and, when it runs, the
        NVM collector."""
        ends = [await _attach_console(self.auth)]
        args = ["--auth", str(ends[0].fileno())]
        if self.nvm is not None and self.nvm.channel is not None:
            ends.append(await _attach_console(self.nvm))
            args += ["--nvm", str(ends[1].fileno())]
        return args, ends

    def _open_channel(
        self, child: Child, proc: asyncio.subprocess.Process, sup_end: socket.socket
    ) -> ipc.Channel:
        """The supervisor's channel to ``child``, taking the messages of its role, and the task
        that watches ``proc`` until it exits."""
        accepts = {
            "worker": m.SUPERVISOR_FROM_WORKER,
            "auth": m.SUPERVISOR_FROM_AUTH,
            "nvm": m.SUPERVISOR_FROM_NVM,
            "console": m.SUPERVISOR_FROM_CONSOLE,
        }[child.role]
        channel = ipc.Channel(
            sup_end,
            accepts=accepts,
            handler=self._handler(child),
            name=f"{child.role} {child.index}",
        )
        child.channel = channel
        self._background(self._watch(child, proc, channel))
        return channel

    async def _configure(self, child: Child, channel: ipc.Channel) -> None:
        """Send ``child`` its setup with the files of its role (a worker's TLS files, the
        console's), and wait until it has applied them."""
        setup = self._setup(child)
        fds = (
            tls_memory_files(setup.config)
            if child.role == "worker"
            else (self._console_files(setup.config) if child.role == "console" else [])
        )
        try:
            await channel.call(m.Configure(payload=pickle.dumps(setup)), fds, timeout=60.0)
        finally:
            for fd in fds:
                os.close(fd)

    def _console_files(self, config: Config) -> list[int]:
        """The console's listening socket, certificate and key (memory files), and its audit
        log opened for appending (the console cannot open files under /etc after its drop)."""
        assert self.admin_sock is not None
        fds = [os.dup(self.admin_sock.fileno())]
        cert = config.admin_server_cert or config.server_cert[0]
        key = config.admin_server_key or config.server_key[0]
        for path in (cert, key):
            fds.append(_memory_file(path, "ocgate-console-tls"))
        if config.admin_audit_log:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            fds.append(os.open(config.admin_audit_log, flags, 0o600))
        return fds

    # Watching -------------------------------------------------------------------------------------

    async def _watch(
        self, child: Child, proc: asyncio.subprocess.Process, channel: ipc.Channel
    ) -> None:
        status = await proc.wait()
        channel.close()
        if self._stopping() or child.proc is not proc:
            return
        child.ready = False
        self._forget(child)
        log.error(
            "event=child-exited role=%s index=%d pid=%d status=%d", child.role, child.index,
            proc.pid, status,
        )  # fmt: skip
        await asyncio.sleep(_RESTART_DELAY)
        if self._stopping():
            return
        try:
            if child is self.auth:
                await self.spawn(child)
                for worker in self.workers:  # Their channels to the old auth service are gone.
                    if worker.proc is not None and worker.proc.returncode is None:
                        worker.proc.kill()
            else:
                await self.spawn(child)
            console = self.console
            restarted_peer = child is self.auth or child is self.nvm
            if restarted_peer and console is not None and console.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    console.proc.kill()  # Its channel to the old process is gone: it restarts.
        except Exception:
            log.exception("event=child-restart-failed role=%s index=%d", child.role, child.index)
            self._request_stop()

    def _background(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def tls_memory_files(config: Config) -> list[int]:
    """The certificates, keys and CAs (default host, then each vhost: ``tls_files``) as
    memory files a worker can read after dropping root."""
    return [_memory_file(path, "ocgate-tls") for path in tls_files(config)]


def _memory_file(path: str, name: str) -> int:
    """A memory file (``name``) holding a copy of the file at ``path``."""
    with open(path, "rb") as f:
        data = f.read()
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd


async def _attach_console(peer: Child) -> socket.socket:
    """A channel between the console and ``peer`` (sec-mod or the collector): one end
    goes to ``peer`` now, the other is returned for the console's command line."""
    peer_end, console_end = ipc.socket_pair()
    try:
        assert peer.channel is not None
        await peer.channel.call(m.AttachConsole(), [peer_end.fileno()])
    finally:
        peer_end.close()
    return console_end


def _first_generation(config: Config) -> int:
    """Where this node's child generations (hence its tunnel ids) start: 0 alone; with a shared
    session store a base from the node name, so the ids ``ctl show users`` lists from several
    nodes differ (``ctl`` refuses an id that two nodes share, in the unlikely event)."""
    if shared_store_url(config) is None:
        return 0
    return (zlib.crc32(config.node_name.encode()) % 999 + 1) * 1000
