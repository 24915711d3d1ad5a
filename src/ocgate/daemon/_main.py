"""``ocgate serve``: process set-up around the gateway (logging, pid file, signals, daemonising).

Flags and their meaning follow ``ocserv`` (ocserv-compatibility.md §1, §2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence

from ocgate import ipc
from ocgate._version import __version__
from ocgate.config import Config, load_config
from ocgate.daemon._logs import SYSLOG_FACILITIES, setup_logging
from ocgate.daemon._memory import trim, trim_periodically
from ocgate.daemon._supervisor import LogSetup, Supervisor
from ocgate.errors import ConfigError, OcgateError

__all__ = ["build_parser", "serve", "setup_logging"]

log = logging.getLogger("ocgate")

DEFAULT_CONFIG = "/etc/ocserv/ocserv.conf"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocgate serve",
        description=(
            "Run the VPN gateway. Reads an ocserv.conf; the flags have ocserv's meaning. "
            "Signals: SIGTERM/SIGINT stop (clients are told, TUN devices removed), SIGUSR2 logs a "
            "statistics line."
        ),
    )
    parser.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help="configuration file (%(default)s)"
    )
    parser.add_argument(
        "-f", "--foreground", action="store_true", help="do not fork into the background"
    )
    parser.add_argument("-p", "--pid-file", help="write the process id here (overrides pid-file)")
    parser.add_argument(
        "-d",
        "--debug",
        type=int,
        metavar="LEVEL",
        help="log level 0-9999 (1 basic, 2 info, 3+ debug)",
    )
    parser.add_argument(
        "-t", "--test-config", action="store_true", help="check the configuration and exit"
    )
    parser.add_argument("-e", "--log-stderr", action="store_true", help="log to standard error")
    parser.add_argument("-s", "--syslog", action="store_true", help="log to syslog")
    parser.add_argument(
        "--syslog-facility",
        choices=sorted(SYSLOG_FACILITIES),
        default="daemon",
        metavar="FACILITY",
        help="syslog facility (%(default)s; auth, authpriv, daemon, local0-local7, user, ...)",
    )
    parser.add_argument(
        "--no-chdir",
        action="store_true",
        help="keep the working directory when forking into the background",
    )
    parser.add_argument(
        "-x",
        "--traceable",
        action="store_true",
        help="accepted for ocserv compatibility; processes stay untraceable (see docs)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text: 'key=value' event lines (default); json: one JSON object per line",
    )
    parser.add_argument("-v", "--version", action="version", version=f"ocgate {__version__}")
    return parser


def serve(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ocgate: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ocgate: error: cannot read {args.config}: {exc.strerror}", file=sys.stderr)
        return 1
    to_stderr = args.log_stderr or args.foreground or (args.debug is not None and not args.syslog)
    logs = LogSetup(
        level=args.debug if args.debug is not None else config.log_level,
        stderr=to_stderr,
        json=args.log_format == "json",
        facility=args.syslog_facility,
    )
    setup_logging(logs.level, to_stderr=logs.stderr, json_lines=logs.json, facility=logs.facility)
    if args.traceable:
        log.warning(
            "event=flag-ignored flag=--traceable reason='processes holding keys and cookies "
            "stay non-dumpable and untraceable'"
        )
    for warning in config.warnings:
        log.warning("event=config-warning %s", warning)
    try:
        _check_run_as(config)
        _check_in_child(config)
    except ConfigError as exc:
        log.error("event=config-error %s", exc)
        print(f"ocgate: error: {exc}", file=sys.stderr)
        return 1
    if args.test_config:
        print(f"ocgate: {args.config}: configuration is valid")
        return 0
    if not args.foreground:
        _daemonize(chdir=not args.no_chdir)
    pid_file = args.pid_file or config.pid_file
    return asyncio.run(_run(config, logs, pid_file))


def _check_in_child(config: Config) -> None:
    """:func:`check_serviceable` in a forked child, so the supervisor never loads the TLS and
    authentication stacks it does not use (its memory stays that of a small process).

    :raises ConfigError: with the child's one-line message.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        status = 0
        try:
            check_serviceable(config)
        except (ConfigError, OSError) as exc:
            os.write(write_end, str(exc).encode()[:65536])
            status = 1
        except BaseException as exc:
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode()[:65536])
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0 or message:
        raise ConfigError(message or f"configuration check exited with status {status}")


def check_serviceable(config: Config) -> None:
    """What the children would refuse at start, refused here with ``file:line`` (``-t`` too).

    :raises ConfigError: a certificate, key, password file or RADIUS setting cannot be used.
    """
    from ocgate.auth import build_auth_backends
    from ocgate.daemon._setup import tls_files, vhost_tls_context
    from ocgate.tls import load_credentials

    _ctx, warnings = vhost_tls_context(config, tls_files(config))
    for host in config.hosts():  # The default host, then each [vhost:NAME].
        load_credentials(host.server_cert[0])
        build_auth_backends(host)
    for warning in warnings:
        log.warning("event=config-warning %s", warning)


async def _run(config: Config, logs: LogSetup, pid_file: str | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    notify = False

    def stop_now() -> None:
        nonlocal notify
        notify = True
        stop.set()

    # Handlers first: a signal that arrives while the children start must not kill the process
    # (SIGUSR2 and SIGHUP would by default).
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    supervisor = Supervisor(config, logs=logs, request_stop=stop_now, request_exit=stop.set)
    tasks: set[asyncio.Task[object]] = set()

    def spawn(coro: Coroutine[object, object, object]) -> None:
        task = loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def stats() -> None:
        log.info("%s", await supervisor.stats_line())

    loop.add_signal_handler(signal.SIGUSR2, lambda: spawn(stats()))
    loop.add_signal_handler(signal.SIGHUP, lambda: spawn(supervisor.reload()))
    try:
        await supervisor.start()
    except (OSError, OcgateError, ipc.RemoteFailure, ipc.ChannelClosed, TimeoutError) as exc:
        log.error("event=start-failed reason=%r", str(exc))
        await supervisor.stop()
        return 1
    if pid_file:
        _write_pid_file(pid_file)
    log.info("event=started version=%s pid=%d config=%s", __version__, os.getpid(), config.source)
    trim()  # The configuration check and the start-up left their garbage in the C heap.
    spawn(trim_periodically())
    try:
        await stop.wait()
    finally:
        log.info("event=stopping")
        await supervisor.stop(notify=notify)
        if pid_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pid_file)
    log.info("event=stopped")
    return 0


def _check_run_as(config: Config) -> None:
    """``run-as-user``/``run-as-group`` must name existing accounts, as ocserv checks at start-up.

    Workers, the authentication service and the collector become this account (``nobody`` when
    unset); the supervisor stays root.
    """
    import grp
    import pwd

    if config.run_as_user is not None:
        try:
            pwd.getpwnam(config.run_as_user)
        except KeyError:
            raise ConfigError(
                f"no such user {config.run_as_user!r}", file=config.source, key="run-as-user"
            ) from None
    if config.run_as_group is not None:
        try:
            grp.getgrnam(config.run_as_group)
        except KeyError:
            raise ConfigError(
                f"no such group {config.run_as_group!r}", file=config.source, key="run-as-group"
            ) from None


def _write_pid_file(path: str) -> None:
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


def _daemonize(*, chdir: bool = True) -> None:
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    if chdir:  # ocserv's --no-chdir keeps the directory (relative paths in scripts stay valid).
        os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
