"""ocgate's addition to ``show user``/``show id``: the packets its filter dropped, by reason."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC

import pytest

from ocgate.control import (
    UserInfo,
    UsersResponse,
    encode_response,
    format_user,
    format_user_json,
    parse_response_untrusted,
)
from ocgate.errors import BadControlMessage

NOW = 1_700_000_000.0
TZ = UTC

DROPPED = (
    ("spoofed-source", 3),
    ("link-local", 0),
    ("malformed", 1),
    ("restricted-route", 2),
    ("restricted-port", 0),
)


@pytest.fixture
def dropped_user(user: UserInfo) -> UserInfo:
    """The conftest's full user, with counters."""
    return replace(user, dropped=DROPPED)


def test_text_has_one_line_after_the_traffic(dropped_user: UserInfo, user: UserInfo) -> None:
    lines = format_user([dropped_user], now=NOW, tz=TZ).splitlines()
    line = "\tDropped packets: 6 (spoofed-source 3, link-local 0, malformed 1, "
    line += "restricted-route 2, restricted-port 0)"
    assert line in lines
    assert lines[lines.index(line) - 1].startswith("\tAverage bandwidth RX:")
    # Without counters (an older worker, a session being set up) nothing is printed.
    assert "Dropped" not in format_user([user], now=NOW, tz=TZ)


def test_json_has_the_total_and_one_integer_per_reason(dropped_user: UserInfo) -> None:
    obj = json.loads(format_user_json([dropped_user], now=NOW, tz=TZ))[0]
    assert obj["Dropped packets"] == 6
    assert obj["dropped_spoofed_source"] == 3
    assert obj["dropped_restricted_route"] == 2
    assert obj["dropped_restricted_port"] == 0
    keys = list(obj)
    assert keys.index("Average RX") < keys.index("Dropped packets") < keys.index("DPD")


def test_the_counters_cross_the_control_socket(dropped_user: UserInfo) -> None:
    response = UsersResponse((dropped_user,))
    assert parse_response_untrusted(encode_response(response)) == response


@pytest.mark.parametrize(
    "value", ['[["a", "1"]]', '[["a"]]', '"spoofed"', '[["a", 1, 2]]', "[[1, 1]]", '[["a", true]]']
)
def test_bad_counters_are_refused(value: str) -> None:
    line = f'{{"v":1,"type":"users","users":[{{"id":3,"dropped":{value}}}]}}\n'.encode()
    with pytest.raises(BadControlMessage, match="dropped"):
        parse_response_untrusted(line)
