"""SIEM export of NVM records: syslog (RFC 5424 over UDP, TCP, TLS), JSON lines to a file or HTTP.

Theory of operation
-------------------
**Key names.** Records are rendered with the short keys of the Cisco NVM Collector (nvm-ipfix.md
§4; the keys Splunk's "CiscoNVM" add-on and the Exabeam ``cisco-process-network`` parser read):
``fv=nvzFlow_v3 udid=… sa="…" da="…" sp=… dp=… pr=… fss=… fes=… fst='…' fet='…' ibc=… obc=…
liuid='…' …``. Flows and endpoint identity records (262-like) are exported; interface and generic
records are not (they have no Cisco keys) and are counted as ``skipped``. ocgate adds a few keys
of its own, all prefixed ``ocg_`` (``ocg_vpn_user``, ``ocg_vpn_session``, ``ocg_exporter``,
``ocg_octets``, ``ocg_packets``), which Cisco parsers ignore.

**Value quoting** follows what the public parsers of the Cisco collector's lines expect: numbers
and hex identifiers bare; addresses, hashes and the destination hostname in double quotes
(``sa="10.0.0.1"``, ``dh="example.com"``); process names, accounts and users always in single
quotes (``pn='svchost.exe'``, ``liuid='MYNVM\\\\dummy11'``); other strings bare when they are one
plain token (``osv=10.12.6``) and in single quotes otherwise (``fet='Wed Apr 05 03:26:13 2017'``);
module lists single-quoted, space separated (the Exabeam parser's patterns, such as
``pn='*(?=\\w)([^']+)'*\\s`` and ``osn=([^\\s]+)``, show these forms).

**Escaping** (every value comes from the exporter, so none may end its quotes early, add a key or
start a new line). Keys are fixed names. A bare value is only ever ``[A-Za-z0-9_.:@/+-]+``;
anything else is quoted, and inside the quotes:

* ``\\\\`` is a backslash (``liuid='MYNVM\\\\dummy11'``, where the Cisco collector writes one: an
  unescaped backslash before the closing quote would swallow it and let the value run on);
* ``\\'`` or ``\\"`` is the quote character of that value (the other quote stands for itself);
* ``\\n``, ``\\r``, ``\\t`` are LF, CR and TAB; ``\\xHH`` is any other C0 control character or DEL;
  ``\\u0085``, ``\\u2028``, ``\\u2029`` are the Unicode line breaks NEL, LS and PS;
* in a list value (``mnl``, ``mhl``) the items are separated by one space, and a space inside an
  item is ``\\x20``.

``=`` and spaces need no escape inside quotes; every other character stands for itself, so lines
stay readable. Decoding is the reverse, left to right; ``tests/unit/nvm/test_siem_export.py``
holds the vectors and an independent decoder.

**Syslog framing.** Each record is one RFC 5424 message: ``<134>1 TIMESTAMP HOST ocgate-nvm -
flow - KEYS`` (facility local0, severity informational; MSGID ``flow`` or ``sys`` mirroring the
Cisco sourcetypes ``cisconvmflowdata`` / ``cisconvmsysdata``; no structured data: the keys are the
MSG, which is how the Cisco collector's lines are parsed). UDP sends one datagram per message; TCP
and TLS use RFC 6587 octet counting (``LEN SP MSG``, the only framing RFC 5425 allows for TLS).

**JSON** sinks write the same keys as one JSON object per record (JSON lines), to a file, or in
batches as an ``application/x-ndjson`` HTTP POST. The file rotates itself at a size bound
(:data:`JSON_FILE_MAX_BYTES`, 100 MB, by default): before a batch would take it past the bound,
``FILE`` becomes ``FILE.1`` (``FILE.1`` becomes ``FILE.2`` and so on; :data:`JSON_FILE_KEEP`, 5,
are kept and the oldest is deleted), so the sink's disk use stays under ``(keep + 1) x max_bytes``
(plus one batch). External rotation (logrotate ``create`` or ``copytruncate``) still works: the
file is reopened for each batch.

**Back-pressure.** Every sink owns a bounded queue. :meth:`Sink.offer` never blocks: records that
do not fit are dropped and counted, so a slow or dead SIEM never stalls ingest. A task per sink
formats and sends batches; a failed send drops its batch (counted) and the sink backs off and
reconnects.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- the sinks are I/O adapters.
import contextlib
import datetime as _dt
import json
import logging
import os
import re
import socket  # noqa: TID251 -- the hostname of the syslog header.
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from ocgate.nvm._config import NvmSettings, SinkAddress
from ocgate.nvm._records import (
    EndpointRecord,
    FlowRecord,
    JsonValue,
    Normalised,
    split_account,
)

__all__ = [
    "FORMAT_VERSION",
    "JSON_FILE_KEEP",
    "JSON_FILE_MAX_BYTES",
    "HttpJsonSink",
    "JsonFileSink",
    "Sink",
    "SyslogSink",
    "build_sinks",
    "format_kv",
    "json_line",
    "record_keys",
    "syslog_message",
]

log = logging.getLogger("ocgate.nvm.siem")

FORMAT_VERSION: Final = "nvzFlow_v3"
JSON_FILE_MAX_BYTES: Final = 100 * 1000 * 1000
"""Size at which the JSON-lines file sink rotates (100 MB)."""
JSON_FILE_KEEP: Final = 5
"""Rotated JSON-lines files kept (``FILE.1`` … ``FILE.5``)."""
_PRI: Final = 16 * 8 + 6  # local0.info
_APP: Final = "ocgate-nvm"
_BARE: Final = re.compile(r"[A-Za-z0-9_.:@/+\-]+")
_DOUBLE: Final = frozenset({"sa", "da", "ph", "pph", "dh"})
_SINGLE: Final = frozenset(
    {"pn", "ppn", "pa", "pap", "paa", "ppa", "ppap", "ppaa", "liuid", "liuidp", "liuida"}
)

Pairs = list[tuple[str, JsonValue]]


def _ctime(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC).strftime("%a %b %d %H:%M:%S %Y")


def _account(pairs: Pairs, key: str, account: str | None) -> None:
    authority, principal = split_account(account)
    pairs += [(key, account), (key + "p", principal), (key + "a", authority)]


def _flow_keys(r: FlowRecord) -> Pairs:
    pairs: Pairs = [
        ("fv", FORMAT_VERSION),
        ("udid", r.udid),
        ("sa", r.src_addr),
        ("da", r.dst_addr),
        ("sp", r.src_port),
        ("dp", r.dst_port),
        ("pr", r.protocol),
        ("fss", int(r.time_start)),
        ("fes", int(r.time_end)),
        ("fst", _ctime(r.time_start)),
        ("fet", _ctime(r.time_end)),
        ("ibc", r.bytes_in),
        ("obc", r.bytes_out),
        ("liuid", r.user),
        ("liuidp", r.user_principal),
        ("liuida", r.user_authority),
        ("liuat", r.user_account_type),
    ]
    _account(pairs, "pa", r.process_account)
    pairs += [("puat", r.process_account_type), ("pn", r.process_name), ("ph", r.process_hash)]
    _account(pairs, "ppa", r.parent_process_account)
    pairs += [
        ("ppuat", r.parent_process_account_type),
        ("ppn", r.parent_process_name),
        ("pph", r.parent_process_hash),
        ("ds", r.dns_suffix),
        ("dh", r.dst_hostname),
        ("iid", r.interface_uid),
    ]
    if r.modules:
        pairs.append(("mnl", [m.name or "" for m in r.modules]))
        pairs.append(("mhl", [m.hash or "" for m in r.modules]))
    pairs += [
        ("ocg_octets", r.octets),
        ("ocg_packets", r.packets),
        ("ocg_vpn_user", r.vpn_user),
        ("ocg_vpn_session", r.vpn_session),
        ("ocg_exporter", r.exporter or None),
    ]
    return [(k, v) for k, v in pairs if v is not None]


def _endpoint_keys(r: EndpointRecord) -> Pairs:
    pairs: Pairs = [
        ("fv", FORMAT_VERSION),
        ("udid", r.udid),
        ("vsn", r.station_name),
        ("osn", r.os_name),
        ("osv", r.os_version),
        ("ose", r.os_edition),
        ("sm", r.manufacturer),
        ("st", r.system_type),
        ("agv", r.agent_version),
        ("ocg_exporter", r.exporter or None),
    ]
    return [(k, v) for k, v in pairs if v is not None]


def record_keys(record: Normalised) -> Pairs | None:
    """The Cisco NVM Collector keys of a record, in order; ``None`` for records without them."""
    if isinstance(record, FlowRecord):
        return _flow_keys(record)
    if isinstance(record, EndpointRecord):
        return _endpoint_keys(record)
    return None


_SPECIAL: Final = re.compile("[\\\\'\"\\x00-\\x20\\x7f\\x85\\u2028\\u2029]")
_NAMED: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(text: str, quote: str, *, item: bool = False) -> str:
    """``text`` escaped for the inside of ``quote`` (module docstring); ``item``: a list item."""

    def one(match: re.Match[str]) -> str:
        char = match.group()
        named = _NAMED.get(char)
        if named is not None:
            return named
        if char == quote:
            return "\\" + char
        if char in "'\"" or (char == " " and not item):
            return char
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 and char != "\x85" else f"\\u{code:04x}"

    return _SPECIAL.sub(one, text)


def _quote(value: str, quote: str) -> str:
    return quote + _escape(value, quote) + quote


def _value(key: str, value: JsonValue) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "'" + " ".join(_escape(str(item), "'", item=True) for item in value) + "'"
    text = str(value)
    if key in _DOUBLE:
        return _quote(text, '"')
    if key not in _SINGLE and _BARE.fullmatch(text):
        return text
    return _quote(text, "'")


def format_kv(pairs: Pairs) -> str:
    """``key=value`` pairs separated by one space, quoted as the module docstring says."""
    return " ".join(f"{key}={_value(key, value)}" for key, value in pairs)


def syslog_message(
    record: Normalised, *, hostname: str, now: float, app: str = _APP
) -> bytes | None:
    """One RFC 5424 message (no framing) for ``record``; ``None`` if it has no Cisco keys."""
    pairs = record_keys(record)
    if pairs is None:
        return None
    stamp = _dt.datetime.fromtimestamp(now, _dt.UTC).isoformat(timespec="milliseconds")
    stamp = stamp.replace("+00:00", "Z")
    msgid = "flow" if isinstance(record, FlowRecord) else "sys"
    return f"<{_PRI}>1 {stamp} {hostname} {app} - {msgid} - {format_kv(pairs)}".encode()


def json_line(record: Normalised) -> bytes | None:
    """One JSON object (one line, newline ended) with the Cisco keys; ``None`` if none."""
    pairs = record_keys(record)
    if pairs is None:
        return None
    return json.dumps(dict(pairs), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class Sink:
    """A bounded queue and a sender task; subclasses implement :meth:`_send`.

    :param name: for logs and stats.
    :param max_queue: records held before new ones are dropped.
    :param batch: records taken per send.
    :param clock: wall clock (seconds) for message timestamps.
    """

    def __init__(
        self,
        name: str,
        *,
        max_queue: int = 100_000,
        batch: int = 1000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self._queue: deque[Normalised] = deque()
        self._max = max_queue
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._clock = clock or (lambda: _dt.datetime.now(_dt.UTC).timestamp())
        self.offered = 0
        self.sent = 0
        """Records handed to the transport."""
        self.dropped = 0
        """Records lost: queue full, or their batch failed to send."""
        self.skipped = 0
        """Records with nothing to export (interface / generic records)."""
        self.errors = 0
        """Failed sends."""
        self._idle = asyncio.Event()
        self._idle.set()

    def offer(self, records: Sequence[Normalised]) -> None:
        """Queue records for export; never blocks (drops and counts what does not fit)."""
        self.offered += len(records)
        room = self._max - len(self._queue)
        if room < len(records):
            self.dropped += len(records) - max(room, 0)
            records = records[: max(room, 0)]
        if records:
            self._queue.extend(records)
            self._idle.clear()
            self._wake.set()

    @property
    def queued(self) -> int:
        """Records waiting."""
        return len(self._queue)

    def stats(self) -> dict[str, int]:
        """Counters of this sink."""
        return {
            "offered": self.offered,
            "sent": self.sent,
            "dropped": self.dropped,
            "skipped": self.skipped,
            "errors": self.errors,
            "queued": len(self._queue),
        }

    def start(self) -> None:
        """Start the sender task (in the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def drain(self, seconds: float = 5.0) -> None:
        """Wait (up to ``seconds``) until the queue is empty and the last batch was handled."""
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            log.warning("nvm sink %s: %d records still queued", self.name, len(self._queue))

    async def stop(self) -> None:
        """Stop the task and close the transport (queued records are dropped, counted)."""
        task, self._task = self._task, None
        while task is not None and not task.done():
            # Again if a cancellation was swallowed on the way (a send finishing at that moment).
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        self.dropped += len(self._queue)
        self._queue.clear()
        await self._close()
        failed = None if task is None or task.cancelled() else task.exception()
        if failed is not None:
            raise failed  # A bug in the sender (it never ends on its own): surface it.

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if backoff:
                await asyncio.sleep(backoff)
            count = min(self._batch, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            try:
                self.sent += await self._send(batch)
                backoff = 0.0
            except (OSError, EOFError, ValueError, TimeoutError) as exc:
                self.errors += 1
                self.dropped += len(batch)
                backoff = min(max(backoff * 2, 0.5), 30.0)
                log.warning(
                    "nvm sink %s: send failed (%s); retrying in %.1fs", self.name, exc, backoff
                )
                await self._close()

    async def _send(self, batch: list[Normalised]) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _close(self) -> None:
        """Drop the connection (reopened on the next send)."""

    def _encode(
        self, batch: list[Normalised], fn: Callable[[Normalised], bytes | None]
    ) -> list[bytes]:
        out: list[bytes] = []
        for record in batch:
            data = fn(record)
            if data is None:
                self.skipped += 1
            else:
                out.append(data)
        return out


_CLOSE_TIMEOUT = 2.0
"""Seconds a closing stream connection may take to flush before it is reset."""


class SyslogSink(Sink):
    """RFC 5424 syslog over UDP, TCP or TLS (octet counting on streams).

    :param address: where to send.
    :param ssl_context: for ``tls``; a default verifying context when ``None``.
    :param hostname: HOSTNAME of the header (default: this host's name).
    """

    def __init__(
        self,
        address: SinkAddress,
        *,
        ssl_context: ssl.SSLContext | None = None,
        hostname: str | None = None,
        max_queue: int = 100_000,
        batch: int = 1000,
    ) -> None:
        super().__init__(f"syslog {address}", max_queue=max_queue, batch=batch)
        self.address = address
        self._ssl = ssl_context
        self._hostname = hostname or socket.gethostname() or "-"
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _send(self, batch: list[Normalised]) -> int:
        now = self._clock()
        messages = self._encode(
            batch, lambda r: syslog_message(r, hostname=self._hostname, now=now)
        )
        if self.address.transport == "udp":
            transport = await self._udp_transport()
            for message in messages:
                transport.sendto(message)
            return len(messages)
        writer = await self._stream()
        writer.write(b"".join(b"%d %s" % (len(m), m) for m in messages))
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
        # arrives as the drain completes, and Sink.stop then waited for ever.
        async with asyncio.timeout(30.0):
            await writer.drain()
        return len(messages)

    async def _udp_transport(self) -> asyncio.DatagramTransport:
        if self._udp is None or self._udp.is_closing():
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(self.address.host, self.address.port)
            )
        return self._udp

    async def _stream(self) -> asyncio.StreamWriter:
        if self._writer is None or self._writer.is_closing():
            context: ssl.SSLContext | None = None
            if self.address.transport == "tls":
                context = self._ssl or ssl.create_default_context()
            _, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.address.host, self.address.port, ssl=context), 30.0
            )
        assert self._writer is not None  # Just opened.
        return self._writer

    async def _close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
            # close() first flushes what is buffered; a SIEM that stopped reading would make
            # that wait forever (and the collector's shutdown with it): give up and reset.
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    with contextlib.suppress(OSError, ssl.SSLError):
                        await writer.wait_closed()
            except TimeoutError:
                writer.transport.abort()


class JsonFileSink(Sink):
    """JSON lines appended to a file that rotates at a size bound (module docstring).

    :param path: the file (opened per batch, so external log rotation works too).
    :param max_bytes: rotate before a batch would make the file larger than this.
    :param keep: rotated files kept (``path.1`` newest); 0 keeps none.
    """

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = JSON_FILE_MAX_BYTES,
        keep: int = JSON_FILE_KEEP,
        max_queue: int = 100_000,
        batch: int = 1000,
    ) -> None:
        super().__init__(f"json-file {path}", max_queue=max_queue, batch=batch)
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.rotations = 0
        """How many times the file was rotated."""

    async def _send(self, batch: list[Normalised]) -> int:
        lines = self._encode(batch, json_line)
        if lines:
            await asyncio.to_thread(self._append, b"".join(lines))
        return len(lines)

    def _append(self, data: bytes) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > self.max_bytes:
            self._rotate()
        with self.path.open("ab") as stream:
            stream.write(data)

    def _rotate(self) -> None:
        """``path`` → ``path.1`` → … → ``path.keep`` (the oldest is dropped)."""
        name = str(self.path)
        if self.keep < 1:
            self.path.unlink(missing_ok=True)
        else:
            for index in range(self.keep - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{name}.{index}", f"{name}.{index + 1}")
            os.replace(name, f"{name}.1")
        self.rotations += 1


class HttpJsonSink(Sink):
    """Batches of JSON lines POSTed to an HTTP(S) endpoint (``application/x-ndjson``).

    A response other than 2xx counts as a failed send.
    """

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_queue: int = 100_000,
        batch: int = 1000,
    ) -> None:
        super().__init__(f"json-http {url}", max_queue=max_queue, batch=batch)
        parts = urlsplit(url)
        self.url = url
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()

    async def _send(self, batch: list[Normalised]) -> int:
        lines = self._encode(batch, json_line)
        if not lines:
            return 0
        body = b"".join(lines)
        await asyncio.wait_for(self._post(body), 30.0)
        return len(lines)

    async def _post(self, body: bytes) -> None:
        reader, writer = await asyncio.open_connection(self._host, self._port, ssl=self._ssl)
        try:
            head = (
                f"POST {self._path} HTTP/1.1\r\nHost: {self._host}\r\n"
                "Content-Type: application/x-ndjson\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + body)
            await writer.drain()
            status = await reader.readline()
            parts = status.split()
            if len(parts) < 2 or not parts[1].startswith(b"2"):
                raise ValueError(f"HTTP status {status[:64]!r}")
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


def build_sinks(settings: NvmSettings) -> list[Sink]:
    """The sinks the settings ask for (not started)."""
    sinks: list[Sink] = [SyslogSink(address) for address in settings.syslog]
    if settings.json_file:
        sinks.append(JsonFileSink(settings.json_file))
    if settings.json_http:
        sinks.append(HttpJsonSink(settings.json_http))
    return sinks
