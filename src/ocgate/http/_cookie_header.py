"""Parsing of request ``Cookie`` headers (``a=b; c=d``), size-capped.

ocserv 1.5.0 overflowed a heap buffer with an oversized ``webvpncontext=`` cookie (#719,
ocserv-compatibility.md §9). Here a ``Cookie`` header is capped at :data:`MAX_COOKIE_HEADER_BYTES`
and each name and value at :data:`MAX_COOKIE_VALUE_CHARS`; anything larger is a bad request. Values
are returned verbatim (no unquoting); the session-cookie verifier checks the exact token format.
"""

from __future__ import annotations

from collections.abc import Iterable

from ocgate.errors import BadHttpRequest

__all__ = ["MAX_COOKIE_HEADER_BYTES", "MAX_COOKIE_VALUE_CHARS", "parse_cookies_untrusted"]

MAX_COOKIE_HEADER_BYTES = 4096
MAX_COOKIE_VALUE_CHARS = 1024


def parse_cookies_untrusted(header_values: Iterable[str]) -> dict[str, str]:
    """Merge every ``Cookie`` header value into one mapping; the first occurrence of a name wins.

    Pieces without ``=`` or with an empty name are skipped.

    :raises BadHttpRequest: (400) a header or a single name/value is over its cap.
    """
    cookies: dict[str, str] = {}
    for header in header_values:
        if len(header) > MAX_COOKIE_HEADER_BYTES:
            raise BadHttpRequest("Cookie header too long", status_hint=400)
        for piece in header.split(";"):
            name, sep, value = piece.partition("=")
            name, value = name.strip(" \t"), value.strip(" \t")
            if len(name) > MAX_COOKIE_VALUE_CHARS or len(value) > MAX_COOKIE_VALUE_CHARS:
                raise BadHttpRequest("cookie too long", status_hint=400)
            if sep and name:
                cookies.setdefault(name, value)
    return cookies
