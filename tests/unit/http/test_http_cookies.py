"""Cookie header parsing and its caps (ocserv #719)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.errors import BadHttpRequest
from ocgate.http import Request
from ocgate.http._cookie_header import parse_cookies_untrusted


def request_with(*cookies: str) -> Request:
    headers = (("host", "h"), *(("cookie", value) for value in cookies))
    return Request(method="GET", target="/", headers=headers, body=b"", http_version="1.1")


def test_cookies_from_every_header_first_wins() -> None:
    request = request_with("a=b; c=d", "  e = f ;a=zz", "c=again")
    assert request.cookies() == {"a": "b", "c": "d", "e": "f"}


def test_odd_pieces() -> None:
    assert parse_cookies_untrusted(['novalue; =x; ;; k=; q=a=b; s="quoted"']) == {
        "k": "",
        "q": "a=b",
        "s": '"quoted"',
    }


def test_caps() -> None:
    assert parse_cookies_untrusted(["x=" + "a" * 1024]) == {"x": "a" * 1024}
    with pytest.raises(BadHttpRequest) as info:
        parse_cookies_untrusted(["x=" + "a" * 1025])
    assert info.value.status_hint == 400
    with pytest.raises(BadHttpRequest):
        parse_cookies_untrusted(["n" * 1025 + "=1"])
    with pytest.raises(BadHttpRequest):
        parse_cookies_untrusted(["; ".join(f"c{i}=" + "v" * 200 for i in range(20))])
    with pytest.raises(BadHttpRequest):
        request_with("a=" + "b" * 2000).cookies()


@given(st.lists(st.text(alphabet=st.characters(max_codepoint=255), max_size=5000), max_size=4))
def test_fuzz_parse_cookies_untrusted(values: list[str]) -> None:
    try:
        cookies = parse_cookies_untrusted(values)
    except BadHttpRequest:
        return
    assert all(name and len(value) <= 1024 for name, value in cookies.items())
