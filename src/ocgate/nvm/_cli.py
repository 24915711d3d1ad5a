"""``ocgate nvm``: run the collector alone, or list stored flows in the terminal.

``ocgate nvm serve -c FILE [-f] [-d LEVEL]`` runs the collector of ``FILE``'s ``nvm-*`` and
``metrics-listen`` keys (``-f``: foreground, the only mode; accepted for symmetry with ``ocgate
serve``). ``FILE`` may hold only those keys, or be a whole ocserv.conf whose VPN keys are skipped.

``ocgate nvm query [--store URL | -c FILE] [--user U] [--udid X] [--process P] [--host H]
[--address A] [--since T] [--until T] [--limit N] [--json]`` prints the newest flows first. Times
are epoch seconds, ISO 8601 (``2026-11-26T10:00``, UTC unless an offset is given) or a duration
back from now (``15m``, ``2h``, ``7d``).
"""

from __future__ import annotations

import argparse
import asyncio  # noqa: TID251 -- the CLI runs the store's coroutines.
import dataclasses
import datetime as _dt
import json
import os
import re
import sys
import time  # noqa: TID251 -- "2h" means two hours before now.
from collections.abc import Sequence

from ocgate.errors import ConfigError

__all__ = ["main", "parse_time"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: float | None = None) -> float:
    """Epoch seconds, ISO 8601 (UTC by default) or a duration before ``now`` (``2h``).

    :raises ValueError: none of those.
    """
    match = _DURATION.fullmatch(text.strip())
    if match:
        current = time.time() if now is None else now
        return current - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    moment = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return moment.timestamp()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocgate nvm", description="NVM (nvzFlow) collector")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the collector alone")
    serve.add_argument(
        "-c", "--config", required=True, help="collector-only or ocserv.conf-style config file"
    )
    serve.add_argument("-f", "--foreground", action="store_true", help="(always foreground)")
    serve.add_argument("-d", "--debug", type=int, default=0, metavar="LEVEL")
    query = sub.add_parser("query", help="list stored flows, newest first")
    source = query.add_mutually_exclusive_group()
    source.add_argument("--store", help="store URL (sqlite:///path or postgresql://…)")
    source.add_argument("-c", "--config", help="take nvm-store from this config file")
    for name in ("user", "udid", "process", "host", "address"):
        query.add_argument(f"--{name}")
    query.add_argument("--since", type=parse_time)
    query.add_argument("--until", type=parse_time)
    query.add_argument("--limit", type=int, default=50)
    query.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def main(argv: Sequence[str]) -> int:
    """Entry point of ``ocgate nvm``."""
    args = _parser().parse_args(list(argv))
    if args.command == "serve":
        from ocgate.nvm._serve import run_standalone

        return run_standalone(args.config, debug=args.debug)
    try:
        _check_store(_store_url(args))
        return asyncio.run(_query(args))
    except (ConfigError, ValueError, OSError) as exc:
        print(f"ocgate nvm query: {exc}", file=sys.stderr)
        return 1


def _store_url(args: argparse.Namespace) -> str:
    if args.store:
        return str(args.store)
    from ocgate.config import load_collector_config

    if args.config:
        return load_collector_config(args.config).settings.store
    from ocgate.nvm._config import DEFAULT_STORE

    return DEFAULT_STORE


def _check_store(url: str) -> None:
    if not url.startswith(("postgresql://", "postgres://")):
        path = url.removeprefix("sqlite://")
        if not os.path.exists(path):
            raise OSError(f"no NVM database at {path}")


async def _query(args: argparse.Namespace) -> int:
    from ocgate.nvm.store import FlowFilter, open_store

    url = _store_url(args)
    filters = FlowFilter(
        user=args.user,
        udid=args.udid,
        process=args.process,
        host=args.host,
        address=args.address,
        since=args.since,
        until=args.until,
    )
    store = open_store(url)
    await store.open()
    try:
        page = await store.query_flows(filters, limit=max(1, args.limit))
    finally:
        await store.close()
    if args.json:
        for flow in page.items:
            print(json.dumps(dataclasses.asdict(flow), default=str, sort_keys=True))
    else:
        print(format_table(page.items))
    return 0


def _when(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _endpoint(addr: str | None, port: int | None) -> str:
    if addr is None:
        return "-"
    host = f"[{addr}]" if ":" in addr and port is not None else addr
    return host if port is None else f"{host}:{port}"


_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}


def format_table(flows: Sequence[object]) -> str:
    """A fixed-width table of flows (what ``ocgate nvm query`` prints)."""
    header = ("END (UTC)", "USER", "PROTO", "SOURCE", "DESTINATION", "BYTES", "PROCESS", "HOST")
    rows: list[tuple[str, ...]] = [header]
    for flow in flows:
        f = dataclasses.asdict(flow)  # type: ignore[call-overload]
        if f["bytes_in"] is not None or f["bytes_out"] is not None:
            size = f"{f['bytes_in'] or 0}/{f['bytes_out'] or 0}"
        else:
            size = "-" if f["octets"] is None else str(f["octets"])
        proto = f["protocol"]
        rows.append(
            (
                _when(f["time_end"]),
                f["vpn_user"] or f["user"] or "-",
                "-" if proto is None else _PROTOCOLS.get(proto, str(proto)),
                _endpoint(f["src_addr"], f["src_port"]),
                _endpoint(f["dst_addr"], f["dst_port"]),
                size,
                f["process_name"] or "-",
                f["dst_hostname"] or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    if len(rows) == 1:
        lines.append("(no flows)")
    return "\n".join(line.rstrip() for line in lines)
