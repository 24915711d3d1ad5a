"""``node-name`` and ``health-listen``: the keys of a gateway that runs as one of several nodes
behind a TCP balancer (issue 14 §2/§3)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from ocgate.config import Config, redact_store_url
from ocgate.config._values import default_node_name
from ocgate.errors import ConfigError

Parse = Callable[[str], Config]
FIRST = 4
"""The first line after the three base lines of the ``parse`` fixture (``conftest.py``)."""

NODE_EXPECTED = (
    "1-63 characters from A-Z a-z 0-9 . _ -, starting and ending with a letter or digit, "
    "e.g. gw1 or vpn-a.example"
)


@pytest.mark.parametrize(
    "value", ["gw1", "A", "vpn-a.example", "node_2", "x" * 63, "0", "eu-west-1.gw-3"]
)
def test_good_node_names(parse: Parse, value: str) -> None:
    assert parse(f"node-name = {value}\n").node_name == value


@pytest.mark.parametrize(
    "value",
    [
        "x" * 64,  # longer than a DNS label
        "-gw",  # must start with a letter or digit
        "gw-",  # ... and end with one
        ".gw",
        '"gw 1"',  # no spaces (the quotes keep the space in the value)
        "gw/1",
        "gw\u00e91",  # ASCII only: it is a label value and a log field
        "gw{a}",
    ],
)
def test_bad_node_names_name_file_line_and_form(parse: Parse, source: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(f"workers = 1\nnode-name = {value}\n")
    error = info.value
    assert (error.file, error.line, error.key) == (source, FIRST + 1, "node-name")
    assert error.expected == NODE_EXPECTED
    shown = value.strip('"')
    assert str(error) == (
        f"{source}:{FIRST + 1}: node-name: not a node name: {shown!r} (expected: {NODE_EXPECTED})"
    )


def test_node_name_defaults_to_the_host_name(parse: Parse) -> None:
    host = os.uname().nodename
    expected = default_node_name()
    assert parse("").node_name == expected
    # The host name itself when it is a valid node name, else its first label.
    assert expected in (host, host.split(".", 1)[0]) or expected == "ocgate"
    assert expected


def test_default_node_name_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    class Uname:
        def __init__(self, nodename: str) -> None:
            self.nodename = nodename

    for host, expected in (
        ("gw1.example.org", "gw1.example.org"),
        (f"{'a' * 70}.example.org", "ocgate"),  # even its first label is too long
        (f"{'b' * 20}.{'c' * 60}", "b" * 20),
        ("_bad_", "ocgate"),
    ):
        monkeypatch.setattr(os, "uname", lambda host=host: Uname(host))
        assert default_node_name() == expected, host


def test_health_listen(parse: Parse, source: str) -> None:
    assert parse("health-listen = 0.0.0.0:8081\n").health_listen == "0.0.0.0:8081"
    assert parse("").health_listen is None
    with pytest.raises(ConfigError) as info:
        parse("health-listen = 8081\n")
    assert str(info.value) == (
        f"{source}:{FIRST}: health-listen: not a listen address: '8081' "
        "(expected: HOST:PORT, e.g. 127.0.0.1:9099)"
    )


def test_node_keys_are_global(parse: Parse, source: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse("[vhost:b.example]\nnode-name = other\n")
    assert (info.value.file, info.value.line) == (source, FIRST + 1)


@pytest.mark.parametrize(
    "value",
    [
        "sqlite:///var/lib/ocgate/sessions.sqlite",
        "redis://10.0.0.5:6379/0",
        "redis://redis.internal",
        "rediss://:s3cret@redis.internal:6380/2",
        "redis://[fd00::5]:6379/1",
        "rediss://gw:pw@valkey.example:6379/0?ssl_ca_certs=/etc/ocgate/ca.pem",
    ],
)
def test_session_store_takes_sqlite_and_redis_urls(parse: Parse, value: str) -> None:
    assert parse(f"session-store = {value}\n").session_store == value


@pytest.mark.parametrize(
    "value",
    [
        "redis:///0",  # no host
        "redis://host:99999/0",  # no such port
        "redis://host:6379/db0",  # the database is a number
        "memcached://host",
        "rediss://:hunter2@host:port/0",
    ],
)
def test_a_bad_session_store_names_line_and_forms_never_the_password(
    parse: Parse, source: str, value: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(f"session-store = {value}\n")
    error = info.value
    assert (error.file, error.line, error.key) == (source, FIRST, "session-store")
    assert error.expected is not None
    assert "redis://[:PASSWORD@]HOST[:PORT][/DB]" in error.expected
    assert "hunter2" not in str(error)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://10.0.0.5:6379/0", "redis://10.0.0.5:6379/0"),
        ("rediss://gw:pw@valkey.example:6379/0", "rediss://gw:***@valkey.example:6379/0"),
        ("redis://:p@ss@h:6379/0", "redis://:***@h:6379/0"),  # '@' in the password
        ("redis://:pa/ss@h", "redis://***"),  # '/' in the password: not a URL any more
        ("redis://h:1/0?password=s3cret", "redis://h:1/0?password=***"),
        ("redis://[fd00::5]:6379/1", "redis://[fd00::5]:6379/1"),
    ],
)
def test_a_store_url_in_a_log_line_has_no_secret(url: str, shown: str) -> None:
    assert redact_store_url(url) == shown
