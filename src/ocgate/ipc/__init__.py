"""Typed message channels between ocgate's processes (docs/ARCHITECTURE.md, "Processes")."""

from __future__ import annotations

from ocgate.ipc import _messages as messages
from ocgate.ipc._channel import (
    MAX_FDS,
    MAX_MESSAGE,
    Channel,
    ChannelClosed,
    RemoteFailure,
    socket_pair,
)

__all__ = [
    "MAX_FDS",
    "MAX_MESSAGE",
    "Channel",
    "ChannelClosed",
    "RemoteFailure",
    "messages",
    "socket_pair",
]
