"""Shared fixtures for the ocserv.conf parser tests: a directory with the files a config names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config

BASE = (
    'auth = "plain[passwd=ocpasswd]"\nserver-cert = server-cert.pem\nserver-key = server-key.pem\n'
)
"""Three lines that make a minimal valid config; extra lines start at line 4."""

FIRST = 4

Parse = Callable[[str], Config]


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    for name in ("ocpasswd", "otp", "server-cert.pem", "server-key.pem", "ca.pem", "rad.conf"):
        (tmp_path / name).write_text("x\n")
    return tmp_path


@pytest.fixture
def source(conf_dir: Path) -> str:
    return str(conf_dir / "ocserv.conf")


@pytest.fixture
def parse(conf_dir: Path, source: str) -> Parse:
    """Parse ``BASE`` followed by the given lines."""

    def _parse(extra: str) -> Config:
        return parse_config(BASE + extra, source=source, base_dir=str(conf_dir))

    return _parse


@pytest.fixture
def parse_raw(conf_dir: Path, source: str) -> Parse:
    """Parse exactly the given text."""

    def _parse(text: str) -> Config:
        return parse_config(text, source=source, base_dir=str(conf_dir))

    return _parse
