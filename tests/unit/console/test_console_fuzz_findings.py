"""Regressions for what ``fuzz/targets/fuzz_console.py`` found (fuzz/README.md, Findings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocgate.console._validate import parse_groups_untrusted
from ocgate.errors import BadHttpRequest
from tests.unit.console._fake import make_harness

VECTOR = Path(__file__).resolve().parents[2] / "vectors" / "fuzz" / "console-group-not-unicode.bin"


def test_fuzz_group_that_is_not_unicode_is_a_bad_request() -> None:
    """fuzz_console: a group holding lone surrogates passed the check and then made the
    password file's entry raise ``ConfigError`` (after the request had left the console)."""
    raw = VECTOR.read_bytes()[1:].decode("utf-8", "surrogateescape")
    with pytest.raises(BadHttpRequest):
        parse_groups_untrusted(json.loads(raw))


def test_the_same_group_through_the_api_is_a_400() -> None:
    # JSON's \\u escapes reach the same strings from a browser or a script.
    harness = make_harness()
    csrf = harness.login()
    body = '{"username": "newbie", "password": "pw-123456", "groups": ["\\udcffeng"]}'
    response = harness.client.post(
        "/api/v1/users",
        content=body,
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert "newbie" not in harness.backend.users
