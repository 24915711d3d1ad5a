"""``WS /api/v1/stream`` through starlette's TestClient, fed by the hub."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from nvm_api_data import BB, T0, TOKEN, flow
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from ocgate.nvm._hub import FlowHub
from ocgate.nvm.api import create_app
from ocgate.nvm.store import Store


def test_published_flow_arrives_within_a_second(client: TestClient, hub: FlowHub) -> None:
    with client.websocket_connect("/api/v1/stream") as ws:
        assert hub.subscribers == 1
        record = flow(100, udid=BB, user="CORP\\bob", modules=())
        started = time.monotonic()
        hub.publish([record])
        message = ws.receive_json()
        assert time.monotonic() - started < 1.0
    assert message["time_end"] == T0 + 100
    assert message["udid"] == BB
    assert message["user"] == "CORP\\bob"
    assert message["id"] is None  # Live flows have no row id.


def test_filtered_out_flows_are_not_delivered(client: TestClient, hub: FlowHub) -> None:
    path = "/api/v1/stream?user=CORP%5Cbob&host=*.example.com"
    with client.websocket_connect(path) as ws:
        hub.publish(
            [
                flow(1, user="CORP\\alice", dst_hostname="www.example.com"),
                flow(2, user="CORP\\bob", dst_hostname="example.com"),
                flow(3, user="CORP\\bob", dst_hostname="a.example.com"),
            ]
        )
        hub.publish([flow(4, user="CORP\\bob", dst_hostname="b.example.com")])
        assert ws.receive_json()["time_end"] == T0 + 3
        assert ws.receive_json()["time_end"] == T0 + 4


def test_two_streams_see_their_own_flows(client: TestClient, hub: FlowHub) -> None:
    with (
        client.websocket_connect("/api/v1/stream?process=a.exe") as ws_a,
        client.websocket_connect("/api/v1/stream?process=b.exe") as ws_b,
    ):
        hub.publish([flow(1, process_name="b.exe"), flow(2, process_name="a.exe")])
        assert ws_a.receive_json()["process_name"] == "a.exe"
        assert ws_b.receive_json()["process_name"] == "b.exe"


def test_disconnect_unsubscribes(client: TestClient, hub: FlowHub) -> None:
    with client.websocket_connect("/api/v1/stream"):
        assert hub.subscribers == 1
    deadline = time.monotonic() + 2
    while hub.subscribers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hub.subscribers == 0


def test_token_in_query_string_is_accepted(client: TestClient, hub: FlowHub) -> None:
    client.headers.pop("Authorization")
    with client.websocket_connect(f"/api/v1/stream?token={TOKEN}&udid={BB}") as ws:
        hub.publish([flow(5, udid=BB)])
        assert ws.receive_json()["udid"] == BB


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/v1/stream", {}),
        ("/api/v1/stream?token=wrong-token-0123456789", {}),
        (f"/api/v1/stream?token={TOKEN}&token={TOKEN}", {}),
        (f"/api/v1/stream?token={TOKEN}", {"Authorization": "Bearer wrong-token-0123456789"}),
    ],
)
def test_stream_without_valid_token_is_401(
    client: TestClient, hub: FlowHub, path: str, headers: dict[str, str]
) -> None:
    client.headers.pop("Authorization")
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect(path, headers=headers),
    ):
        pass
    assert denied.value.status_code == 401
    assert denied.value.headers["www-authenticate"].startswith("Bearer")
    assert hub.subscribers == 0


@pytest.mark.parametrize(
    "query", ["since=never", "address=nope", "limit=5", "udid=xyz", "user=a&user=b"]
)
def test_stream_with_bad_parameters_is_400(client: TestClient, hub: FlowHub, query: str) -> None:
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect(f"/api/v1/stream?{query}"),
    ):
        pass
    assert denied.value.status_code == 400
    assert "error" in denied.value.json()
    assert hub.subscribers == 0


@pytest.fixture
def one_stream_client(store: Store, hub: FlowHub) -> Iterator[TestClient]:
    app = create_app(store, hub, [TOKEN], max_streams=1)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client
    hub.close()


def test_too_many_streams_is_503(one_stream_client: TestClient) -> None:
    with one_stream_client.websocket_connect("/api/v1/stream"):
        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            one_stream_client.websocket_connect("/api/v1/stream"),
        ):
            pass
        assert denied.value.status_code == 503


def test_hub_close_ends_the_stream(client: TestClient, hub: FlowHub) -> None:
    with client.websocket_connect("/api/v1/stream") as ws:
        hub.close()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1001
