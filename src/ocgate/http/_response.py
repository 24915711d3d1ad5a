"""Responses and their exact bytes.

openconnect compares response header names case-sensitively (anyconnect-protocol.md §5.2), so the
front door writes response bytes itself, headers in exactly the given order and casing, and only
tells h11 about the framing so its state machine follows along. The front door owns the framing
headers: callers may not set ``Content-Length``, ``Transfer-Encoding`` or ``Connection``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

from ocgate.errors import LocalProtocolError

__all__ = ["Response", "reason_for", "render_head"]

# RFC 9110 section 5.6.2 token.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 section 5.5 field-value: no leading/trailing whitespace, no controls but HTAB.
_FIELD_VALUE_RE = re.compile(r"(?:[\x21-\x7e\x80-\xff](?:[ \t]*[\x21-\x7e\x80-\xff])*)?")
# RFC 9112 section 4 reason-phrase, but non-empty: openconnect needs "HTTP/1.1 200 " plus a phrase.
_REASON_RE = re.compile(r"[\x21-\x7e\x80-\xff][\t \x21-\x7e\x80-\xff]*")
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
# RFC 9110 section 6.4.1: no content (and no Content-Length here) in these.
NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class Response:
    """A response to the current request.

    :param status: 200-599 (informational responses are the front door's business).
    :param reason: the reason phrase, non-empty (``"CONNECTED"`` for the tunnel).
    :param headers: ``(name, value)`` pairs, sent in exactly this order and casing; latin-1.
    :param body: the body; the front door adds ``Content-Length``.
    :param close: close the connection after this response (adds ``Connection: close``).
    :raises LocalProtocolError: a field that cannot go on the wire.
    """

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    close: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not 200 <= self.status <= 599:
            raise LocalProtocolError(f"response status {self.status!r} not in 200-599")
        if not _REASON_RE.fullmatch(self.reason):
            raise LocalProtocolError(f"bad reason phrase {self.reason!r}")
        for name, value in self.headers:
            _check_header(name, value)
        if self.status in NO_BODY_STATUSES and self.body:
            raise LocalProtocolError(f"a {self.status} response has no body")


def _check_header(name: str, value: str) -> None:
    if not _TOKEN_RE.fullmatch(name):
        raise LocalProtocolError(f"bad header name {name!r}")
    if not _FIELD_VALUE_RE.fullmatch(value):
        raise LocalProtocolError(f"bad value for header {name!r}")
    if name.lower() in _FRAMING_HEADERS:
        raise LocalProtocolError(f"header {name!r} is set by the front door")


def reason_for(status: int) -> str:
    """The standard reason phrase of ``status`` (``"Bad Request"`` for 400)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def render_head(status: int, reason: str, headers: tuple[tuple[str, str], ...]) -> bytes:
    """``HTTP/1.1 <status> <reason>``, the header lines as given and the blank line."""
    lines = [f"HTTP/1.1 {status} {reason}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")
