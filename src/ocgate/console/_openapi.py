"""The OpenAPI 3.1 document of the console API, generated from the route table."""

from __future__ import annotations

import re
from typing import Any, Final

from ocgate._version import __version__
from ocgate.console._api import API_PREFIX, ROUTES, ApiRoute

__all__ = ["openapi_document"]

_PARAM: Final = re.compile(r"\{([a-z_]+)(?::path)?\}")
_ERROR: Final = {
    "description": "Refused",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_FIELD_SCHEMAS: Final[dict[str, Any]] = {
    "groups": {"type": "array", "items": {"type": "string"}},
}


def _operation(route: ApiRoute) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.handler or route.special,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {}}}},
            "400": _ERROR,
            "401": _ERROR,
            "403": _ERROR,
        },
    }
    if route.action:
        op["responses"]["409"] = _ERROR
        op["x-audit-action"] = route.action
    if route.special == "login":
        op["responses"]["429"] = _ERROR
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(route.path)
    ]
    if route.mutating:
        params.append(
            {
                "name": "X-CSRF-Token",
                "in": "header",
                "required": False,
                "description": "Required with a session cookie (not with a bearer token).",
                "schema": {"type": "string"},
            }
        )
    if params:
        op["parameters"] = params
    if route.body:
        props = {name: _FIELD_SCHEMAS.get(name, {"type": "string"}) for name in route.body}
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": props,
                        "required": [n for n in route.body if n != "groups"],
                        "additionalProperties": False,
                    }
                }
            },
        }
    if route.special != "login":
        op["security"] = [{"bearer": []}, {"session": []}]
    return op


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document served at ``/api/v1/openapi.json``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        path = API_PREFIX + _PARAM.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ocgate administrators' console API",
            "version": __version__,
            "description": "See docs/CONSOLE.md.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "__Host-ocgate-console"},
            }
        },
    }
