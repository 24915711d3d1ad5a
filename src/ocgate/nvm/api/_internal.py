"""The NVM API called in-process, without HTTP and without tokens (the admin console's proxy).

Theory of operation
-------------------
The admin console runs in its own process and asks the NVM collector's process for telemetry over
IPC. That process answers with :class:`InternalApi`: ``await api.get("top", "by=host&user=alice")``
runs ``GET /api/v1/top?by=host&user=alice`` through the very same route handlers, parameter
parsers and error handlers as the HTTP API (:func:`~ocgate.nvm.api._app.query_routes`), by
calling a Starlette application directly as ASGI with a synthetic request scope. Only the bearer
token middleware is left out: the caller (the console) has authenticated its administrator
already, and the IPC channel is reachable only by the gateway's own processes. It works whether or
not ``nvm-api-listen`` is set, since no socket is involved.

What crosses the boundary is bounded, since the request comes from another process:

* ``path`` must be one of the allow-listed read-only routes (``flows``, ``endpoints``,
  ``endpoints/{udid}/interfaces``, ``top``, ``timeline``, ``exporters``); anything else, the live
  stream and the OpenAPI document included, answers 404 ``{"error":"Not Found"}`` without
  reaching the router.
* ``query`` (the raw query string, without ``?``) must be ASCII (a browser's URL is
  percent-encoded) and at most :data:`MAX_QUERY` characters, else 400.
* The response body is capped (:data:`MAX_BODY`, 3 MiB); a larger one becomes 502
  ``{"error":"response too large"}``. An unexpected exception in a handler becomes 500
  (and is logged); a handler slower than ``timeout`` becomes 504.

Every answer is ``(status, JSON body bytes)``.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- the in-process call bounds the handler's time.
import logging
import re
from typing import Final

from starlette.applications import Starlette
from starlette.types import Message, Scope

from ocgate.nvm._hub import FlowHub
from ocgate.nvm.api._app import EXCEPTION_HANDLERS, Clock, StatsSource, _Api, query_routes
from ocgate.nvm.api._schemas import API_PREFIX, dumps
from ocgate.nvm.store import Store

__all__ = ["ALLOWED_PATHS", "MAX_BODY", "MAX_QUERY", "InternalApi"]

log = logging.getLogger("ocgate.nvm.api")

MAX_BODY: Final = 3 << 20
MAX_QUERY: Final = 8192
DEFAULT_TIMEOUT: Final = 30.0
ALLOWED_PATHS: Final = re.compile(
    r"flows|endpoints|endpoints/[^/\x00-\x20\x7f-\x9f]{1,256}/interfaces|top|timeline|exporters"
)
NOT_FOUND: Final = dumps({"error": "Not Found"})
_TOO_LARGE: Final = dumps({"error": "response too large"})
_FAILED: Final = dumps({"error": "Internal Server Error"})
_TIMEOUT: Final = dumps({"error": "the NVM store did not answer in time"})


class _TooLarge(Exception):
    pass


class InternalApi:
    """``GET /api/v1/{path}?{query}`` of the NVM API without HTTP or tokens (module docstring).

    :param store: the collector's opened store.
    :param hub: the collector's live hub (unused by the allow-listed routes; kept so the handlers
        are built exactly as the HTTP API builds them).
    :param stats: the collector's live per-exporter counters (``Collector.exporter_stats``).
    :param timeout: seconds a request may take before it answers 504.
    """

    def __init__(
        self,
        store: Store,
        hub: FlowHub,
        *,
        stats: StatsSource | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock | None = None,
    ) -> None:
        api = _Api(store, hub, stats, 0) if clock is None else _Api(store, hub, stats, 0, clock)
        self._app = Starlette(routes=query_routes(api), exception_handlers=EXCEPTION_HANDLERS)
        self._timeout = timeout

    async def get(self, path: str, query: str) -> tuple[int, bytes]:
        """Run ``GET /api/v1/{path}?{query}``; returns ``(status, JSON body)``."""
        if ALLOWED_PATHS.fullmatch(path) is None:
            return 404, NOT_FOUND
        if len(query) > MAX_QUERY or not query.isascii():
            return 400, dumps({"error": f"query: not ASCII or longer than {MAX_QUERY}"})
        full = f"{API_PREFIX}/{path}"
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": full,
            "raw_path": full.encode("utf-8"),
            "root_path": "",
            "query_string": query.encode("ascii"),
            "headers": [],
            "client": None,
            "server": None,
        }
        status = 500
        body: list[bytes] = []
        size = 0
        requested = False

        async def receive() -> Message:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # No more request events; cancelled with the call.
            raise AssertionError("unreachable")  # pragma: no cover

        async def send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunk = bytes(message.get("body", b""))
                size += len(chunk)
                if size > MAX_BODY:
                    raise _TooLarge
                body.append(chunk)

        try:
            async with asyncio.timeout(self._timeout):
                await self._app(scope, receive, send)
        except _TooLarge:
            log.warning("event=nvm-internal-api path=%s error=response-too-large", path)
            return 502, _TOO_LARGE
        except TimeoutError:
            log.warning("event=nvm-internal-api path=%s error=timeout", path)
            return 504, _TIMEOUT
        except Exception:
            # Starlette has already answered 500 and re-raises for the server to log.
            log.exception("event=nvm-internal-api path=%s error=handler-failed", path)
            return 500, _FAILED
        return status, b"".join(body)
