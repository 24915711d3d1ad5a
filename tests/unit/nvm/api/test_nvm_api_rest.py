"""The REST endpoints against a real SQLite store (starlette's TestClient)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from nvm_api_data import AA, BB, CC, OTHER_TOKEN, T0, TOKEN, offsets
from starlette.testclient import TestClient

from ocgate.nvm._hub import FlowHub
from ocgate.nvm._records import FlowRecord
from ocgate.nvm.api import create_app, flow_predicate
from ocgate.nvm.api._params import parse_flow_query_untrusted
from ocgate.nvm.store import FlowFilter, Store

ISO_T20 = datetime.fromtimestamp(T0 + 20, UTC).isoformat()

# (query parameters, expected flow offsets newest first)
FILTER_CASES = [
    ({}, [40, 30, 20, 10, 0]),
    ({"user": "alice"}, [20, 0]),  # The VPN login (vpn_user from the lease of 10.8.0.2).
    ({"user": "CORP\\bob"}, [40, 10]),  # The NVM user.
    ({"user": "nobody"}, []),
    ({"udid": AA.upper()}, [20, 0]),
    ({"udid": CC}, [30]),
    ({"process": "svchost.exe"}, [20, 10]),
    ({"process": "SVCHOST.EXE"}, []),
    ({"host": "example.com"}, [10]),
    ({"host": "*.example.com"}, [20, 0]),
    ({"host": "WWW.EXAMPLE.COM"}, [0]),
    ({"address": "192.0.2.53"}, [30, 0]),
    ({"address": "2001:0db8:0:0::1"}, [20]),
    ({"address": "10.8.0.3"}, [40, 10]),
    ({"since": str(T0 + 20)}, [40, 30, 20]),
    ({"until": str(T0 + 20)}, [10, 0]),
    ({"since": ISO_T20}, [40, 30, 20]),
    ({"since": ISO_T20.replace("+00:00", "Z")}, [40, 30, 20]),
    ({"since": ISO_T20.replace("+00:00", "")}, [40, 30, 20]),  # Naive ISO is UTC.
    ({"since": str(T0 + 10), "until": str(T0 + 40)}, [30, 20, 10]),
    ({"user": "alice", "process": "svchost.exe"}, [20]),
    ({"udid": BB, "host": "other.org", "address": "203.0.113.9"}, [40]),
]


@pytest.mark.parametrize(("params", "expected"), FILTER_CASES)
def test_flow_filters_return_exactly_the_matching_flows(
    client: TestClient, params: dict[str, str], expected: list[int]
) -> None:
    response = client.get("/api/v1/flows", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert offsets(body["flows"]) == expected
    assert body["next_cursor"] is None


@pytest.mark.parametrize(("params", "expected"), FILTER_CASES)
def test_stream_predicate_agrees_with_the_store(
    runner: asyncio.Runner, store: Store, params: dict[str, str], expected: list[int]
) -> None:
    filters = parse_flow_query_untrusted(params.items()).filters
    stored = runner.run(store.query_flows(FlowFilter(), limit=1000)).items
    chosen = [r.time_end - T0 for r in stored if flow_predicate(filters)(r)]
    assert chosen == expected


def test_flow_object_carries_every_field(client: TestClient) -> None:
    [item] = client.get("/api/v1/flows", params={"until": str(T0 + 1)}).json()["flows"]
    assert set(item) == set(FlowRecord.__dataclass_fields__)
    assert item["vpn_user"] == "alice"
    assert item["vpn_session"] == "s1"
    assert item["user_authority"] is None  # The fixture sets the raw user only.
    assert item["bytes_in"] == 100
    assert item["modules"] == []
    assert isinstance(item["id"], int)


def test_cursor_paging_walks_every_flow_once(client: TestClient) -> None:
    seen: list[float] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2"} if cursor is None else {"limit": "2", "cursor": cursor}
        body = client.get("/api/v1/flows", params=params).json()
        pages += 1
        seen += offsets(body["flows"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [40, 30, 20, 10, 0]
    assert pages == 3


def test_cursor_keeps_the_filters(client: TestClient) -> None:
    first = client.get("/api/v1/flows", params={"udid": BB, "limit": "1"}).json()
    assert offsets(first["flows"]) == [40]
    params = {"udid": BB, "limit": "1", "cursor": first["next_cursor"]}
    second = client.get("/api/v1/flows", params=params).json()
    assert offsets(second["flows"]) == [10]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"limit": "-1"},
        {"since": "yesterday"},
        {"since": "nan"},
        {"until": "-5"},
        {"since": str(T0 + 10), "until": str(T0)},
        {"address": "10.8.0.300"},
        {"udid": "xyz"},
        {"cursor": "not-a-cursor"},
        {"cursor": "AAAA"},
        {"bogus": "1"},
        {"user": ""},
        {"token": TOKEN},
    ],
)
def test_bad_flow_parameters_are_400_with_json(client: TestClient, params: dict[str, str]) -> None:
    response = client.get("/api/v1/flows", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json()["error"], str)
    assert TOKEN not in response.text


def test_repeated_parameter_is_400(client: TestClient) -> None:
    response = client.get("/api/v1/flows?user=a&user=b")
    assert response.status_code == 400
    assert "more than once" in response.json()["error"]


def test_limit_maximum_is_accepted(client: TestClient) -> None:
    assert client.get("/api/v1/flows", params={"limit": "1000"}).status_code == 200


def test_top_users_processes_hosts(client: TestClient) -> None:
    by_user = client.get("/api/v1/top", params={"by": "user"}).json()
    # bob: 1000+0 + 10+10; alice (vpn_user of 10.8.0.2): 100+41 + 5+5; 10.8.0.4 has no user.
    assert by_user == [{"key": "CORP\\bob", "bytes": 1020}, {"key": "alice", "bytes": 151}]
    by_process = client.get("/api/v1/top", params={"by": "process", "limit": "1"}).json()
    assert by_process == [{"key": "svchost.exe", "bytes": 1010}]
    params = {"by": "host", "since": str(T0 + 10), "until": str(T0 + 40)}
    by_host = client.get("/api/v1/top", params=params).json()
    assert by_host == [
        {"key": "example.com", "bytes": 1000},
        {"key": "API.Example.COM", "bytes": 10},
    ]


@pytest.mark.parametrize(
    "params", [{}, {"by": "udid"}, {"by": "user", "limit": "0"}, {"by": "user", "cursor": "x"}]
)
def test_top_bad_parameters(client: TestClient, params: dict[str, str]) -> None:
    assert client.get("/api/v1/top", params=params).status_code == 400


def test_top_of_one_user(client: TestClient) -> None:
    params = {"by": "host", "user": "alice"}  # The VPN login: attributed by the lease.
    assert client.get("/api/v1/top", params=params).json() == [
        {"key": "www.example.com", "bytes": 141},
        {"key": "API.Example.COM", "bytes": 10},
    ]
    params = {"by": "process", "user": "CORP\\bob"}  # The NVM user.
    assert client.get("/api/v1/top", params=params).json() == [
        {"key": "svchost.exe", "bytes": 1000},
        {"key": "chrome.exe", "bytes": 20},
    ]
    params = {"by": "host", "user": "alice", "since": str(T0 + 1)}
    assert client.get("/api/v1/top", params=params).json() == [
        {"key": "API.Example.COM", "bytes": 10}
    ]
    assert client.get("/api/v1/top", params={"by": "host", "user": "carol"}).json() == []
    assert client.get("/api/v1/top", params={"by": "host", "user": ""}).status_code == 400


def test_timeline_counts_bytes_per_bucket(client: TestClient) -> None:
    t0 = int(T0)
    params = {"since": str(T0), "until": str(T0 + 60), "step": "20"}
    assert client.get("/api/v1/timeline", params=params).json() == {
        "step": 20,
        "points": [
            {"time": t0, "bytes": 141 + 1000},
            {"time": t0 + 20, "bytes": 10 + 7},
            {"time": t0 + 40, "bytes": 20},
        ],
    }
    params = {**params, "user": "alice"}
    assert client.get("/api/v1/timeline", params=params).json()["points"] == [
        {"time": t0, "bytes": 141},
        {"time": t0 + 20, "bytes": 10},
        {"time": t0 + 40, "bytes": 0},  # Every bucket of the range, empty ones too.
    ]
    iso = {"since": ISO_T20, "until": str(T0 + 41), "step": "30"}
    # The first bucket [T0, T0 + 30) holds since but counts only flows from since (the one at 20).
    assert client.get("/api/v1/timeline", params=iso).json()["points"] == [
        {"time": t0, "bytes": 10},
        {"time": t0 + 30, "bytes": 7 + 20},
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"step": "0"},
        {"step": "x"},
        {"since": str(T0), "until": str(T0 + 1001), "step": "1"},
        {"since": str(T0 + 10), "until": str(T0)},
        {"by": "user"},
        {"limit": "10"},
    ],
)
def test_timeline_bad_parameters(client: TestClient, params: dict[str, str]) -> None:
    response = client.get("/api/v1/timeline", params=params)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


def test_timeline_defaults_to_the_last_day(store: Store, hub: FlowHub) -> None:
    app = create_app(store, hub, [TOKEN], clock=lambda: T0 + 60)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        body = client.get("/api/v1/timeline").json()
    assert body["step"] == 900
    points = body["points"]
    # since = T0 + 60 - 24 h; buckets aligned to 900 s from the one holding since to T0's.
    assert [p["time"] for p in points] == list(range(int(T0) - 96 * 900, int(T0) + 1, 900))
    assert points[-1] == {"time": int(T0), "bytes": 141 + 1000 + 10 + 7 + 20}
    assert sum(p["bytes"] for p in points) == 1178


def test_endpoints_listing_filters_and_pages(client: TestClient) -> None:
    body = client.get("/api/v1/endpoints").json()
    assert [e["udid"] for e in body["endpoints"]] == [AA, BB, CC]
    assert body["next_cursor"] is None
    assert body["endpoints"][0]["os_name"] == "Windows"
    only = client.get("/api/v1/endpoints", params={"udid": BB.upper()}).json()
    assert [e["udid"] for e in only["endpoints"]] == [BB]
    seen: list[str] = []
    params = {"since": str(T0 + 50), "limit": "1"}
    while True:
        page = client.get("/api/v1/endpoints", params=params).json()
        seen += [e["udid"] for e in page["endpoints"]]
        if page["next_cursor"] is None:
            break
        params = {**params, "cursor": page["next_cursor"]}
    assert seen == [BB, CC]


@pytest.mark.parametrize("cursor", ["@@@", "bm90IGpzb24", "WzEsMl0", "WyJ4Il0"])
def test_endpoints_bad_cursor(client: TestClient, cursor: str) -> None:
    assert client.get("/api/v1/endpoints", params={"cursor": cursor}).status_code == 400


def test_interfaces_of_an_endpoint(client: TestClient) -> None:
    body = client.get(f"/api/v1/endpoints/{AA.upper()}/interfaces").json()
    assert [(i["interface_uid"], i["interface_name"]) for i in body["interfaces"]] == [(6, "eth0")]
    assert client.get(f"/api/v1/endpoints/{BB}/interfaces").json() == {"interfaces": []}
    assert client.get("/api/v1/endpoints/zz/interfaces").status_code == 400


def test_exporters_merge_live_and_saved_counters(client: TestClient) -> None:
    body = client.get("/api/v1/exporters").json()
    assert body == {
        "exporters": [
            {
                "exporter": "udp://10.8.0.2:50000",
                "live": True,
                "records": 9,
                "templates": 4,
                "sequence_gaps": 0,
                "malformed": 2,
                "counters": body["exporters"][0]["counters"],
            },
            {
                "exporter": "udp://10.8.0.9:2055",
                "live": False,
                "records": 5,
                "templates": 2,
                "sequence_gaps": 1,
                "malformed": 0,
                "counters": {"records": 5, "templates": 2, "sequence_gaps": 1, "messages": 3},
            },
        ]
    }
    assert body["exporters"][0]["counters"]["messages"] == 4
    assert client.get("/api/v1/exporters", params={"x": "1"}).status_code == 400


def test_unknown_path_is_json_404(client: TestClient) -> None:
    response = client.get("/api/v1/nothing")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}


def test_wrong_method_is_405(client: TestClient) -> None:
    assert client.post("/api/v1/flows").status_code == 405


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/flows", "/api/v1/top?by=user", "/api/v1/nothing"])
def test_missing_or_wrong_token_is_401(
    client: TestClient, headers: dict[str, str], path: str
) -> None:
    client.headers.pop("Authorization")
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]
    if headers:
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_token_in_query_is_not_accepted_for_rest(client: TestClient) -> None:
    client.headers.pop("Authorization")
    assert client.get("/api/v1/flows", params={"token": TOKEN}).status_code == 401


def test_every_configured_token_works(client: TestClient) -> None:
    client.headers["Authorization"] = f"bearer {OTHER_TOKEN}"
    assert client.get("/api/v1/flows").status_code == 200


def test_openapi_document_needs_no_token(client: TestClient) -> None:
    client.headers.pop("Authorization")
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")
