"""The NVM REST/WebSocket API as a Starlette application, and its embedded uvicorn server.

Theory of operation
-------------------
:func:`create_app` wires routes to a :class:`~ocgate.nvm.store.Store` and a
:class:`~ocgate.nvm._hub.FlowHub`. One ASGI middleware authenticates every HTTP request and
WebSocket handshake (except the OpenAPI document) before routing, so an unauthenticated client
learns nothing, not even which paths exist. Query parameters are parsed by the ``_untrusted``
functions of :mod:`._params`; their :class:`~ocgate.errors.BadHttpRequest` becomes a 400 with a
JSON ``{"error": ...}`` body at one exception handler.

The GET routes over the store (:func:`query_routes`) are also served without HTTP, to the admin
console, by :class:`~ocgate.nvm.api._internal.InternalApi`; everything but the token check is
shared.

:func:`serve_api` runs uvicorn inside the caller's event loop on a socket it binds itself (bind
errors surface as :class:`OSError` instead of uvicorn's ``sys.exit``), without touching signal
handlers or the logging configuration, with a log filter that masks ``token=`` query values
(uvicorn logs WebSocket paths with their query string).
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- the API is an asyncio adapter, not a sans-IO core.
import dataclasses
import inspect
import logging
import re
import socket  # noqa: TID251 -- serve_api binds the listening socket.
import time  # noqa: TID251 -- the timeline's default range ends now.
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from ocgate._version import __version__
from ocgate.daemon._asgi import AsgiServer, start_asgi
from ocgate.errors import AuthFailed, BadHttpRequest
from ocgate.nvm._hub import FlowHub
from ocgate.nvm._records import EndpointRecord, JsonValue, format_exporter, json_safe
from ocgate.nvm.api._auth import TokenVerifier, parse_bearer_untrusted
from ocgate.nvm.api._params import (
    EndpointCursor,
    EndpointQuery,
    decode_endpoint_cursor_untrusted,
    encode_endpoint_cursor,
    parse_endpoint_query_untrusted,
    parse_flow_query_untrusted,
    parse_timeline_query_untrusted,
    parse_top_query_untrusted,
)
from ocgate.nvm.api._schemas import (
    API_PREFIX,
    EXPORTER_COUNTERS,
    dumps,
    endpoint_to_json,
    flow_to_json,
    interface_to_json,
    openapi_document,
)
from ocgate.nvm.api._ws import deny_websocket, stream_flows
from ocgate.nvm.store import Store

__all__ = ["ApiServer", "Clock", "StatsSource", "create_app", "serve_api"]

StatsSource = Callable[[], Any]
"""Returns (or returns an awaitable of) ``{exporter: counters}``: keys are strings or
``ExporterKey``-like objects, values mappings or dataclasses such as ``ExporterStats``."""

Clock = Callable[[], float]
"""Epoch seconds now (``time.time``); the timeline's default range ends at it."""

OPENAPI_PATH: Final = f"{API_PREFIX}/openapi.json"
DEFAULT_MAX_STREAMS: Final = 64
_ENDPOINT_SCAN_PAGES: Final = 10
_REALM: Final = 'Bearer realm="ocgate-nvm"'
log = logging.getLogger("ocgate.nvm.api")


class _Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


class _BearerAuth:
    """ASGI middleware: ``Authorization: Bearer`` (or ``?token=`` on WebSockets) or 401."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope["path"] == OPENAPI_PATH:
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        presented = header is not None
        try:
            if header is None and kind == "websocket":
                token = _query_token(scope)
                presented = token is not None
                if token is None:
                    raise AuthFailed("no credentials")
            else:
                token = parse_bearer_untrusted(header)
            self.verifier.verify(token)
        except AuthFailed:
            await self._refuse(scope, receive, send, presented=presented)
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, *, presented: bool) -> None:
        challenge = f'{_REALM}, error="invalid_token"' if presented else _REALM
        response = JSONResponse(
            {"error": "invalid bearer token" if presented else "bearer token required"},
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )
        if scope["type"] == "http":
            await response(scope, receive, send)
        else:
            await deny_websocket(WebSocket(scope, receive, send), response)


def _query_token(scope: Scope) -> str | None:
    values = QueryParams(scope.get("query_string", b"")).getlist("token")
    return values[0] if len(values) == 1 else None


def _normalise_stats(raw: Mapping[Any, Any]) -> dict[str, dict[str, JsonValue]]:
    result: dict[str, dict[str, JsonValue]] = {}
    for key, value in raw.items():
        if isinstance(key, str):
            name = key
        elif all(hasattr(key, attr) for attr in ("transport", "address", "port")):
            name = format_exporter(key)
        else:
            name = str(key)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping):
            result[name] = {str(k): json_safe(v) for k, v in value.items()}
    return result


def _exporter_entry(name: str, counters: Mapping[str, JsonValue], live: bool) -> JsonValue:
    entry: dict[str, JsonValue] = {"exporter": name, "live": live}
    for counter in EXPORTER_COUNTERS:
        value = counters.get(counter)
        entry[counter] = value if isinstance(value, int) and not isinstance(value, bool) else 0
    entry["counters"] = dict(counters)
    return entry


class _Api:
    """Route handlers bound to one store, hub and stats source."""

    def __init__(
        self,
        store: Store,
        hub: FlowHub,
        stats: StatsSource | None,
        max_streams: int,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.hub = hub
        self.stats = stats
        self.max_streams = max_streams
        self.clock = clock
        self.openapi = dumps(openapi_document(__version__))

    async def flows(self, request: Request) -> Response:
        query = parse_flow_query_untrusted(request.query_params.multi_items())
        try:
            page = await self.store.query_flows(
                query.filters, cursor=query.cursor, limit=query.limit
            )
        except ValueError:
            raise BadHttpRequest("cursor: invalid") from None
        flows: list[JsonValue] = [flow_to_json(record) for record in page.items]
        return _Json({"flows": flows, "next_cursor": page.next_cursor})

    async def endpoints(self, request: Request) -> Response:
        query = parse_endpoint_query_untrusted(request.query_params.multi_items())
        items, cursor = await self._scan_endpoints(query)
        endpoints: list[JsonValue] = [endpoint_to_json(record) for record in items]
        next_cursor = None if cursor is None else encode_endpoint_cursor(cursor)
        return _Json({"endpoints": endpoints, "next_cursor": next_cursor})

    async def _scan_endpoints(
        self, query: EndpointQuery
    ) -> tuple[list[EndpointRecord], EndpointCursor | None]:
        """Store pages filtered by ``since`` (the store filters only by UDID) up to ``limit``."""
        position = EndpointCursor(None, None)
        if query.cursor is not None:
            position = decode_endpoint_cursor_untrusted(query.cursor)
        found: list[EndpointRecord] = []
        size = min(1000, max(query.limit, 100))
        for _ in range(_ENDPOINT_SCAN_PAGES):
            try:
                page = await self.store.endpoints(
                    udid=query.udid, cursor=position.store_cursor, limit=size
                )
            except ValueError:
                raise BadHttpRequest("cursor: invalid") from None
            after = position.after
            for record in page.items:
                if after is not None and record.udid <= after:
                    continue
                if query.since is not None and record.last_seen < query.since:
                    continue
                if len(found) == query.limit:
                    return found, EndpointCursor(position.store_cursor, found[-1].udid)
                found.append(record)
            if page.next_cursor is None:
                return found, None
            position = EndpointCursor(page.next_cursor, None)
        return found, position

    async def interfaces(self, request: Request) -> Response:
        udid = str(request.path_params["udid"])
        if re.fullmatch(r"[0-9a-fA-F]{1,128}", udid) is None:
            raise BadHttpRequest("udid: not hexadecimal")
        items: list[JsonValue] = [
            interface_to_json(record) for record in await self.store.interfaces(udid.lower())
        ]
        return _Json({"interfaces": items})

    async def top(self, request: Request) -> Response:
        query = parse_top_query_untrusted(request.query_params.multi_items())
        rows = await self.store.top(
            query.by, since=query.since, until=query.until, limit=query.limit, user=query.user
        )
        return _Json([{"key": key, "bytes": total} for key, total in rows])

    async def timeline(self, request: Request) -> Response:
        query = parse_timeline_query_untrusted(request.query_params.multi_items(), now=self.clock())
        found = dict(
            await self.store.timeline(
                since=query.since, until=query.until, step=query.step, user=query.user
            )
        )
        step = query.step
        points: list[JsonValue] = [
            {"time": k * step, "bytes": found.get(k * step, 0)}
            for k in range(query.first, query.first + query.count)
        ]
        return _Json({"step": step, "points": points})

    async def exporters(self, request: Request) -> Response:
        if request.query_params:
            raise BadHttpRequest("this endpoint takes no parameters")
        saved = await self.store.exporter_stats()
        live: dict[str, dict[str, JsonValue]] = {}
        if self.stats is not None:
            raw = self.stats()
            if inspect.isawaitable(raw):
                raw = await raw
            live = _normalise_stats(raw)
        entries = [
            _exporter_entry(name, live[name], True)
            if name in live
            else _exporter_entry(name, saved[name], False)
            for name in sorted(saved.keys() | live.keys())
        ]
        return _Json({"exporters": entries})

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")

    async def stream(self, websocket: WebSocket) -> None:
        await stream_flows(websocket, self.hub, max_streams=self.max_streams)


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadHttpRequest)  # Registered for this class only.
    return _Json({"error": str(exc)}, status_code=exc.status_hint)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # Registered for this class only.
    return _Json({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


EXCEPTION_HANDLERS: Final[Mapping[Any, Callable[[Request, Exception], Any]]] = {
    BadHttpRequest: _bad_request,
    HTTPException: _http_error,
}


def create_app(
    store: Store,
    hub: FlowHub,
    tokens: Sequence[str],
    *,
    stats: StatsSource | None = None,
    max_streams: int = DEFAULT_MAX_STREAMS,
    clock: Clock = time.time,
) -> Starlette:
    """The API application.

    :param store: an opened, migrated store.
    :param hub: the hub the collector publishes stored flows to.
    :param tokens: accepted bearer tokens (see :func:`~ocgate.nvm.api.load_tokens`).
    :param stats: live per-exporter counters of the running collector(s), e.g.
        ``IpfixCollectorCore.stats``; merged over the counters saved in the store.
    :param max_streams: concurrent live streams; more are refused with 503.
    :param clock: epoch seconds now (the timeline's default range ends at it).
    :raises ConfigError: no token, or a malformed or short one.
    """
    api = _Api(store, hub, stats, max_streams, clock)
    routes: list[BaseRoute] = [
        Route(OPENAPI_PATH, api.openapi_json, methods=["GET"]),
        *query_routes(api),
        WebSocketRoute(f"{API_PREFIX}/stream", api.stream),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_BearerAuth, verifier=TokenVerifier(tokens))],
        exception_handlers=EXCEPTION_HANDLERS,
    )


def query_routes(api: _Api) -> list[BaseRoute]:
    """The GET routes over the store (every route but the OpenAPI document and the stream);
    :mod:`._internal` serves these same routes without HTTP and without tokens."""
    p = API_PREFIX
    return [
        Route(f"{p}/flows", api.flows, methods=["GET"]),
        Route(f"{p}/endpoints", api.endpoints, methods=["GET"]),
        Route(f"{p}/endpoints/{{udid}}/interfaces", api.interfaces, methods=["GET"]),
        Route(f"{p}/top", api.top, methods=["GET"]),
        Route(f"{p}/timeline", api.timeline, methods=["GET"]),
        Route(f"{p}/exporters", api.exporters, methods=["GET"]),
    ]


class _RedactTokens(logging.Filter):
    """Masks ``token=`` query values in uvicorn's log records."""

    _PATTERN: Final = re.compile(r"(token=)[^&\s\"']*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._PATTERN.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = self._PATTERN.sub(r"\1***", record.msg)
        return True


_REDACT: Final = _RedactTokens()
for _name in ("uvicorn.error", "uvicorn.access"):
    logging.getLogger(_name).addFilter(_REDACT)


ApiServer = AsgiServer
"""A running API server: ``host``, ``port``, ``running``, and an awaitable ``close()`` (live
streams get 1001/1012)."""


async def _bind(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    if not infos:  # pragma: no cover -- getaddrinfo raises rather than return nothing.
        raise OSError(f"cannot resolve {host!r}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_api(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    startup_timeout: float = 10.0,
) -> ApiServer:
    """Start serving ``app`` on ``host:port`` in the running event loop.

    :param port: 0 picks a free port (read it from :attr:`ApiServer.port`).
    :param ssl_certfile: serve HTTPS with this certificate chain (and ``ssl_keyfile``).
    :raises OSError: the address cannot be bound.
    """
    sock = await _bind(host, port)
    config = uvicorn.Config(
        app,
        lifespan="off",
        http="h11",
        log_config=None,
        log_level=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=5,
        ws_max_size=65536,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    try:
        handle = await start_asgi(config, sock, name="NVM API", startup_timeout=startup_timeout)
    except OSError:
        sock.close()
        raise
    log.info("NVM API listening on %s:%d", handle.host, handle.port)
    return handle
