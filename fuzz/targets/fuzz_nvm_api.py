"""The NVM API's request parsers: query parameters, times, cursors (only ``BadHttpRequest``) and
the bearer token (only ``AuthFailed``).

Input: a selector byte, then a query string (``a=b&c=d``, decoded as the web framework does) for
``parse_flow_query_untrusted``, ``parse_stream_query_untrusted`` (then the live stream's
``flow_predicate`` on a record), ``parse_endpoint_query_untrusted`` (then its cursor through
``decode_endpoint_cursor_untrusted``), ``parse_top_query_untrusted`` and (selector bit 0x40)
``parse_timeline_query_untrusted``; or a raw value for
``parse_time_untrusted``, ``decode_endpoint_cursor_untrusted`` (given as is, or as the JSON the
harness base64-encodes) and ``parse_bearer_untrusted``.

Oracle: times are finite and within 0 .. year 9999, ``since <= until``, limits within 1-1000,
cursors round-trip through ``encode_endpoint_cursor``, a bearer token is the header's token, a
timeline has 0-1000 buckets of at least a second that cover ``since``..``until``.
"""

from __future__ import annotations

import base64
import math
from urllib.parse import parse_qsl

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.errors import AuthFailed, BadHttpRequest
    from ocgate.nvm._records import FlowRecord
    from ocgate.nvm.api._auth import parse_bearer_untrusted
    from ocgate.nvm.api._params import (
        MAX_LIMIT,
        MAX_TIMELINE_POINTS,
        EndpointCursor,
        decode_endpoint_cursor_untrusted,
        encode_endpoint_cursor,
        flow_predicate,
        parse_endpoint_query_untrusted,
        parse_flow_query_untrusted,
        parse_stream_query_untrusted,
        parse_time_untrusted,
        parse_timeline_query_untrusted,
        parse_top_query_untrusted,
    )
    from ocgate.nvm.store import FlowFilter

RECORD = FlowRecord(
    exporter="udp://192.0.2.1:40000",
    time_start=1_700_000_000.0,
    time_end=1_700_000_010.0,
    src_addr="10.77.0.2",
    dst_addr="2001:db8::1",
    src_port=40000,
    dst_port=443,
    protocol=6,
    dst_hostname="www.example.com",
    process_name="firefox",
    user="alice",
    udid="00ff",
)


def _check_times(since: float | None, until: float | None) -> None:
    for value in (since, until):
        assert value is None or (math.isfinite(value) and 0 <= value <= 253402300799.0)
    assert since is None or until is None or since <= until


def _filters(filters: FlowFilter) -> None:
    _check_times(filters.since, filters.until)
    flow_predicate(filters)(RECORD)


def _query(selector: int, text: str) -> None:
    params = parse_qsl(text, keep_blank_values=True)
    kind = selector % 4
    if kind == 0:
        flows = parse_flow_query_untrusted(params)
        assert 1 <= flows.limit <= MAX_LIMIT
        _filters(flows.filters)
    elif kind == 1:
        _filters(parse_stream_query_untrusted(params))
    elif kind == 2:
        endpoints = parse_endpoint_query_untrusted(params)
        _check_times(endpoints.since, None)
        if endpoints.cursor is not None:
            decode_endpoint_cursor_untrusted(endpoints.cursor)
    elif selector & 0x40:
        timeline = parse_timeline_query_untrusted(params, now=1_700_000_000.0)
        _check_times(timeline.since, timeline.until)
        assert timeline.step >= 1
        assert 0 <= timeline.count <= MAX_TIMELINE_POINTS
        assert timeline.first * timeline.step <= timeline.since
        assert timeline.until <= (timeline.first + timeline.count) * timeline.step
    else:
        top = parse_top_query_untrusted(params)
        assert top.by in ("user", "process", "host")
        _check_times(top.since, top.until)


def _value(selector: int, text: str) -> None:
    kind = selector % 4
    if kind == 0:
        _check_times(parse_time_untrusted("since", text), None)
    elif kind in (1, 3):
        if kind == 3:  # The fuzzer writes the cursor's JSON; the harness encodes it.
            raw = text.encode("utf-8", "surrogateescape")
            text = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        cursor = decode_endpoint_cursor_untrusted(text)
        assert decode_endpoint_cursor_untrusted(encode_endpoint_cursor(cursor)) == cursor
    else:
        try:
            token = parse_bearer_untrusted(text)
        except AuthFailed:
            return
        assert token
        assert token in text


def test_one_input(data: bytes) -> None:
    if not data:
        return
    text = data[1:].decode("utf-8", "surrogateescape")
    try:
        if data[0] & 0x80:
            _value(data[0], text)
        else:
            _query(data[0], text)
    except BadHttpRequest as exc:
        status = exc.status_hint
    else:
        return
    assert status == 400, "the API parsers answer 400 only"


def seeds() -> list[bytes]:
    """Queries like the API tests' (tests/unit/nvm/api) and the documented examples."""
    cursor = encode_endpoint_cursor(EndpointCursor("1700000000:42", "00ff")).encode()
    return [
        b"\x00user=alice&since=1700000000&until=2024-01-02T03:04:05%2B01:00&limit=50",
        b"\x00host=*.example.com&address=2001:db8::1&udid=00FF&process=firefox&cursor=abc",
        b"\x01user=alice&token=x",
        b"\x02udid=abcdef&since=2023-11-14T22:13:20&limit=10&cursor=" + cursor,
        b"\x03by=process&since=1700000000.5&until=1800000000&limit=5",
        b"\x03by=host&user=alice&limit=3",
        b"\x43user=alice&since=1699990000.25&until=1700000000&step=60",
        b"\x43until=2023-11-14T22:13:20Z",
        b"\x80" + b"2023-11-14T22:13:20Z",
        b"\x81" + cursor,
        b"\x83" + b'["1700000000:42","00ff"]',
        b"\x82" + b"Bearer abcdefghijklmnopqrstuvwxyz012345",
    ]


if __name__ == "__main__":
    _harness.main(test_one_input)
