"""The in-process NVM API (``InternalApi``): the same handlers as HTTP, an allow-list, bounds.

The store is the conftest's real SQLite store with its five flows; the last test runs a real
collector service (UDP listener, no ``nvm-api-listen``) fed by the benchmark's flow generator.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from nvm_api_data import AA, T0, TOKEN, live_stats, offsets
from starlette.testclient import TestClient

from ocgate.nvm._config import ListenAddress, NvmSettings
from ocgate.nvm._hub import FlowHub
from ocgate.nvm._serve import start_service
from ocgate.nvm.api import create_app
from ocgate.nvm.api._internal import MAX_BODY, InternalApi
from ocgate.nvm.store import Store

BENCH = Path(__file__).resolve().parents[4] / "bench" / "bench_nvm_ingest.py"


@pytest.fixture
def internal(store: Store, hub: FlowHub) -> InternalApi:
    return InternalApi(store, hub, stats=live_stats, clock=lambda: T0 + 60)


@pytest.fixture
def http(store: Store, hub: FlowHub) -> Iterator[TestClient]:
    app = create_app(store, hub, [TOKEN], stats=live_stats, clock=lambda: T0 + 60)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def get(runner: asyncio.Runner, api: InternalApi, path: str, query: str = "") -> tuple[int, object]:
    status, body = runner.run(api.get(path, query))
    return status, json.loads(body)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("flows", ""),
        ("flows", "user=alice&limit=1"),
        ("flows", "host=%2A.example.com"),  # Percent-encoded, as a browser sends it.
        ("endpoints", "since=" + str(T0 + 50)),
        (f"endpoints/{AA.upper()}/interfaces", ""),
        ("top", "by=host&user=alice"),
        ("top", "by=process&user=CORP%5Cbob&limit=1"),
        ("timeline", f"since={T0}&until={T0 + 60}&step=20&user=alice"),
        ("timeline", ""),
        ("exporters", ""),
        ("flows", "limit=0"),
        ("top", "by=udid"),
        ("timeline", "step=1"),  # 24 h of one-second buckets: 400.
        ("endpoints/zz/interfaces", ""),
    ],
)
def test_answers_exactly_as_the_http_api(
    runner: asyncio.Runner,
    internal: InternalApi,
    http: TestClient,
    path: str,
    query: str,
) -> None:
    status, body = runner.run(internal.get(path, query))
    response = http.get(f"/api/v1/{path}?{query}")
    assert (status, json.loads(body)) == (response.status_code, response.json())


def test_results_come_from_the_store(runner: asyncio.Runner, internal: InternalApi) -> None:
    status, body = get(runner, internal, "flows", "user=alice")
    assert status == 200
    assert offsets(body["flows"]) == [20, 0]  # type: ignore[index]
    status, body = get(runner, internal, "top", "by=host&user=alice")
    assert (status, body) == (
        200,
        [{"key": "www.example.com", "bytes": 141}, {"key": "API.Example.COM", "bytes": 10}],
    )
    status, body = get(runner, internal, "exporters")
    assert status == 200
    assert [e["live"] for e in body["exporters"]] == [True, False]  # type: ignore[index]


@pytest.mark.parametrize(
    "path",
    [
        "stream",
        "openapi.json",
        "flows/",
        "/flows",
        "flows?user=alice",
        "FLOWS",
        "endpoints//interfaces",
        "endpoints/aa/interfaces/x",
        "endpoints/a b/interfaces",
        "../flows",
        "top/../flows",
        "nothing",
        "",
    ],
)
def test_paths_outside_the_allow_list_are_404(
    runner: asyncio.Runner, internal: InternalApi, path: str
) -> None:
    assert runner.run(internal.get(path, "")) == (404, b'{"error":"Not Found"}')


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("flows", "bogus=1", "unknown parameter"),
        ("flows", "user=a&user=b", "more than once"),
        ("flows", "since=yesterday", "since"),
        ("top", "", "by"),
        ("timeline", "step=0", "step"),
        ("timeline", f"since={T0}&until={T0 + 1001}&step=1", "at most 1000 buckets"),
        ("exporters", "x=1", "no parameters"),
        ("flows", "user=caf\u00e9", "not ASCII"),
        ("flows", "user=" + "a" * 9000, "longer than"),
    ],
)
def test_parameter_errors_are_400_json(
    runner: asyncio.Runner, internal: InternalApi, path: str, query: str, message: str
) -> None:
    status, body = get(runner, internal, path, query)
    assert status == 400
    assert message in body["error"]  # type: ignore[index]


def test_large_responses_are_refused(runner: asyncio.Runner, store: Store, hub: FlowHub) -> None:
    # Live counters with a huge value stand in for a huge answer (the cap is on the bytes).
    def big_stats() -> dict[str, dict[str, object]]:
        return {"udp://10.8.0.2:50000": {"note": "x" * (MAX_BODY + 1)}}

    api = InternalApi(store, hub, stats=big_stats)
    status, body = get(runner, api, "exporters")
    assert (status, body) == (502, {"error": "response too large"})
    assert get(runner, api, "top", "by=user")[0] == 200  # Other routes are unaffected.


def test_handler_failure_is_500_json(
    runner: asyncio.Runner, store: Store, hub: FlowHub, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_stats() -> dict[str, object]:
        raise RuntimeError("collector gone")

    api = InternalApi(store, hub, stats=broken_stats)
    status, body = get(runner, api, "exporters")
    assert (status, body) == (500, {"error": "Internal Server Error"})
    assert "handler-failed" in caplog.text


def test_slow_handler_is_504(runner: asyncio.Runner, store: Store, hub: FlowHub) -> None:
    async def slow_stats() -> dict[str, object]:
        await asyncio.sleep(5)
        return {}

    api = InternalApi(store, hub, stats=slow_stats, timeout=0.05)
    status, body = get(runner, api, "exporters")
    assert status == 504
    assert "in time" in body["error"]  # type: ignore[index]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_nvm_ingest", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_service_without_http_api_answers_in_process(tmp_path: Path) -> None:
    """A collector without nvm-api-listen, fed by the benchmark's generator over UDP."""
    send_flows = _bench().send_flows
    settings = NvmSettings(
        listen=(ListenAddress("udp", "127.0.0.1", 0),), store=f"sqlite://{tmp_path}/nvm.db"
    )

    async def scenario() -> None:
        service = await start_service(settings)
        try:
            assert service.api is None
            api = service.internal_api()
            port = service.collector.listeners.bound[0].port
            await asyncio.to_thread(send_flows, "127.0.0.1", port, 45, user="CORP\\carol")
            await asyncio.to_thread(send_flows, "127.0.0.1", port, 5, hostname="bench.example")
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                await service.collector.flush()
                status, body = await api.get("flows", "limit=1000")
                assert status == 200
                flows = json.loads(body)["flows"]
                if len(flows) == 50 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert len(flows) == 50
            carol = [f for f in flows if f["user"] == "CORP\\carol"]
            assert len(carol) == 45
            assert {f["process_name"] for f in carol} == {"bench.exe"}
            assert {f["exporter"] for f in flows} == {"udp://127.0.0.1"}
            status, body = await api.get("top", "by=host")
            assert json.loads(body) == [
                {"key": "bench.example", "bytes": sum(1500 + n for n in range(5))}
            ]
            status, body = await api.get("timeline", "user=CORP%5Ccarol")
            points = json.loads(body)["points"]
            assert sum(p["bytes"] for p in points) == sum(1500 + n for n in range(45))
            status, body = await api.get("exporters", "")
            [exporter] = json.loads(body)["exporters"]
            assert (exporter["live"], exporter["records"], exporter["sequence_gaps"]) == (
                True,
                50,
                0,
            )
        finally:
            await service.close()

    asyncio.run(scenario())
