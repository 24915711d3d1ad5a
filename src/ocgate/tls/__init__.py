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

__all__ = [
    "ServerCredentials",
    "TlsEndpoint",
    "TlsFailure",
    "TlsPolicy",
    "build_server_context",
    "load_credentials",
    "translate_priorities",
]
