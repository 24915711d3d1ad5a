"""occtl's value formats: intervals, decimal byte sizes and local dates (pure).

Intervals follow ocserv ``src/occtl/time.c`` ``print_time_ival7()`` (from procps ``w.c``): seven
columns, ``%5lus`` up to a minute, ``%2lum:%02us`` below an hour, ``%2luh:%02um`` below two days,
then ``%2ludays``; a negative interval (clock stepped back) prints ``   ?   ``. Sizes follow
``src/occtl/occtl.c`` ``bytes2human()``: decimal units, one decimal, ``kB`` only *above* 1000.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Final

__all__ = ["DATE_TIME_FMT", "format_bytes", "format_date", "format_interval", "interval_between"]

#: occtl's ``DATE_TIME_FMT`` (``src/occtl/occtl.h``).
DATE_TIME_FMT: Final = "%Y-%m-%d %H:%M"

_MINUTE: Final = 60
_HOUR: Final = 60 * _MINUTE
_DAY: Final = 24 * _HOUR


def format_interval(seconds: int) -> str:
    """Format seconds like occtl's ``print_time_ival7()`` (``    5s``, `` 2m:05s``, ``22days``)."""
    t = seconds
    if t < 0:
        return "   ?   "
    if t >= 2 * _DAY:
        return f"{t // _DAY:2d}days"
    if t >= _HOUR:
        return f"{t // _HOUR:2d}h:{(t // _MINUTE) % 60:02d}m"
    if t > _MINUTE:
        return f"{t // _MINUTE:2d}m:{t % _MINUTE:02d}s"
    return f"{t:5d}s"


def interval_between(later: float, earlier: float) -> str:
    """``print_time_ival7(later, earlier)`` on whole seconds, as occtl's ``time_t`` values."""
    return format_interval(int(later) - int(earlier))


def format_bytes(count: int, suffix: str = "") -> str:
    """Format a byte count like occtl's ``bytes2human()`` (``123 bytes``, ``16.0 kB``, ``1.2 MB``).

    :param suffix: appended after the unit, ``"/s"`` for rates.
    """
    if 1000 < count < 1000**2:
        return f"{count / 1000:.1f} kB{suffix}"
    if 1000**2 <= count < 1000**3:
        return f"{count / 1000**2:.1f} MB{suffix}"
    if count >= 1000**3:
        return f"{count / 1000**3:.1f} GB{suffix}"
    return f"{count} bytes{suffix}"


def format_date(when: float, tz: tzinfo | None = None) -> str:
    """Format an epoch time as occtl does (``YYYY-MM-DD HH:MM``).

    :param tz: the zone to show; ``None`` means the local zone, like occtl's ``localtime()``.
    """
    try:
        return datetime.fromtimestamp(when, tz).strftime(DATE_TIME_FMT)
    except (OverflowError, OSError, ValueError):
        return "?"
