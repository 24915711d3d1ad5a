"""``included-http-headers`` and ``camouflage*``: parsed values and their ConfigErrors."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ocgate.config import Config
from ocgate.errors import ConfigError

Parse = Callable[[str], Config]

# ocserv doc/sample.config (1.2 and later), lines as shipped.
OCSERV_SAMPLE_HEADERS = """\
included-http-headers = Strict-Transport-Security: max-age=31536000 ; includeSubDomains
included-http-headers = Content-Security-Policy: default-src 'none'
included-http-headers = Clear-Site-Data: "cache","cookies","storage"
included-http-headers = Cache-control: no-store, no-cache
"""


def test_included_headers_are_kept_as_written_in_order(parse: Parse) -> None:
    assert parse(OCSERV_SAMPLE_HEADERS).included_http_headers == (
        ("Strict-Transport-Security", "max-age=31536000 ; includeSubDomains"),
        ("Content-Security-Policy", "default-src 'none'"),
        ("Clear-Site-Data", '"cache","cookies","storage"'),
        ("Cache-control", "no-store, no-cache"),
    )
    assert parse("").included_http_headers == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no colon here", "not an HTTP header line: 'no colon here'"),
        ("Bad Name: x", "not an HTTP header line: 'Bad Name: x'"),
        ("X-Empty:", "not an HTTP header line: 'X-Empty:'"),
        ("Content-Length: 5", "Content-Length is set by the server itself"),
        ("connection: close", "connection is set by the server itself"),
    ],
)
def test_bad_header_line_names_file_line_and_form(
    parse: Parse, source: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(f"dpd = 30\nincluded-http-headers = {value}\n")
    assert str(info.value) == (
        f"{source}:5: included-http-headers: {message} "
        "(expected: a header line 'Name: value', e.g. 'X-Frame-Options: deny')"
    )


def test_camouflage_settings(parse: Parse) -> None:
    config = parse('camouflage = true\ncamouflage_secret = "k3y"\ncamouflage_realm = "Hi there"\n')
    assert (config.camouflage, config.camouflage_secret, config.camouflage_realm) == (
        True,
        "k3y",
        "Hi there",
    )
    assert parse("").camouflage is False
    assert config.warnings == ()


def test_camouflage_needs_a_secret(parse: Parse, source: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse("camouflage = true\n")
    assert str(info.value).startswith(
        f"{source}:4: camouflage: camouflage = true needs camouflage_secret"
    )


def test_realm_must_fit_in_the_challenge(parse: Parse, source: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse('camouflage_realm = a\\"b\n')
    assert str(info.value).startswith(f"{source}:4: camouflage_realm: not usable as an HTTP realm")
