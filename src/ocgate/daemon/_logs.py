"""Logging set-up shared by the supervisor and every child (stderr, syslog, JSON lines).

Apart from :mod:`ocgate.daemon._main` so that a child process configures its logging without
importing the supervisor's modules (about 2 MB of memory in each child).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys

__all__ = ["SYSLOG_FACILITIES", "setup_logging"]


class _JsonFormatter(logging.Formatter):
    """One JSON object per line; ``key=value`` pairs of the message become fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        fields: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        for key, value in _KV.findall(message):
            fields[key] = value.strip("'\"")
        fields["message"] = message
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, ensure_ascii=False)


_KV = re.compile(r"(\w[\w-]*)=('[^']*'|\"[^\"]*\"|\S+)")


SYSLOG_FACILITIES = logging.handlers.SysLogHandler.facility_names
"""``--syslog-facility`` names (those of syslog(3): ``auth``, ``daemon``, ``local0``, ...)."""


def setup_logging(
    level: int, *, to_stderr: bool, json_lines: bool = False, facility: str = "daemon"
) -> None:
    py_level = logging.WARNING if level <= 0 else logging.INFO if level <= 2 else logging.DEBUG
    handler: logging.Handler
    if to_stderr or not os.path.exists("/dev/log"):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                "%Y-%m-%dT%H:%M:%S",
            )
        )
    else:
        handler = logging.handlers.SysLogHandler(
            address="/dev/log", facility=SYSLOG_FACILITIES[facility]
        )
        handler.setFormatter(
            logging.Formatter("ocgate[%(process)d]: %(levelname)s %(name)s: %(message)s")
        )
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(py_level)
    # Library internals (netlink message dumps, selector choice) only at ocserv's TLS-debug level 9.
    for noisy in ("pyroute2", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level >= 9 else logging.WARNING)
