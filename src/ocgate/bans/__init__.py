"""Ban scores per source address (``max-ban-score``, ``ban-time``, …; ocserv-compatibility §4.9)."""

from __future__ import annotations

from ocgate.bans._table import BanEntry, BanPolicy, BanTable, SavedBan, ban_key, is_exempt

__all__ = ["BanEntry", "BanPolicy", "BanTable", "SavedBan", "ban_key", "is_exempt"]
