"""``WS /api/v1/stream``: live flows from the :class:`~ocgate.nvm._hub.FlowHub`.

The handler parses the filters, subscribes, accepts, then runs two loops: the sender forwards
every queued flow as one JSON text message, and a watcher reads (and ignores) client messages
until the disconnect, which closes the subscription and so ends the sender. When the hub closes
(server shutdown) the socket is closed with 1001 (going away). Errors before the handshake are
answered as plain HTTP responses where the server supports the WebSocket denial-response
extension, else by closing the socket with 1008 (policy violation).
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- the API is an asyncio adapter, not a sans-IO core.
import contextlib
import logging
from typing import Final

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ocgate.errors import BadHttpRequest
from ocgate.nvm._hub import DEFAULT_QUEUE_SIZE, FlowHub, Subscription
from ocgate.nvm.api._params import flow_predicate, parse_stream_query_untrusted
from ocgate.nvm.api._schemas import dumps, flow_to_json

__all__ = ["DENIAL_EXTENSION", "deny_websocket", "stream_flows"]

DENIAL_EXTENSION: Final = "websocket.http.response"
_POLICY_VIOLATION: Final = 1008
_TRY_AGAIN_LATER: Final = 1013
_GOING_AWAY: Final = 1001
log = logging.getLogger("ocgate.nvm.api")


async def deny_websocket(
    websocket: WebSocket, response: JSONResponse, *, close_code: int = _POLICY_VIOLATION
) -> None:
    """Refuse the handshake with ``response`` (or a close code if the server cannot)."""
    if DENIAL_EXTENSION in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=close_code)


async def stream_flows(websocket: WebSocket, hub: FlowHub, *, max_streams: int) -> None:
    """Serve one live-stream WebSocket (authentication already done by the middleware)."""
    try:
        filters = parse_stream_query_untrusted(websocket.query_params.multi_items())
    except BadHttpRequest as exc:
        await deny_websocket(websocket, JSONResponse({"error": str(exc)}, status_code=400))
        return
    if hub.subscribers >= max_streams:
        response = JSONResponse({"error": "too many live streams"}, status_code=503)
        await deny_websocket(websocket, response, close_code=_TRY_AGAIN_LATER)
        return
    sub = hub.subscribe(flow_predicate(filters), maxsize=DEFAULT_QUEUE_SIZE)
    try:
        await websocket.accept()
        watcher = asyncio.create_task(_watch(websocket, sub))
        try:
            await _send_all(websocket, sub)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    finally:
        sub.close()
        if sub.dropped:
            log.info("live stream closed; %d flows were dropped for it", sub.dropped)


async def _send_all(websocket: WebSocket, sub: Subscription) -> None:
    try:
        async for record in sub:
            await websocket.send_text(dumps(flow_to_json(record)).decode("utf-8"))
    except (WebSocketDisconnect, OSError, RuntimeError):
        return  # The client went away while we were sending.
    if websocket.client_state is WebSocketState.CONNECTED:
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await websocket.close(code=_GOING_AWAY)


async def _watch(websocket: WebSocket, sub: Subscription) -> None:
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass
    finally:
        sub.close()
