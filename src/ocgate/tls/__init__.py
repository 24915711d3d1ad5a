"""TLS for the front door: policy from ocserv's ``tls-priorities``, memory-BIO endpoints."""

from __future__ import annotations

from ocgate.tls._endpoint import (
    ServerCredentials,
    TlsEndpoint,
    TlsFailure,
    build_server_context,
    load_credentials,
)
from ocgate.tls._priorities import TlsPolicy, translate_priorities
from ocgate.tls._sni import serve_by_server_name

__all__ = [
    "ServerCredentials",
    "TlsEndpoint",
    "TlsFailure",
    "TlsPolicy",
    "build_server_context",
    "load_credentials",
    "serve_by_server_name",
    "translate_priorities",
]
