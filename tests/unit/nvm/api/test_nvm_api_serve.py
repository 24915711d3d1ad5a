"""``serve_api`` on a real loopback port: httpx for REST, the websockets client for the stream."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path

import httpx
import pytest
from nvm_api_data import FLOWS, TOKEN, flow
from websockets.asyncio.client import connect

from ocgate.nvm._hub import FlowHub
from ocgate.nvm.api import create_app, serve_api
from ocgate.nvm.store import open_store


async def _scenario(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/nvm.db")
    await store.open()
    await store.migrate()
    await store.write_batch(list(FLOWS))
    await store.flush()
    hub = FlowHub()
    server = await serve_api(create_app(store, hub, [TOKEN]), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/api/v1/flows")).status_code == 401
            headers = {"Authorization": f"Bearer {TOKEN}"}
            response = await http.get("/api/v1/flows", params={"limit": "2"}, headers=headers)
            assert response.status_code == 200
            assert len(response.json()["flows"]) == 2
            assert "server" not in response.headers
        url = f"ws://127.0.0.1:{server.port}/api/v1/stream?token={TOKEN}&process=x.exe"
        async with connect(url, open_timeout=5) as ws:
            await asyncio.sleep(0)
            hub.publish([flow(1, process_name="y.exe"), flow(2, process_name="x.exe")])
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=1.0))
            assert message["process_name"] == "x.exe"
            await server.close()  # Closes the open stream too.
            assert not server.running
    finally:
        await server.close()
        hub.close()
        await store.close()


def test_serve_api_on_loopback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), timeout=30))
    assert "token=***" in caplog.text  # uvicorn logged the WebSocket path, masked.
    assert TOKEN not in caplog.text


def test_serve_api_bind_error_raises_oserror(tmp_path: Path) -> None:
    async def scenario() -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            app = create_app(open_store(f"sqlite://{tmp_path}/x.db"), FlowHub(), [TOKEN])
            with pytest.raises(OSError, match=r"(?i)address"):
                await serve_api(app, "127.0.0.1", port)

    asyncio.run(scenario())
