"""SIEM export: Cisco NVM keys; syslog over UDP and TCP; JSON lines file and HTTP; back-pressure."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nvm_collector_lib import DATA_262, DATA_267, TEMPLATES, opened_store, wait_for

from ocgate.nvm._collector import Collector
from ocgate.nvm._config import NvmSettings, SinkAddress
from ocgate.nvm._records import EndpointRecord, FlowRecord, GenericRecord, normalise
from ocgate.nvm._siem import (
    JSON_FILE_KEEP,
    JSON_FILE_MAX_BYTES,
    HttpJsonSink,
    JsonFileSink,
    Sink,
    SyslogSink,
    build_sinks,
    format_kv,
    json_line,
    record_keys,
    syslog_message,
)
from ocgate.nvm.ipfix import ExporterKey, IpfixCollectorCore, RecordsDecoded

A = ExporterKey("udp", "10.0.0.1", 50000)
RFC5424 = re.compile(
    rb"<134>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\S+) ocgate-nvm - (flow|sys) - (.*)"
)


def ona_records() -> tuple[FlowRecord, EndpointRecord]:
    core = IpfixCollectorCore()
    for message in (TEMPLATES, DATA_267, DATA_262):
        core.receive_message(message, A, 0.0)
    records = []
    while (event := core.next_event()) is not None:
        if isinstance(event, RecordsDecoded):
            records += [normalise(r) for r in event.records]
    flow, endpoint = records
    assert isinstance(flow, FlowRecord)
    assert isinstance(endpoint, EndpointRecord)
    return flow, endpoint


def test_flow_keys_are_the_cisco_collector_names() -> None:
    flow, endpoint = ona_records()
    line = format_kv(record_keys(flow) or [])
    assert line.startswith("fv=nvzFlow_v3 udid=4ca7d9a79889dc4f18b4cd1b7e9f7e25d0c866a4 ")
    for expected in (
        'sa="192.168.0.10"',
        'da="192.168.0.11"',
        "sp=43879",
        "dp=53",
        "pr=17",
        "fss=1491362773",
        "fes=1491362773",
        "fst='Wed Apr 05 03:26:13 2017'",
        "fet='Wed Apr 05 03:26:13 2017'",
        "ibc=100",
        "obc=41",
        "liuid='MYNVM\\\\dummy11'",  # The backslash escaped (module docstring of _siem).
        "liuidp='dummy11'",
        "liuida='MYNVM'",
        "liuat=2",
        "pa='NT AUTHORITY\\\\NETWORK SERVICE'",
        "pap='NETWORK SERVICE'",
        "paa='NT AUTHORITY'",
        "puat=1",
        "pn='svchost.exe'",
        'ph="740a46a0f5e0e8c933efd28c9901e54e42792619a8a3a6d11e1f0025a7324bc2"',
        "ppn='services.exe'",
        "ds=dummy.du",
        'dh="Unknown"',
        "iid=6",
        "mnl='cryptsvc.dll dhcpcore.dll termsrv.dll",
        "ocg_exporter=udp://10.0.0.1:50000",
    ):
        assert f" {expected}" in f" {line}", expected
    assert "ocg_octets" not in line  # Absent values are left out.
    # The Exabeam cisco-process-network parser's patterns match (nvm-ipfix.md §4).
    assert re.search(r"\ssa=\"(\d{1,3}.\d{1,3}.\d{1,3}.\d{1,3})\"", line)
    assert re.search(r"\spn='*(?=\w)([^']+)'*\s", line).group(1) == "svchost.exe"  # type: ignore[union-attr]
    assert re.search(r"\sfet='*(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (\w+ \d+ \d\d:\d\d:\d\d \d+)", line)
    assert re.search(r"\sudid=([^\s]+)\s", line)
    system = format_kv(record_keys(endpoint) or [])
    assert system == (
        "fv=nvzFlow_v3 udid=4ca7d9a79889dc4f18b4cd1b7e9f7e25d0c866a4 vsn=STATION-102010 "
        "osn='Mac OS X' osv=10.12.6 ose=Sierra sm=- st=x64 ocg_exporter=udp://10.0.0.1:50000"
    )


def test_quotes_inside_values_are_escaped_and_generic_records_are_skipped() -> None:
    flow = FlowRecord(time_start=0, time_end=0, process_name='it\'s "odd".exe', dst_hostname='a"b')
    line = format_kv(record_keys(flow) or [])
    assert "pn='it\\'s \"odd\".exe'" in line
    assert 'dh="a\\"b"' in line
    generic = GenericRecord(time=0, exporter="udp://x:1", odid=0, template_id=300)
    assert record_keys(generic) is None
    assert syslog_message(generic, hostname="h", now=0) is None
    message = syslog_message(flow, hostname="gw1", now=1_700_000_000.5)
    assert message is not None
    match = RFC5424.fullmatch(message)
    assert match is not None
    assert match.group(1) == b"gw1"
    assert message.startswith(b"<134>1 2023-11-14T22:13:20.500Z gw1 ocgate-nvm - flow - fv=")


# --- Escaping (module docstring of ocgate.nvm._siem) ---------------------------------------------

_BARE_VALUE = re.compile(r"[A-Za-z0-9_.:@/+\-]+")
_KEY = re.compile(r"([a-z_]+)=")
_UNESCAPE = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def _unescape(raw: str) -> str:
    """Undo the escaping of one quoted value (or list item), strictly."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        code = raw[i + 1]
        if code in _UNESCAPE:
            out.append(_UNESCAPE[code])
            i += 2
        elif code == "x":
            out.append(chr(int(raw[i + 2 : i + 4], 16)))
            i += 4
        elif code == "u":
            out.append(chr(int(raw[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise ValueError(f"unknown escape {raw[i : i + 2]!r}")
    return "".join(out)


def decode_kv(line: str) -> list[tuple[str, str | list[str]]]:
    """An independent reader of ``format_kv`` lines, written from the documented grammar."""
    assert not any(c in line for c in "\n\r\x85\u2028\u2029")  # One line, whatever the values.
    pairs: list[tuple[str, str | list[str]]] = []
    i = 0
    while i < len(line):
        match = _KEY.match(line, i)
        assert match is not None, line[i:]
        key, i = match.group(1), match.end()
        if line[i] in "'\"":
            quote, i, start = line[i], i + 1, i + 1
            while line[i] != quote:
                i += 2 if line[i] == "\\" else 1
            raw, i = line[start:i], i + 1
            value: str | list[str] = (
                [_unescape(item) for item in raw.split(" ")]
                if key in ("mnl", "mhl")
                else _unescape(raw)
            )
        else:
            bare = _BARE_VALUE.match(line, i)
            assert bare is not None, line[i:]
            value, i = bare.group(), bare.end()
        pairs.append((key, value))
        if i < len(line):
            assert line[i] == " ", line[i:]
            i += 1
    return pairs


ESCAPING_VECTORS = [
    # (key, value, rendered)
    ("pn", "svchost.exe", "pn='svchost.exe'"),
    ("liuid", "MYNVM\\dummy11", "liuid='MYNVM\\\\dummy11'"),
    ("pn", "C:\\dir\\", "pn='C:\\\\dir\\\\'"),  # A trailing backslash cannot eat the quote.
    ("pn", "x' da=\"6.6.6.6", "pn='x\\' da=\"6.6.6.6'"),
    ("dh", 'evil" ocg_vpn_user="root', 'dh="evil\\" ocg_vpn_user=\\"root"'),
    ("dh", "it's", 'dh="it\'s"'),
    ("osn", "a=b", "osn='a=b'"),
    ("osn", "two words", "osn='two words'"),
    ("osv", "10.12.6", "osv=10.12.6"),
    ("osn", "", "osn=''"),
    ("liuid", "a\nb\rc\td", "liuid='a\\nb\\rc\\td'"),
    ("pn", "\x00\x1b[31m\x7f", "pn='\\x00\\x1b[31m\\x7f'"),
    ("pn", "a\u2028b\x85c\u2029", "pn='a\\u2028b\\u0085c\\u2029'"),
    ("pn", "café.exe", "pn='café.exe'"),
    ("mnl", ["a b.dll", "c\\d.dll", "e'f", ""], "mnl='a\\x20b.dll c\\\\d.dll e\\'f '"),
]


@pytest.mark.parametrize(("key", "value", "rendered"), ESCAPING_VECTORS)
def test_escaping_vectors(key: str, value: str | list[str], rendered: str) -> None:
    assert format_kv([(key, value)]) == rendered  # type: ignore[list-item]
    assert decode_kv(rendered) == [(key, value)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["pn", "dh", "osn", "udid", "liuid"]), st.text()),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.text(), min_size=1, max_size=4),
)
def test_no_value_can_add_a_key_or_a_line(pairs: list[tuple[str, str]], modules: list[str]) -> None:
    line = format_kv([*pairs, ("mnl", modules)])  # type: ignore[list-item]
    assert decode_kv(line) == [*pairs, ("mnl", modules)]


def test_hostile_record_round_trips_through_syslog() -> None:
    flow = FlowRecord(
        time_start=0,
        time_end=0,
        src_addr="10.0.0.1",
        process_name="x\\' ocg_vpn_user='root\n<134>1 forged",
        dst_hostname='h"\r\nda="1.2.3.4',
        user="DOM\\",
    )
    message = syslog_message(flow, hostname="gw1", now=0)
    assert message is not None
    assert b"\n" not in message
    assert b"\r" not in message
    text = message.decode().partition(" - flow - ")[2]
    decoded = dict(decode_kv(text))
    assert decoded["pn"] == flow.process_name
    assert decoded["dh"] == flow.dst_hostname
    assert decoded["liuid"] == "DOM\\"
    assert "ocg_vpn_user" not in decoded
    assert [k for k, _ in decode_kv(text)] == [k for k, _ in record_keys(flow) or []]


class UdpCatcher(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.datagrams.append(data)


def test_syslog_over_udp_one_datagram_per_record() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        transport, catcher = await loop.create_datagram_endpoint(
            UdpCatcher, local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        flow, endpoint = ona_records()
        sink = SyslogSink(SinkAddress("udp", "127.0.0.1", port), hostname="gw1")
        sink.start()
        sink.offer([flow, endpoint, GenericRecord(time=0, exporter="x", odid=0, template_id=9)])
        await wait_for(lambda: len(catcher.datagrams) == 2)
        await sink.stop()
        transport.close()
        first = RFC5424.fullmatch(catcher.datagrams[0])
        second = RFC5424.fullmatch(catcher.datagrams[1])
        assert first is not None
        assert second is not None
        assert (first.group(2), second.group(2)) == (b"flow", b"sys")
        assert b" pn='svchost.exe' " in first.group(3)
        assert sink.stats() | {"queued": 0} == {
            "offered": 3,
            "sent": 2,
            "dropped": 0,
            "skipped": 1,
            "errors": 0,
            "queued": 0,
        }

    asyncio.run(scenario())


async def octet_counted(reader: asyncio.StreamReader) -> list[bytes]:
    """RFC 6587 §3.4.1 frames: ``LEN SP MSG``."""
    frames = []
    while True:
        try:
            length = await reader.readuntil(b" ")
        except asyncio.IncompleteReadError:
            return frames
        frames.append(await reader.readexactly(int(length)))


def test_syslog_over_tcp_uses_octet_counting() -> None:
    async def scenario() -> None:
        received: list[bytes] = []
        done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received.extend(await octet_counted(reader))
            writer.close()
            done.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        flow, endpoint = ona_records()
        sink = SyslogSink(SinkAddress("tcp", "127.0.0.1", port), hostname="gw1")
        sink.start()
        sink.offer([flow] * 5 + [endpoint])
        await sink.drain()
        await sink.stop()  # Closes the connection: the server sees EOF.
        await asyncio.wait_for(done.wait(), 5)
        server.close()
        assert len(received) == 6
        assert all(RFC5424.fullmatch(frame) for frame in received)
        assert b"liuid='MYNVM\\\\dummy11'" in received[0]

    asyncio.run(scenario())


def test_json_lines_file(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "nvm.jsonl"
        flow, endpoint = ona_records()
        sink = JsonFileSink(str(path))
        sink.start()
        sink.offer([flow, endpoint, flow])
        await sink.drain()
        await sink.stop()
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(lines) == 3
        assert lines[0]["fv"] == "nvzFlow_v3"
        assert (lines[0]["sa"], lines[0]["dp"], lines[0]["pn"]) == (
            "192.168.0.10",
            53,
            "svchost.exe",
        )
        assert len(lines[0]["mnl"]) == 10
        assert lines[1]["vsn"] == "STATION-102010"

    asyncio.run(scenario())


def test_json_file_rotates_at_its_size_bound_and_keeps_n_files(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "nvm.jsonl"
        flow, _ = ona_records()
        line = json_line(flow)
        assert line is not None
        bound = 3 * len(line) + 10  # Three records fit, a fourth does not.
        sink = JsonFileSink(str(path), max_bytes=bound, keep=2, batch=1)
        sink.start()
        for index in range(11):
            sink.offer([dataclasses.replace(flow, src_port=index)])
            await sink.drain()
        await sink.stop()
        files = sorted(os.listdir(tmp_path))
        assert files == ["nvm.jsonl", "nvm.jsonl.1", "nvm.jsonl.2"]  # nvm.jsonl.3 was dropped.
        assert all((tmp_path / name).stat().st_size <= bound for name in files)
        ports = {
            name: [json.loads(x)["sp"] for x in (tmp_path / name).read_text().splitlines()]
            for name in files
        }
        assert ports == {"nvm.jsonl.2": [3, 4, 5], "nvm.jsonl.1": [6, 7, 8], "nvm.jsonl": [9, 10]}
        assert sink.rotations == 3
        # Without history the file just starts again.
        single = JsonFileSink(str(tmp_path / "one.jsonl"), max_bytes=bound, keep=0, batch=1)
        single.start()
        for index in range(4):
            single.offer([dataclasses.replace(flow, src_port=index)])
            await single.drain()
        await single.stop()
        assert [json.loads(x)["sp"] for x in (tmp_path / "one.jsonl").read_text().splitlines()] == [
            3
        ]
        assert not (tmp_path / "one.jsonl.1").exists()

    asyncio.run(scenario())


def test_json_file_defaults_are_the_documented_bound() -> None:
    sink = JsonFileSink("/nonexistent/nvm.jsonl")
    assert (sink.max_bytes, sink.keep) == (JSON_FILE_MAX_BYTES, JSON_FILE_KEEP) == (10**8, 5)


def test_json_over_http_posts_batches() -> None:
    async def scenario() -> None:
        bodies: list[bytes] = []
        status = [b"200 OK", b"500 Boom"]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"POST /ingest?src=ocgate HTTP/1.1\r\n")
            assert b"Content-Type: application/x-ndjson" in head
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            bodies.append(await reader.readexactly(length))
            writer.write(
                b"HTTP/1.1 " + status[(len(bodies) - 1) % 2] + b"\r\nContent-Length: 0\r\n\r\n"
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        flow, _ = ona_records()
        sink = HttpJsonSink(f"http://127.0.0.1:{port}/ingest?src=ocgate", batch=3)
        sink.start()
        sink.offer([flow] * 3)
        await wait_for(lambda: sink.sent == 3)
        sink.offer([flow] * 3)  # The server answers 500: a failed batch is dropped and counted.
        await wait_for(lambda: sink.errors == 1)
        await sink.stop()
        server.close()
        assert [len(body.splitlines()) for body in bodies] == [3, 3]
        assert json.loads(bodies[0].splitlines()[0])["pn"] == "svchost.exe"
        assert (sink.sent, sink.dropped) == (3, 3)

    asyncio.run(scenario())


def test_build_sinks_from_settings(tmp_path: Path) -> None:
    settings = NvmSettings(
        syslog=(SinkAddress("udp", "127.0.0.1", 514), SinkAddress("tls", "siem", 6514)),
        json_file=str(tmp_path / "x.jsonl"),
        json_http="https://siem.example/ingest",
    )
    sinks = build_sinks(settings)
    assert [type(s).__name__ for s in sinks] == [
        "SyslogSink",
        "SyslogSink",
        "JsonFileSink",
        "HttpJsonSink",
    ]


@pytest.mark.timeout(120)  # Closing a stalled TCP sink once hung here for good.
def test_stalled_sink_drops_and_counts_while_ingest_runs_at_full_speed(tmp_path: Path) -> None:
    async def scenario() -> None:
        # A TCP syslog server that accepts and never reads: the sink's writes stall.
        stalled: list[asyncio.StreamWriter] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stalled.append(writer)
            await asyncio.sleep(3600)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = SyslogSink(SinkAddress("tcp", "127.0.0.1", port), max_queue=1000, batch=100)
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store, sinks=[sink], linger=0.01)
            await collector.start()
            collector.receive_message(TEMPLATES, A, 0.0)
            sent = 0
            started = time.perf_counter()
            for round_ in range(40):
                for _ in range(500):
                    collector.receive_message(DATA_267, A, 0.0)
                    sent += 1
                await asyncio.sleep(0)  # Let the writer and the sink run.
                assert round_ < 5 or time.perf_counter() - started < 30
            elapsed = time.perf_counter() - started
            await collector.flush()
            await wait_for(lambda: sink.dropped > 0)
            stats = collector.stats()
            assert stats.records_written == sent  # Ingest lost nothing.
            assert sink.dropped > 0  # The SIEM did.
            assert sink.offered == sent
            assert sink.sent + sink.dropped + sink.queued <= sent
            assert sent / elapsed > 2000  # Not paced by the stalled sink.
            for task in collector._tasks:
                task.cancel()
            await asyncio.gather(*collector._tasks, return_exceptions=True)
            collector._tasks.clear()
            await collector.save_state()
            await sink.stop()
        server.close()
        for writer in stalled:
            writer.close()

    asyncio.run(scenario())


def test_sink_base_is_abstract() -> None:
    assert issubclass(SyslogSink, Sink)
