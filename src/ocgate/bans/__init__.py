"""Ban scores per source address and the accept gate (ocserv-compatibility §4.9; hostile peers)."""

from __future__ import annotations

from ocgate.bans._gate import (
    MAX_BANS,
    Admission,
    AdmissionGate,
    AdmissionRefused,
    GatePolicy,
)
from ocgate.bans._table import BanEntry, BanPolicy, BanTable, SavedBan, ban_key, is_exempt

__all__ = [
    "MAX_BANS",
    "Admission",
    "AdmissionGate",
    "AdmissionRefused",
    "BanEntry",
    "BanPolicy",
    "BanTable",
    "GatePolicy",
    "SavedBan",
    "ban_key",
    "is_exempt",
]
