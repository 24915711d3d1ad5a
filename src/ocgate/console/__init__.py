"""The administrators' web console (issue 16): pages and a JSON API over :class:`ConsoleBackend`.

``create_console_app(backend, settings)`` builds the Starlette application and
``await serve_console(app, sock, ssl_context)`` serves it (the console process does both);
docs/CONSOLE.md describes the pages, the API and the security model. The backend interface
(:mod:`._backend`) is importable without starlette; the web application (extra
``ocgate[api]``) is loaded on first use.
"""

from __future__ import annotations

from ocgate.console._backend import (
    AdminAuthError,
    AdminIdentity,
    ConsoleBackend,
    ConsoleError,
    OtpEnrollment,
    Role,
    VpnUser,
    VpnUsers,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocgate.console._app import ConsoleSettings, create_console_app
    from ocgate.console._audit import AuditLog
    from ocgate.console._auth import token_digest
    from ocgate.console._serve import ConsoleServer, serve_console

__all__ = [
    "AdminAuthError",
    "AdminIdentity",
    "AuditLog",
    "ConsoleBackend",
    "ConsoleError",
    "ConsoleServer",
    "ConsoleSettings",
    "OtpEnrollment",
    "Role",
    "VpnUser",
    "VpnUsers",
    "create_console_app",
    "serve_console",
    "token_digest",
]

_LAZY = {
    "AuditLog": "_audit",
    "ConsoleSettings": "_app",
    "create_console_app": "_app",
    "token_digest": "_auth",
    "ConsoleServer": "_serve",
    "serve_console": "_serve",
}
"""Loaded on first use (PEP 562): sec-mod and the supervisor import the backend types only."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        except ImportError as exc:  # pragma: no cover -- only without the extra installed.
            if exc.name not in ("starlette", "uvicorn") and not str(exc.name).startswith(
                ("starlette.", "uvicorn.")
            ):
                raise
            raise ImportError(
                f"the web console needs the ocgate[api] extra: pip install 'ocgate[api]' "
                f"(missing: {exc.name})"
            ) from exc
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
