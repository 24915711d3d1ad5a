"""Parameter parsing, bearer tokens, the token file and the OpenAPI document (no server)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.errors import AuthFailed, BadHttpRequest, ConfigError
from ocgate.nvm._records import EndpointRecord, FlowRecord, InterfaceRecord, Module
from ocgate.nvm.api import TokenVerifier, load_tokens, openapi_document, parse_bearer_untrusted
from ocgate.nvm.api._params import (
    EndpointCursor,
    decode_endpoint_cursor_untrusted,
    encode_endpoint_cursor,
    parse_endpoint_query_untrusted,
    parse_flow_query_untrusted,
    parse_stream_query_untrusted,
    parse_time_untrusted,
    parse_timeline_query_untrusted,
    parse_top_query_untrusted,
)
from ocgate.nvm.api._schemas import (
    ENDPOINT_FIELDS,
    FLOW_FIELDS,
    INTERFACE_FIELDS,
    dumps,
    flow_to_json,
)

TOKEN = "k3y-0123456789abcdef-TOKEN"
KEYS = st.sampled_from(
    [
        "user",
        "udid",
        "process",
        "host",
        "address",
        "since",
        "until",
        "limit",
        "cursor",
        "by",
        "step",
        "token",
        "x",
    ]
)
PARAMS = st.lists(st.tuples(KEYS | st.text(max_size=5), st.text(max_size=40)), max_size=6)
PARSERS = [
    parse_flow_query_untrusted,
    parse_stream_query_untrusted,
    parse_endpoint_query_untrusted,
    parse_top_query_untrusted,
    functools.partial(parse_timeline_query_untrusted, now=1714557600.0),
]


@pytest.mark.parametrize("parse", PARSERS)
@given(params=PARAMS)
def test_parameter_parsers_raise_only_bad_request(
    parse: object, params: list[tuple[str, str]]
) -> None:
    with contextlib.suppress(BadHttpRequest):
        parse(params)  # type: ignore[operator]


@given(text=st.text(max_size=40))
def test_parse_time_raises_only_bad_request(text: str) -> None:
    try:
        value = parse_time_untrusted("since", text)
    except BadHttpRequest:
        return
    assert math.isfinite(value)
    assert value >= 0


@given(text=st.text(max_size=80))
def test_endpoint_cursor_decoder_raises_only_bad_request(text: str) -> None:
    with contextlib.suppress(BadHttpRequest):
        decode_endpoint_cursor_untrusted(text)


def test_fuzz_deeply_nested_cursor_is_a_bad_request() -> None:
    """fuzz_nvm_api: base64 of 2000 ``[`` made json.loads raise RecursionError.

    The vector is in tests/vectors/fuzz (SOURCES.md).
    """
    vectors = Path(__file__).resolve().parents[3] / "vectors" / "fuzz"
    text = (vectors / "nvm-api-cursor-deep-json.txt").read_text().strip()
    with pytest.raises(BadHttpRequest, match="cursor: invalid"):
        decode_endpoint_cursor_untrusted(text)


@given(store_cursor=st.none() | st.text(max_size=20), after=st.none() | st.text(max_size=20))
def test_endpoint_cursor_round_trips(store_cursor: str | None, after: str | None) -> None:
    cursor = EndpointCursor(store_cursor, after)
    assert decode_endpoint_cursor_untrusted(encode_endpoint_cursor(cursor)) == cursor


@given(header=st.none() | st.text(max_size=60))
def test_bearer_parser_raises_only_auth_failed(header: str | None) -> None:
    try:
        token = parse_bearer_untrusted(header)
    except AuthFailed:
        return
    assert token
    assert " " not in token


def test_parsed_values() -> None:
    query = parse_flow_query_untrusted(
        [("udid", "AB"), ("address", "2001:DB8::0:1"), ("since", "1970-01-01T00:01:00+00:00")]
    )
    assert query.filters.udid == "ab"
    assert query.filters.address == "2001:db8::1"
    assert query.filters.since == 60.0
    assert query.limit == 100
    assert parse_top_query_untrusted([("by", "host")]).limit == 10
    assert parse_top_query_untrusted([("by", "host")]).user is None
    assert parse_top_query_untrusted([("by", "host"), ("user", "alice")]).user == "alice"
    assert parse_endpoint_query_untrusted([("since", "12.5")]).since == 12.5
    with pytest.raises(BadHttpRequest, match="until is before since"):
        parse_top_query_untrusted([("by", "user"), ("since", "10"), ("until", "5")])


TIMELINE_KEYS = st.sampled_from(["user", "since", "until", "step"])
TIMELINE_VALUES = st.sampled_from(
    ["0", "1", "7", "59.5", "3600", "86400", "1714557600", "1714557600.25", "253402300799"]
) | st.text(max_size=12)


@given(
    params=st.lists(st.tuples(TIMELINE_KEYS, TIMELINE_VALUES), max_size=4),
    now=st.floats(min_value=-1e12, max_value=1e12),
)
def test_timeline_query_is_bounded(params: list[tuple[str, str]], now: float) -> None:
    try:
        query = parse_timeline_query_untrusted(params, now=now)
    except BadHttpRequest:
        return
    assert query.step >= 1
    assert 0 <= query.count <= 1000
    assert query.first * query.step <= query.since
    assert query.until <= (query.first + query.count) * query.step


def test_timeline_query_defaults_and_limits() -> None:
    now = 1714557600.0  # A multiple of 900.
    query = parse_timeline_query_untrusted([], now=now)
    assert (query.since, query.until, query.step) == (now - 86400, now, 900)
    assert (query.first * query.step, query.count) == (now - 86400, 96)
    until = parse_timeline_query_untrusted([("until", "7200.5")], now=now)
    assert (until.since, until.until, until.step) == (0.0, 7200.5, 120)  # Not before 1970.
    week = parse_timeline_query_untrusted([("since", str(now - 7 * 86400))], now=now)
    assert (week.step, week.count) == (7200, 84)
    odd = parse_timeline_query_untrusted(
        [("since", "100"), ("until", "250"), ("step", "60"), ("user", "alice")], now=now
    )
    assert (odd.first, odd.count, odd.user) == (1, 4, "alice")  # [60, 300): 4 buckets.
    ok = parse_timeline_query_untrusted([("since", "0"), ("until", "1000"), ("step", "1")], now=0)
    assert ok.count == 1000
    for params, message in [
        ([("since", "0"), ("until", "1001"), ("step", "1")], "at most 1000 buckets"),
        ([("step", "0")], "step"),
        ([("step", "1.5")], "step"),
        ([("step", "-60")], "step"),
        ([("step", "99999999999")], "step"),
        ([("since", str(now + 1))], "until is before since"),
        ([("user", "")], "user"),
        ([("by", "user")], "unknown parameter"),
        ([("step", "60"), ("step", "60")], "more than once"),
    ]:
        with pytest.raises(BadHttpRequest, match=message):
            parse_timeline_query_untrusted(params, now=now)


def test_bearer_scheme_is_case_insensitive() -> None:
    assert parse_bearer_untrusted(f"BEARER  {TOKEN} ") == TOKEN
    for bad in [None, "", "Bearer", f"Basic {TOKEN}", "Bearer a b", "Bearer tok\u00e9n"]:
        with pytest.raises(AuthFailed):
            parse_bearer_untrusted(bad)


def test_verifier_accepts_each_token_and_hides_them() -> None:
    other = "another-token-0123456789"
    verifier = TokenVerifier([TOKEN, other])
    verifier.verify(TOKEN)
    verifier.verify(other)
    for wrong in ["", TOKEN[:-1], TOKEN + "x", TOKEN.upper()]:
        with pytest.raises(AuthFailed) as failed:
            verifier.verify(wrong)
        assert TOKEN not in str(failed.value)
    assert TOKEN not in repr(verifier)


@pytest.mark.parametrize("tokens", [[], ["s3cr3t"], ["has space in it 0123456789"]])
def test_verifier_refuses_weak_configuration(tokens: list[str]) -> None:
    with pytest.raises(ConfigError) as refused:
        TokenVerifier(tokens)
    for token in tokens:
        assert token not in str(refused.value)


def test_load_tokens(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# API clients\n\n  {TOKEN}  \nsecond-token-0123456789\n")
    path.chmod(0o600)
    assert load_tokens(str(path)) == (TOKEN, "second-token-0123456789")
    assert "accessible" not in caplog.text
    path.chmod(0o644)
    load_tokens(str(path))
    assert "accessible by group or others" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("text", ["", "# nothing\n", "tooshort\n", f"{TOKEN}\nbad token here!!\n"])
def test_load_tokens_refuses(tmp_path: Path, text: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ConfigError) as refused:
        load_tokens(str(path))
    assert TOKEN not in str(refused.value)


def test_load_tokens_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_tokens(str(tmp_path / "absent"))


def test_field_tables_name_exactly_the_record_fields() -> None:
    for table, record in [
        (FLOW_FIELDS, FlowRecord),
        (ENDPOINT_FIELDS, EndpointRecord),
        (INTERFACE_FIELDS, InterfaceRecord),
    ]:
        assert set(table) == {f.name for f in dataclasses.fields(record)}


def test_flow_json_is_strict_json() -> None:
    record = FlowRecord(
        time_start=1.0,
        time_end=2.0,
        modules=(Module("a.dll", "00"), Module(None, "11")),
        extra={"coordinates": [float("nan"), 1.5], "x": {"y": float("inf")}},
    )
    data = flow_to_json(record)
    assert data["modules"] == [{"name": "a.dll", "hash": "00"}, {"name": None, "hash": "11"}]
    text = dumps(data).decode()
    assert json.loads(text)["extra"] == {"coordinates": [None, 1.5], "x": {"y": None}}
    assert "NaN" not in text


def test_openapi_document_is_valid_and_complete() -> None:
    document = openapi_document("1.2.3")
    json.loads(dumps(document))  # Serialisable as strict JSON.
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)
    paths = document["paths"]
    assert isinstance(paths, dict)
    assert set(paths) == {
        f"/api/v1/{name}"
        for name in [
            "flows",
            "endpoints",
            "endpoints/{udid}/interfaces",
            "top",
            "timeline",
            "exporters",
            "stream",
            "openapi.json",
        ]
    }
    flows = paths["/api/v1/flows"]["get"]  # type: ignore[index,call-overload]
    names = {p["name"] for p in flows["parameters"]}
    assert names == {
        "user",
        "udid",
        "process",
        "host",
        "address",
        "since",
        "until",
        "limit",
        "cursor",
    }
    top = paths["/api/v1/top"]["get"]  # type: ignore[index,call-overload]
    assert {p["name"] for p in top["parameters"]} == {"by", "user", "since", "until", "limit"}
    timeline = paths["/api/v1/timeline"]["get"]  # type: ignore[index,call-overload]
    assert {p["name"] for p in timeline["parameters"]} == {"user", "since", "until", "step"}
    schemas = document["components"]["schemas"]  # type: ignore[index,call-overload]
    assert set(schemas["Flow"]["properties"]) == set(FLOW_FIELDS)
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            assert "description" in prop or "$ref" in prop or "items" in prop
