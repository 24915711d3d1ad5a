"""``X-CSTP-Hostname`` is a host name label or nothing (ocserv ignores anything else)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.gateway._plan import valid_hostname_untrusted


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("laptop", "laptop"),
        ("laptop.corp.example", "laptop"),
        ("DESKTOP-4F2K_9", "DESKTOP-4F2K_9"),
        ("", None),
        ("-leading", None),
        ("trailing-", None),
        ("a" * 63, "a" * 63),
        ("a" * 64, None),
        ("evil;rm -rf /", None),
        ("x\nINJECTED=1", None),
        ("späti", None),
        ("$(id)", None),
    ],
)
def test_hostname_labels(value: str, expected: str | None) -> None:
    assert valid_hostname_untrusted(value) == expected


@given(st.text(max_size=200))
def test_anything_kept_is_a_plain_label(value: str) -> None:
    kept = valid_hostname_untrusted(value)
    if kept is not None:
        assert kept.isascii()
        assert 1 <= len(kept) <= 63
        assert all(c.isalnum() or c in "-_" for c in kept)
