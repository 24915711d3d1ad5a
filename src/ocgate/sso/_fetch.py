"""The blocking HTTP client sec-mod uses to reach an identity provider (an I/O adapter).

Discovery documents, JWKS and the token endpoint are fetched with the standard library (no extra
dependency), with a timeout, a size cap and HTTPS verified against the system roots or the
provider config's ``ca_file``. Callers run it in a worker thread (``asyncio.to_thread``), never on
the event loop.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Protocol

__all__ = ["MAX_RESPONSE_BYTES", "Fetch", "HttpFetch"]

MAX_RESPONSE_BYTES = 1024 * 1024


class Fetch(Protocol):
    """``(status, body)`` of one HTTP request; raises :class:`OSError` on transport failure."""

    def __call__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, bytes]: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


class HttpFetch:
    """:class:`Fetch` over ``urllib`` (no redirects followed, no proxies from the environment).

    :param ca_file: a PEM bundle to verify the provider's certificate with (``None``: system).
    :param timeout: seconds per request.
    """

    def __init__(self, *, ca_file: str | None = None, timeout: float = 10.0) -> None:
        context = ssl.create_default_context(cafile=ca_file)
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=context),
            _NoRedirect(),
        )
        self._timeout = timeout

    def __call__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return response.status, response.read(MAX_RESPONSE_BYTES + 1)[:MAX_RESPONSE_BYTES]
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(MAX_RESPONSE_BYTES)
        except (urllib.error.URLError, ValueError) as exc:
            raise OSError(str(exc)) from exc
