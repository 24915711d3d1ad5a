"""The gateway's Prometheus scrape as the interop tests read it (``metrics-listen``).

The scrape is fetched from inside the server's namespace, where ``metrics-listen`` binds on
loopback. Every sample carries a ``node`` label (``node-name``); :func:`sample` ignores it, so a
test names a sample as the metric's documentation does.
"""

from __future__ import annotations

import re
import sys

from ._netns import NetnsPair

__all__ = ["sample", "scrape", "without_node"]


def scrape(pair: NetnsPair, port: int) -> str:
    """The text of ``GET /metrics`` on ``127.0.0.1:port`` in the server's namespace."""
    code = (
        "import urllib.request as u;"
        f"print(u.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    )
    return pair.run_in(pair.server, [sys.executable, "-c", code]).stdout


def sample(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels but ``node``) in the scrape ``text``."""
    for line in text.splitlines():
        if without_node(line).startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the scrape:\n{text}")


def without_node(line: str) -> str:
    """A sample line without the ``node`` label every sample carries (``node-name``)."""
    line = re.sub(r',?node="[^"]*"', "", line, count=1)
    return line.replace("{,", "{").replace("{}", "")
