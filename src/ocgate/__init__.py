"""ocgate: an AnyConnect-protocol VPN gateway, a drop-in replacement for ocserv."""

from __future__ import annotations

from ocgate._version import __version__

__all__ = ["__version__"]
