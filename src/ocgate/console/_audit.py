"""The console's audit log: one JSON line per change, refused change, login and logout.

Theory of operation
-------------------
:meth:`AuditLog.record` builds one JSON object with fixed keys (``time``, ``who``, ``role``,
``source``, ``action``, ``target``, ``outcome``), hands it as one line to the ``write`` callable
the console process supplies (the file named by ``admin-audit-log``, or a log), and keeps the
last ``keep`` entries in memory for ``GET /api/v1/audit``. Callers pass names, session ids,
addresses and group lists as ``target``, never a password, an OTP code or secret, or a token:
no parameter of :meth:`record` takes one.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["AuditEntry", "AuditLog"]

AuditEntry = dict[str, str | float]
"""One audit record as its JSON object."""

_MAX_FIELD: Final = 512
log = logging.getLogger("ocgate.console")


def _clip(value: str) -> str:
    return value if len(value) <= _MAX_FIELD else value[: _MAX_FIELD - 1] + "…"


class AuditLog:
    """Writes audit records through ``write`` and remembers the last ``keep`` of them.

    :param write: receives each record as one JSON line (no line break); an exception it
        raises is logged and does not undo the change that was recorded.
    :param keep: how many records ``GET /api/v1/audit`` can show.
    :param wall: the wall clock (epoch seconds), injectable for tests.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        keep: int = 500,
        *,
        wall: Callable[[], float] | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be positive")
        self._write = write
        self._entries: deque[AuditEntry] = deque(maxlen=keep)
        if wall is None:
            import time  # noqa: TID251 -- the audit log timestamps records with the wall clock.

            wall = time.time
        self._wall = wall

    def __repr__(self) -> str:
        return f"AuditLog(<{len(self._entries)} entries>)"

    def record(
        self, who: str, role: str, source: str, action: str, target: str, outcome: str
    ) -> None:
        """Write one record.

        :param who: the administrator (or ``token:…`` label, or ``-`` when unknown).
        :param role: ``admin``, ``readonly`` or ``-``.
        :param source: the client's address.
        :param action: what was asked, e.g. ``user.add``.
        :param target: what it applied to (a user name, a session id, an address...).
        :param outcome: ``ok`` or ``refused: REASON``.
        """
        entry: AuditEntry = {
            "time": round(self._wall(), 3),
            "who": _clip(who),
            "role": role,
            "source": _clip(source),
            "action": action,
            "target": _clip(target),
            "outcome": _clip(outcome),
        }
        self._entries.append(entry)
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        try:
            self._write(line)
        except Exception:
            log.exception("cannot write the console audit log")

    def entries(self) -> list[AuditEntry]:
        """The remembered records, oldest first."""
        return [dict(entry) for entry in self._entries]
