"""The audit log, the package surface and the app's settings."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from ocgate.console import AuditLog, ConsoleSettings, token_digest
from ocgate.console._auth import LoginGuard, SessionTable


def test_record_writes_one_json_line_and_keeps_the_last() -> None:
    lines: list[str] = []
    audit = AuditLog(lines.append, keep=2, wall=lambda: 12.3456)
    for n in range(3):
        audit.record("root", "admin", "192.0.2.1", "user.lock", f"u{n}", "ok")
    assert len(lines) == 3
    assert "\n" not in lines[0]
    assert json.loads(lines[0]) == {
        "time": 12.346,
        "who": "root",
        "role": "admin",
        "source": "192.0.2.1",
        "action": "user.lock",
        "target": "u0",
        "outcome": "ok",
    }
    assert [e["target"] for e in audit.entries()] == ["u1", "u2"]
    assert repr(audit) == "AuditLog(<2 entries>)"


def test_record_clips_long_fields_and_survives_write_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(line: str) -> None:
        raise OSError("disk full")

    audit = AuditLog(broken, wall=lambda: 0.0)
    with caplog.at_level(logging.ERROR, logger="ocgate.console"):
        audit.record("x" * 2000, "admin", "s", "user.add", "t", "ok")
    assert "cannot write the console audit log" in caplog.text
    assert len(str(audit.entries()[0]["who"])) == 512


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keep"):
        AuditLog(print, keep=0)


def test_settings_repr_hides_token_digests() -> None:
    digest = token_digest("some-token-value-0123456789")
    settings = ConsoleSettings({digest: "admin"}, AuditLog(print))
    assert digest.hex() not in repr(settings)
    assert str(digest) not in repr(settings)


def test_guard_tables_are_bounded() -> None:
    guard = LoginGuard(max_failures=1, window=60, ban_seconds=60, rate=1, max_sources=3)
    for n in range(10):
        assert guard.failure(f"192.0.2.{n}", 0.0)
        assert guard.attempt(f"192.0.2.{n}", 0.0)
    assert not guard.banned("192.0.2.0", 1.0)  # Forgotten: the table keeps the newest 3.
    assert guard.banned("192.0.2.9", 1.0)
    assert not guard.banned("192.0.2.9", 61.0)


def test_session_repr_has_no_secrets() -> None:
    table = SessionTable(idle=10, lifetime=20)
    cookie, session = table.create("root", "admin", 0.0)
    assert cookie not in repr(table)
    assert session.csrf not in repr(session)
    assert table.lookup(cookie, 5.0) is session
    assert table.lookup(cookie + "x", 5.0) is None


def test_backend_types_import_without_the_web_stack() -> None:
    code = (
        "import sys, ocgate.console as c; c.ConsoleError; c.VpnUsers;"
        "assert 'starlette' not in sys.modules and 'uvicorn' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
