"""Response validation and rendering."""

from __future__ import annotations

import pytest

from ocgate.errors import LocalProtocolError
from ocgate.http import Response
from ocgate.http._response import reason_for, render_head


def test_render_head_is_exact() -> None:
    assert render_head(200, "CONNECTED", (("X-CSTP-MTU", "1290"), ("x-Odd-CASE", "é"))) == (
        b"HTTP/1.1 200 CONNECTED\r\nX-CSTP-MTU: 1290\r\nx-Odd-CASE: \xe9\r\n\r\n"
    )


def test_reason_for() -> None:
    assert reason_for(431) == "Request Header Fields Too Large"
    assert reason_for(599) == "Error"


@pytest.mark.parametrize(
    ("status", "reason", "headers", "body"),
    [
        (100, "Continue", (), b""),
        (101, "Switching Protocols", (), b""),
        (600, "X", (), b""),
        (True, "X", (), b""),
        (200, "", (), b""),
        (200, " OK", (), b""),
        (200, "O\r\nK", (), b""),
        (200, "OK", (("Bad Name", "v"),), b""),
        (200, "OK", (("", "v"),), b""),
        (200, "OK", (("X-A", "a\r\nX-Injected: 1"),), b""),
        (200, "OK", (("X-A", " leading"),), b""),
        (200, "OK", (("X-A", "trailing "),), b""),
        (200, "OK", (("X-A", "\u20ac"),), b""),
        (200, "OK", (("Content-Length", "5"),), b""),
        (200, "OK", (("connection", "close"),), b""),
        (200, "OK", (("Transfer-Encoding", "chunked"),), b""),
        (204, "No Content", (), b"x"),
    ],
)
def test_invalid_responses(
    status: int, reason: str, headers: tuple[tuple[str, str], ...], body: bytes
) -> None:
    with pytest.raises(LocalProtocolError):
        Response(status, reason, headers, body)


def test_valid_edge_values() -> None:
    Response(200, "OK", (("X-Empty", ""), ("X-Tab", "a\tb"), ("X-Latin", "\xff")))
    Response(599, "Whatever you like", ())
