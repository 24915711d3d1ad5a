"""What the supervisor tells a child process when it starts it (and on every reload)."""

from __future__ import annotations

from dataclasses import dataclass

from ocgate.config import Config

__all__ = ["ChildSetup"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSetup:
    """What a child needs to know (pickled, supervisor → child only)."""

    config: Config
    log_level: int
    log_stderr: bool
    log_json: bool
    account: object = None
    """The :class:`ocgate.sandbox.Account` to become (``None``: keep the current identity)."""
    cookie_key: bytes = b""
    store_path: str = ""
