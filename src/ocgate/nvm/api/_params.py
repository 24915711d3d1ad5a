"""Query-parameter parsing of the NVM API and the in-memory flow filter of the live stream.

Every ``parse_*_untrusted`` function reads client-supplied query parameters and raises only
:class:`~ocgate.errors.BadHttpRequest` (status 400), whose message is safe to show the client.
Unknown and repeated parameters are refused, so a typo never silently widens a query.
This module is pure (no I/O, no clock).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, cast

from ocgate.errors import BadHttpRequest
from ocgate.nvm._records import FlowRecord
from ocgate.nvm.store import FlowFilter, TopBy

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_TIMELINE_RANGE",
    "DEFAULT_TOP_LIMIT",
    "MAX_LIMIT",
    "MAX_STEP",
    "MAX_TIMELINE_POINTS",
    "EndpointCursor",
    "EndpointQuery",
    "FlowQuery",
    "TimelineQuery",
    "TopQuery",
    "decode_endpoint_cursor_untrusted",
    "encode_endpoint_cursor",
    "flow_predicate",
    "parse_endpoint_query_untrusted",
    "parse_flow_query_untrusted",
    "parse_stream_query_untrusted",
    "parse_time_untrusted",
    "parse_timeline_query_untrusted",
    "parse_top_query_untrusted",
]

DEFAULT_LIMIT: Final = 100
DEFAULT_TOP_LIMIT: Final = 10
MAX_LIMIT: Final = 1000
DEFAULT_TIMELINE_RANGE: Final = 86400.0
MAX_TIMELINE_POINTS: Final = 1000
MAX_STEP: Final = 10**10
# The default timeline step: the first of these giving at most _TARGET_POINTS buckets, else a
# whole number of days.
_NICE_STEPS: Final = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
_NICE_STEPS_DAYS: Final = (43200, 86400)
_TARGET_POINTS: Final = 120
_MAX_TEXT: Final = 512
_MAX_CURSOR: Final = 512
# Epoch seconds accepted for since/until: 0 .. year 9999.
_MAX_EPOCH: Final = 253402300799.0
_HEX: Final = re.compile(r"[0-9a-fA-F]{1,128}")
_TOP_BY: Final[frozenset[str]] = frozenset({"user", "process", "host"})
_FLOW_FILTER_KEYS: Final = ("user", "udid", "process", "host", "address", "since", "until")

Params = Iterable[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class FlowQuery:
    """``GET /api/v1/flows``."""

    filters: FlowFilter
    limit: int
    cursor: str | None


@dataclass(frozen=True, slots=True)
class EndpointQuery:
    """``GET /api/v1/endpoints``."""

    udid: str | None
    since: float | None
    limit: int
    cursor: str | None


@dataclass(frozen=True, slots=True)
class TopQuery:
    """``GET /api/v1/top``."""

    by: TopBy
    since: float | None
    until: float | None
    limit: int
    user: str | None = None


@dataclass(frozen=True, slots=True)
class TimelineQuery:
    """``GET /api/v1/timeline``: buckets ``first * step`` … ``(first + count - 1) * step``."""

    user: str | None
    since: float
    until: float
    step: int
    first: int
    count: int


@dataclass(frozen=True, slots=True)
class EndpointCursor:
    """Where an endpoint listing resumes: a store page, then UDIDs after ``after``."""

    store_cursor: str | None
    after: str | None


def _single(params: Params, allowed: Iterable[str]) -> dict[str, str]:
    allowed_set = frozenset(allowed)
    result: dict[str, str] = {}
    for key, value in params:
        if key not in allowed_set:
            raise BadHttpRequest(f"unknown parameter {key[:40]!r}")
        if key in result:
            raise BadHttpRequest(f"parameter {key!r} given more than once")
        if len(value) > _MAX_TEXT:
            raise BadHttpRequest(f"parameter {key!r} is too long")
        result[key] = value
    return result


def parse_time_untrusted(name: str, text: str) -> float:
    """Epoch seconds (``1712345678``, ``1712345678.5``) or ISO 8601 (naive means UTC)."""
    try:
        value = float(text)
    except ValueError:
        value = _parse_iso(name, text)
    if not math.isfinite(value) or not 0 <= value <= _MAX_EPOCH:
        raise BadHttpRequest(f"{name}: time out of range")
    return value


def _parse_iso(name: str, text: str) -> float:
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadHttpRequest(f"{name}: not ISO 8601 or epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        raise BadHttpRequest(f"{name}: time out of range") from None


def _limit(text: str | None, default: int) -> int:
    if text is None:
        return default
    if not text.isascii() or not text.isdigit():
        raise BadHttpRequest("limit: not a positive integer")
    value = int(text)
    if not 1 <= value <= MAX_LIMIT:
        raise BadHttpRequest(f"limit: must be between 1 and {MAX_LIMIT}")
    return value


def _text(name: str, text: str | None) -> str | None:
    if text is None:
        return None
    if not text or not text.isprintable():
        raise BadHttpRequest(f"{name}: empty or unprintable")
    return text


def _udid(text: str | None) -> str | None:
    if text is None:
        return None
    if _HEX.fullmatch(text) is None:
        raise BadHttpRequest("udid: not hexadecimal (at most 128 digits)")
    return text.lower()


def _address(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        raise BadHttpRequest("address: not an IPv4 or IPv6 address") from None


def _cursor(text: str | None) -> str | None:
    if text is not None and (not text or len(text) > _MAX_CURSOR or not text.isascii()):
        raise BadHttpRequest("cursor: invalid")
    return text


def _time(name: str, values: dict[str, str]) -> float | None:
    text = values.get(name)
    return None if text is None else parse_time_untrusted(name, text)


def _flow_filter(values: dict[str, str]) -> FlowFilter:
    since, until = _time("since", values), _time("until", values)
    if since is not None and until is not None and until < since:
        raise BadHttpRequest("until is before since")
    return FlowFilter(
        user=_text("user", values.get("user")),
        udid=_udid(values.get("udid")),
        process=_text("process", values.get("process")),
        host=_text("host", values.get("host")),
        address=_address(values.get("address")),
        since=since,
        until=until,
    )


def parse_flow_query_untrusted(params: Params) -> FlowQuery:
    """Parameters of ``GET /api/v1/flows``."""
    values = _single(params, (*_FLOW_FILTER_KEYS, "limit", "cursor"))
    return FlowQuery(
        filters=_flow_filter(values),
        limit=_limit(values.get("limit"), DEFAULT_LIMIT),
        cursor=_cursor(values.get("cursor")),
    )


def parse_stream_query_untrusted(params: Params) -> FlowFilter:
    """Parameters of ``WS /api/v1/stream`` (``token`` is the authentication's business)."""
    return _flow_filter(_single(params, (*_FLOW_FILTER_KEYS, "token")))


def parse_endpoint_query_untrusted(params: Params) -> EndpointQuery:
    """Parameters of ``GET /api/v1/endpoints``."""
    values = _single(params, ("udid", "since", "limit", "cursor"))
    return EndpointQuery(
        udid=_udid(values.get("udid")),
        since=_time("since", values),
        limit=_limit(values.get("limit"), DEFAULT_LIMIT),
        cursor=_cursor(values.get("cursor")),
    )


def parse_top_query_untrusted(params: Params) -> TopQuery:
    """Parameters of ``GET /api/v1/top``."""
    values = _single(params, ("by", "user", "since", "until", "limit"))
    by = values.get("by")
    if by not in _TOP_BY:
        raise BadHttpRequest("by: must be one of user, process, host")
    since, until = _time("since", values), _time("until", values)
    if since is not None and until is not None and until < since:
        raise BadHttpRequest("until is before since")
    return TopQuery(
        by=cast(TopBy, by),
        since=since,
        until=until,
        limit=_limit(values.get("limit"), DEFAULT_TOP_LIMIT),
        user=_text("user", values.get("user")),
    )


def default_step(seconds: float) -> int:
    """The step of a timeline over ``seconds`` when none is asked for: a round number of
    seconds giving at most about 120 buckets (so never more than :data:`MAX_TIMELINE_POINTS`)."""
    for step in (*_NICE_STEPS, *_NICE_STEPS_DAYS):
        if seconds <= step * _TARGET_POINTS:
            return step
    return 86400 * math.ceil(seconds / (86400 * _TARGET_POINTS))


def parse_timeline_query_untrusted(params: Params, *, now: float) -> TimelineQuery:
    """Parameters of ``GET /api/v1/timeline``.

    :param now: the current time (epoch seconds): ``until`` defaults to it, ``since`` to
        :data:`DEFAULT_TIMELINE_RANGE` before ``until``.
    """
    values = _single(params, ("user", "since", "until", "step"))
    until = _time("until", values)
    if until is None:
        until = min(max(now, 0.0), _MAX_EPOCH)
    since = _time("since", values)
    if since is None:
        since = max(0.0, until - DEFAULT_TIMELINE_RANGE)
    if until < since:
        raise BadHttpRequest("until is before since")
    text = values.get("step")
    if text is None:
        step = default_step(until - since)
    else:
        if not text.isascii() or not text.isdigit() or len(text) > 12:
            raise BadHttpRequest("step: not a positive integer (seconds)")
        step = int(text)
        if not 1 <= step <= MAX_STEP:
            raise BadHttpRequest(f"step: must be between 1 and {MAX_STEP} seconds")
    first = int(since // step)  # As the store aligns its buckets.
    count = int(-(-until // step)) - first
    if count > MAX_TIMELINE_POINTS:
        raise BadHttpRequest(
            f"step: too small for the range (at most {MAX_TIMELINE_POINTS} buckets; "
            f"{count} asked for)"
        )
    return TimelineQuery(
        user=_text("user", values.get("user")),
        since=since,
        until=until,
        step=step,
        first=first,
        count=count,
    )


def encode_endpoint_cursor(cursor: EndpointCursor) -> str:
    """The opaque API cursor of an endpoint listing."""
    raw = json.dumps([cursor.store_cursor, cursor.after], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_endpoint_cursor_untrusted(text: str) -> EndpointCursor:
    """Inverse of :func:`encode_endpoint_cursor`."""
    if len(text) > _MAX_CURSOR:
        raise BadHttpRequest("cursor: invalid")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeError, RecursionError):
        # RecursionError: JSON nested deeper than the interpreter's limit (found with
        # fuzz/targets/fuzz_nvm_api.py; a cursor of base64("[" * 2000) raised it).
        raise BadHttpRequest("cursor: invalid") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(item is None or isinstance(item, str) for item in value)
    ):
        raise BadHttpRequest("cursor: invalid")
    return EndpointCursor(store_cursor=value[0], after=value[1])


def _host_matcher(pattern: str) -> Callable[[str], bool]:
    wanted = pattern.lower()
    if wanted.startswith("*."):
        suffix = wanted[1:]
        return lambda host: host.lower().endswith(suffix)
    return lambda host: host.lower() == wanted


def flow_predicate(filters: FlowFilter) -> Callable[[FlowRecord], bool]:
    """The in-memory twin of the store's filter (:class:`FlowFilter` semantics) for the stream."""
    tests: list[Callable[[FlowRecord], bool]] = []
    if (user := filters.user) is not None:
        tests.append(lambda r: r.vpn_user == user or r.user == user)
    if (udid := filters.udid) is not None:
        wanted_udid = udid.lower()
        tests.append(lambda r: r.udid is not None and r.udid.lower() == wanted_udid)
    if (process := filters.process) is not None:
        tests.append(lambda r: r.process_name == process)
    if filters.host is not None:
        match = _host_matcher(filters.host)
        tests.append(lambda r: r.dst_hostname is not None and match(r.dst_hostname))
    if filters.address is not None:
        addr = ipaddress.ip_address(filters.address)
        tests.append(lambda r: _same_address(r.src_addr, addr) or _same_address(r.dst_addr, addr))
    if (since := filters.since) is not None:
        tests.append(lambda r: r.time_end >= since)
    if (until := filters.until) is not None:
        tests.append(lambda r: r.time_end < until)
    return lambda record: all(test(record) for test in tests)


def _same_address(text: str | None, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if text is None:
        return False
    try:
        return ipaddress.ip_address(text) == addr
    except ValueError:
        return False
