"""occtl's interval, size and date formats (ocserv ``src/occtl/time.c`` ``print_time_ival7()``,
``src/occtl/occtl.c`` ``bytes2human()``, ``DATE_TIME_FMT``)."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.control import format_bytes, format_date, format_interval


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "    0s"),
        (5, "    5s"),
        (59, "   59s"),
        (60, "   60s"),  # print_time_ival7 uses "t > 60" for minutes
        (61, " 1m:01s"),
        (125, " 2m:05s"),
        (3599, "59m:59s"),
        (3600, " 1h:00m"),
        (41 * 3600 + 6 * 60 + 59, "41h:06m"),
        (48 * 3600 - 1, "47h:59m"),
        (48 * 3600, " 2days"),
        (22 * 86400 + 3600, "22days"),
        (123 * 86400, "123days"),
        (-1, "   ?   "),
    ],
)
def test_interval_formats(seconds: int, text: str) -> None:
    assert format_interval(seconds) == text


@given(st.integers(min_value=0, max_value=99 * 86400))
def test_interval_is_seven_columns_below_100_days(seconds: int) -> None:
    text = format_interval(seconds)
    assert 6 <= len(text) <= 7
    assert text.strip()


@pytest.mark.parametrize(
    ("count", "suffix", "text"),
    [
        (0, "", "0 bytes"),
        (123, "", "123 bytes"),
        (1000, "", "1000 bytes"),  # bytes2human: kB only when > 1000
        (1001, "", "1.0 kB"),
        (16000, "/s", "16.0 kB/s"),
        (12345, "", "12.3 kB"),
        (999_999, "", "1000.0 kB"),
        (1_000_000, "", "1.0 MB"),
        (1_234_567, "", "1.2 MB"),
        (999_999_999, "", "1000.0 MB"),
        (1_000_000_000, "", "1.0 GB"),
        (31_000_000_000, "", "31.0 GB"),
        (110_013_000, "", "110.0 MB"),
    ],
)
def test_byte_sizes_are_decimal(count: int, suffix: str, text: str) -> None:
    assert format_bytes(count, suffix) == text


def test_date_format_and_zone() -> None:
    assert format_date(1_700_000_000, UTC) == "2023-11-14 22:13"
    assert format_date(1_700_000_000, timezone(timedelta(hours=2))) == "2023-11-15 00:13"
    assert len(format_date(1_700_000_000)) == 16  # local zone


def test_date_out_of_range_does_not_raise() -> None:
    assert format_date(1e300, UTC) == "?"
