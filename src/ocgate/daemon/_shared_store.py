"""The node's session store when several gateways share one Redis/Valkey store.

:class:`SharedSessionStore` is a :class:`~ocgate.session.SessionStore`: the node's own SQLite
store (its durable copy, the index every lookup uses), with every change also queued for the
shared store (:class:`~ocgate.daemon._shared.SharedState`), which writes it for the session's
home only. :meth:`SharedSessionStore.forget` and :meth:`SharedSessionStore.adopt` move a session
out of and into this node without touching the shared store (``daemon/_cluster.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ocgate.daemon._shared import SharedState
from ocgate.daemon._shared import held_leases as _leases
from ocgate.session import Ipv4Pool, Ipv6Pool, Session, SessionCookie

if TYPE_CHECKING:
    from ocgate.session import SqliteSessionStore

__all__ = ["SharedSessionStore"]


class SharedSessionStore:
    """A :class:`~ocgate.session.SessionStore`: the node's SQLite store, each change also queued
    for the shared store (this node is the home of every session it holds)."""

    def __init__(self, local: SqliteSessionStore, shared: SharedState) -> None:
        self.local = local
        self.shared = shared

    def __repr__(self) -> str:
        return f"SharedSessionStore(local={self.local!r}, shared={self.shared!r})"

    def create(
        self,
        *,
        username: str,
        groups: Sequence[str],
        group: str | None,
        now: float,
        user_agent: str | None,
        remote_addr: str | None,
        cookie_timeout: float,
        session_timeout: float | None,
    ) -> tuple[SessionCookie, Session]:
        cookie, session = self.local.create(
            username=username,
            groups=groups,
            group=group,
            now=now,
            user_agent=user_agent,
            remote_addr=remote_addr,
            cookie_timeout=cookie_timeout,
            session_timeout=session_timeout,
        )
        self.shared.dirty(session)
        return cookie, session

    def lookup(self, cookie: str, now: float) -> Session:
        return self.local.lookup(cookie, now)

    def by_sid(self, sid: str) -> Session:
        return self.local.by_sid(sid)

    def sessions(self) -> list[Session]:
        return self.local.sessions()

    def _known(self, session: Session) -> bool:
        try:
            return self.local.by_sid(session.sid) is session
        except KeyError:
            return False

    def mark_connected(self, session: Session, now: float, *, tunnel_id: int | None = None) -> None:
        self.local.mark_connected(session, now, tunnel_id=tunnel_id)
        if self._known(session):
            self.shared.dirty(session)

    def mark_disconnected(
        self, session: Session, now: float, cookie_timeout: float, *, tunnel_id: int | None = None
    ) -> None:
        self.local.mark_disconnected(session, now, cookie_timeout, tunnel_id=tunnel_id)
        if self._known(session):
            self.shared.dirty(session)

    def invalidate(self, session: Session) -> None:
        self.local.invalidate(session)
        self.shared.gone(session, _leases(session))

    def expire(self, now: float) -> list[Session]:
        expired = self.local.expire(now)
        for session in expired:
            self.shared.gone(session, _leases(session))
        return expired

    def save(self, session: Session) -> None:
        self.local.save(session)
        if self._known(session):
            self.shared.dirty(session)

    # What the authentication service asks of a durable store (``getattr``) -------------------

    def forget(self, session: Session) -> None:
        """Drop this node's copy of ``session`` (it lives on at another node)."""
        self.local.invalidate(session)

    def adopt(self, session: Session) -> None:
        self.local.adopt(session)

    def flush(self) -> None:
        self.local.flush()

    @property
    def queued(self) -> int:
        return self.local.queued

    def close(self) -> None:
        self.local.close()

    def restore_leases(self, pool4: Ipv4Pool | None, pool6: Ipv6Pool | None) -> list[Session]:
        return self.local.restore_leases(pool4, pool6)

    def save_bans(self, entries: Iterable[Any]) -> None:
        self.local.save_bans(entries)

    def load_bans(self) -> list[Any]:
        return self.local.load_bans()
