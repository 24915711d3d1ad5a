"""Running the store's :class:`Writer` in a child process (SQLite's writer).

Theory of operation
-------------------
Decoding and normalising records is Python work in the collector's event-loop thread; the
writer's binding of row parameters is Python work too, and in one process the two share the GIL.
So the writer runs in a child process (``forkserver`` context, the server preloading this
module, so starting one is a fork rather than a fresh interpreter) and the parent only pickles
the already-prepared row tuples of each batch: measured, pickling costs the parent about
2.5 µs a flow (unpickling the child 2 µs), where the writer took some 18 µs of its GIL. The pipe
is enlarged to 1 MiB, so the next batch waits in the kernel while the child commits.

The parent keeps the engine's bounded queue (back-pressure is unchanged). A **forwarder**
thread takes items off it and sends them down a pipe: a record list as it is, a call as
``(id, op, args)`` (its future waits in ``pending``), :data:`STOP` as ``None``. A **receiver**
thread reads the child's replies: ``("ready", error)`` once connected, ``("stats", rows_written,
write_errors)`` after each record transaction and ``("done", id, error, result)`` per call, so a
flush's reply arrives after the counters of every batch before it. If the child dies, the
receiver sees end-of-file and fails every pending call (and the forwarder every later one), so
errors surface instead of hanging. The child ignores SIGINT/SIGTERM: it stops when told to or
when the parent's end of the pipe closes, after committing what it has.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import logging
import multiprocessing
import multiprocessing.connection
import queue
import signal
import threading
from typing import TYPE_CHECKING, Final

from ocgate.nvm.store._writer import STOP, Call, Writer

if TYPE_CHECKING:
    from ocgate.nvm.store._engine import Dialect

__all__ = ["WriterProcess", "settle"]

log = logging.getLogger("ocgate.nvm.store")
_JOIN_TIMEOUT_S: Final = 60.0
_CONTEXT: Final = "forkserver"
_F_SETPIPE_SZ: Final = 1031  # Linux fcntl(2).
_PIPE_BYTES: Final = 1 << 20  # The default /proc/sys/fs/pipe-max-size.
_preload_lock = threading.Lock()
_preloaded = False


class WriterProcess:
    """A :class:`Writer` in a child process, fed from ``items`` (the engine's queue).

    :param settings: keyword arguments of :class:`Writer`.
    """

    def __init__(
        self,
        dialect: Dialect,
        settings: dict[str, float],
        items: queue.Queue[object],
        local: Writer,
    ) -> None:
        self._dialect = dialect
        self._settings = settings
        self._items = items
        self._lock = threading.Lock()
        self._pending: dict[int, concurrent.futures.Future[object]] = {}
        self._next_id = 0
        self._dead: str | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conns: list[multiprocessing.connection.Connection] = []
        self._threads: list[threading.Thread] = []
        self._started = False
        self._local: Writer | None = local
        self._ready = threading.Event()
        self._out: multiprocessing.connection.Connection | None = None
        self.rows_written = 0
        self.write_errors = 0

    @property
    def alive(self) -> bool:
        """Whether the child runs and takes items."""
        return self._started and self._dead is None

    def start(self) -> None:
        """Start the child in the background.

        Until it is ready, calls run in this process on ``local`` (a connected writer), so a
        caller waiting for a migration or a lease change does not wait for the child to start
        (its caches are empty when it starts, so nothing it holds can be stale); the first
        record batch waits for the child.

        If it cannot start (or open its connection), the store dies: calls then fail with a
        :class:`RuntimeError` saying why (the reason is logged too).
        """
        self._started = True
        self._threads = [
            threading.Thread(target=self._forward, name="nvm-store-send", daemon=True),
            threading.Thread(target=self._launch, name="nvm-store-launch", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        """Wait for the child to stop (after :data:`STOP` was queued) and release everything."""
        self._threads[0].join()  # The forwarder, which started the receiver if any.
        for thread in self._threads[1:]:
            thread.join()
        self._cleanup()

    def _launch(self) -> None:
        """Start the child and wait until its connection is open (in a thread of its own)."""
        try:
            self._out = self._start_child()
        finally:
            self._ready.set()

    def _start_child(self) -> multiprocessing.connection.Connection | None:
        ctx = multiprocessing.get_context(_CONTEXT)
        _preload()
        items_r, items_w = ctx.Pipe(duplex=False)
        with contextlib.suppress(OSError):  # A larger pipe lets the next batch wait in the kernel.
            fcntl.fcntl(items_w.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        replies_r, replies_w = ctx.Pipe(duplex=False)
        self._conns = [items_w, replies_r]
        process = ctx.Process(
            target=child_main,
            args=(self._dialect, self._settings, items_r, replies_w),
            name="nvm-store-writer",
            daemon=True,
        )
        try:
            process.start()
            self._process = process
            _, error = replies_r.recv()
        except (EOFError, OSError) as exc:
            error = RuntimeError(f"the NVM store writer process did not start ({exc!r})")
        except Exception as exc:
            error = exc
        finally:
            items_r.close()
            replies_w.close()
        if error is not None:
            log.error("nvm store: the writer process failed: %s", error)
            self._die(f"the NVM store writer failed: {type(error).__name__}: {error}")
            return None
        receiver = threading.Thread(
            target=self._receive, args=(replies_r,), name="nvm-store-recv", daemon=True
        )
        self._threads.append(receiver)
        receiver.start()
        return items_w

    def _cleanup(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.join(_JOIN_TIMEOUT_S)
            if process.exitcode is None:
                log.error("nvm store: the writer process did not stop; killing it")
                process.kill()
                process.join()
            process.close()
        for conn in self._conns:
            conn.close()
        self._conns = []
        self._threads = []

    # -- parent threads ---------------------------------------------------------------------

    def _forward(self) -> None:
        local = self._local
        while True:
            item = self._items.get()
            if local is not None:
                if isinstance(item, Call) and not self._ready.is_set():
                    settle(_future(item), *local.run_call(item))
                    continue
                self._ready.wait()
                local.close()
                local = self._local = None
            out = self._out
            if item is STOP:
                if out is not None and self._dead is None:
                    with contextlib.suppress(OSError):
                        out.send(None)
                return
            future: concurrent.futures.Future[object] | None = None
            message: object = item
            if isinstance(item, Call):
                future = _future(item)
                with self._lock:
                    if self._dead is None:
                        self._next_id += 1
                        self._pending[self._next_id] = future
                        message = (self._next_id, item.op, item.args)
                if self._dead is not None:
                    _fail(future, self._dead)
                    continue
            elif self._dead is not None:
                continue  # Lost with the writer: its death was logged.
            assert out is not None  # Alive, so launched.
            try:
                out.send(message)
            except OSError as exc:
                self._die(f"the NVM store writer process is gone ({exc})")

    def _receive(self, inp: multiprocessing.connection.Connection) -> None:
        while True:
            try:
                message = inp.recv()
            except (EOFError, OSError):
                break
            if message[0] == "stats":
                self.rows_written, self.write_errors = message[1], message[2]
                continue
            _, ident, error, result = message
            with self._lock:
                future = self._pending.pop(ident)
            settle(future, error, result)
        process = self._process
        code = None if process is None else process.exitcode
        self._die(f"the NVM store writer process exited (exit code {code})")

    def _die(self, reason: str) -> None:
        with self._lock:
            first = self._dead is None
            if first:
                self._dead = reason
            pending, self._pending = self._pending, {}
        for future in pending.values():
            _fail(future, reason)


def settle(
    future: concurrent.futures.Future[object], error: BaseException | None, result: object
) -> None:
    """Report a call's outcome to its future (unless it was cancelled)."""
    if not future.set_running_or_notify_cancel():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _future(call: Call) -> concurrent.futures.Future[object]:
    future = call.token
    assert isinstance(future, concurrent.futures.Future)  # The engine's calls carry futures.
    return future


def _fail(future: concurrent.futures.Future[object], reason: str) -> None:
    if future.set_running_or_notify_cancel():
        future.set_exception(RuntimeError(reason))


def _preload() -> None:
    global _preloaded  # Once per process: the forkserver is process-wide.
    with _preload_lock:
        if not _preloaded:
            multiprocessing.get_context(_CONTEXT).set_forkserver_preload([__name__])
            _preloaded = True


# -- child ------------------------------------------------------------------------------------


def child_main(
    dialect: Dialect,
    settings: dict[str, float],
    items: multiprocessing.connection.Connection,
    replies: multiprocessing.connection.Connection,
) -> None:
    """The child process: connect, report ready, run the writer until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    writer = Writer(
        dialect,
        max_batch_rows=int(settings["max_batch_rows"]),
        linger=settings["linger"],
        seg_bits=int(settings["seg_bits"]),
    )
    try:
        writer.connect()
    except Exception as exc:
        _reply(replies, ("ready", exc))
        return
    replies.send(("ready", None))

    def get(timeout: float | None) -> object:
        if timeout is not None and not items.poll(timeout):
            raise queue.Empty
        try:
            message = items.recv()
        except EOFError:  # The parent is gone: commit what we have and stop.
            return STOP
        if message is None:
            return STOP
        if isinstance(message, tuple):
            ident, op, args = message
            return Call(op, args, ident)
        return message

    def done(token: object, error: BaseException | None, result: object) -> None:
        _reply(replies, ("done", token, error, result))

    def stats() -> None:
        replies.send(("stats", writer.rows_written, writer.write_errors))

    try:
        writer.run(get, done, stats)
    finally:
        writer.close()
        replies.close()


def _reply(replies: multiprocessing.connection.Connection, message: tuple[object, ...]) -> None:
    """Send ``("ready", error)`` or ``("done", id, error, result)``; errors that do not pickle
    as text."""
    try:
        replies.send(message)
    except OSError:
        raise
    except Exception:
        error = message[-1] if message[0] == "ready" else message[2]
        text = RuntimeError(f"{type(error).__name__}: {error}")
        replies.send(("ready", text) if message[0] == "ready" else ("done", message[1], text, None))
