"""REST and WebSocket API of the NVM collector (extra ``ocgate[api]``: starlette, uvicorn).

``create_app(store, hub, tokens, stats=...)`` builds the Starlette application and
``await serve_api(app, host, port)`` serves it inside the running event loop.
``InternalApi(store, hub, stats=...)`` calls the same GET handlers in-process, without HTTP or
tokens (the admin console's telemetry, over IPC). The field names and endpoints are documented
in ``docs/nvm-api.md``; the OpenAPI document is served at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover -- exercised only without the extra installed.
    raise ImportError(
        f"the NVM API needs the ocgate[api] extra: pip install 'ocgate[api]' (missing: {exc.name})"
    ) from exc

from ocgate.nvm.api._app import ApiServer, StatsSource, create_app, serve_api
from ocgate.nvm.api._auth import TokenVerifier, load_tokens, parse_bearer_untrusted
from ocgate.nvm.api._internal import InternalApi
from ocgate.nvm.api._params import flow_predicate
from ocgate.nvm.api._schemas import openapi_document

__all__ = [
    "ApiServer",
    "InternalApi",
    "StatsSource",
    "TokenVerifier",
    "create_app",
    "flow_predicate",
    "load_tokens",
    "openapi_document",
    "parse_bearer_untrusted",
    "serve_api",
]
