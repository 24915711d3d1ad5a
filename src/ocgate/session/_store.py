"""Where sessions live: the :class:`SessionStore` interface and its in-memory implementation.

Theory of operation
-------------------
* A cookie is 32 random bytes in standard base64 with padding: 44 characters, like ocserv
  (anyconnect-protocol §4). It is the only secret; the store keeps ``sha256(raw bytes)`` and forgets
  the cookie once :meth:`SessionStore.create` returns it.
* :func:`parse_cookie_untrusted` checks the exact shape (length first, then the alphabet, then the
  canonical final character) *before* decoding anything (ocserv #719), and raises only
  :class:`~ocgate.errors.InvalidCookie`.
* Lookup is by digest in a dict, and the found session's digest is compared again with
  :func:`hmac.compare_digest`; nothing about the secret leaks through timing.
* Lifetime (ocserv-compatibility §4.7): a cookie never expires while a tunnel uses it; after a
  disconnect it lives ``cookie_timeout`` more seconds; ``session_deadline`` (``created +
  session-timeout``) is absolute and spans reconnects (ocserv #599). :meth:`SessionStore.lookup`
  refuses an expired session but does not remove it: :meth:`SessionStore.expire` removes expired
  sessions and returns them so the caller releases their leases and runs disconnect scripts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Protocol

from ocgate.errors import InvalidCookie
from ocgate.session._session import Session, SessionCookie

__all__ = [
    "COOKIE_LENGTH",
    "MemorySessionStore",
    "SessionStore",
    "cookie_digest_untrusted",
    "parse_cookie_untrusted",
]

COOKIE_BYTES = 32
COOKIE_LENGTH = 44
"""Characters in a cookie: ``base64(32 bytes)`` with one ``=`` of padding."""
SID_BYTES = 4
"""A session id is this many random bytes in hex (8 characters)."""

# 42 free characters, then one that encodes only 2 bits (its low 4 bits are zero), then the padding.
_COOKIE_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")

RandomBytes = Callable[[int], bytes]


def parse_cookie_untrusted(cookie: str) -> bytes:
    """Return the 32 raw bytes of a ``webvpn`` cookie value sent by a client.

    :raises InvalidCookie: anything but exactly 44 characters of canonical padded base64.
    """
    if not isinstance(cookie, str) or len(cookie) != COOKIE_LENGTH:
        raise InvalidCookie("cookie has the wrong length")
    if _COOKIE_RE.fullmatch(cookie) is None:
        raise InvalidCookie("cookie is not canonical base64")
    return base64.b64decode(cookie, validate=True)


def cookie_digest_untrusted(cookie: str) -> bytes:
    """SHA-256 of the raw bytes of a client's cookie, the key sessions are stored under.

    :raises InvalidCookie: the cookie is malformed (see :func:`parse_cookie_untrusted`).
    """
    return hashlib.sha256(parse_cookie_untrusted(cookie)).digest()


class SessionStore(Protocol):
    """Sessions by cookie and by public id. Times are the caller's clock, in seconds."""

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
        """Start a session after a successful authentication; return its new cookie and itself.

        The cookie expires ``cookie_timeout`` seconds after ``now`` unless a tunnel uses it; a
        ``session_timeout`` (``None`` or 0 = none) sets the absolute deadline.
        """
        ...

    def lookup(self, cookie: str, now: float) -> Session:
        """Find the live session named by a client's cookie.

        :raises InvalidCookie: malformed, unknown or expired.
        """
        ...

    def by_sid(self, sid: str) -> Session:
        """Find a session by its public id.

        :raises KeyError: no such session.
        """
        ...

    def sessions(self) -> list[Session]:
        """Every stored session (connected or not)."""
        ...

    def mark_connected(self, session: Session, now: float, *, tunnel_id: int | None = None) -> None:
        """A tunnel (``tunnel_id``, if given) now uses the session: its cookie stops expiring."""
        ...

    def mark_disconnected(
        self, session: Session, now: float, cookie_timeout: float, *, tunnel_id: int | None = None
    ) -> None:
        """The session's tunnel is gone: the cookie lives ``cookie_timeout`` seconds more.

        With ``tunnel_id``, nothing happens unless that tunnel is still the session's current one,
        so the late teardown of a replaced tunnel cannot disconnect its successor (ocserv #706).
        """
        ...

    def invalidate(self, session: Session) -> None:
        """Forget the session (logout, BYE, admin disconnect); its cookie stops working at once."""
        ...

    def expire(self, now: float) -> list[Session]:
        """Remove the sessions that are over at ``now``; return them to release their leases."""
        ...


class MemorySessionStore:
    """A :class:`SessionStore` in this process's memory.

    :param random_bytes: source of cookie and session-id randomness.
    """

    __slots__ = ("_by_digest", "_by_sid", "_random_bytes")

    def __init__(self, random_bytes: RandomBytes = secrets.token_bytes) -> None:
        self._random_bytes = random_bytes
        self._by_digest: dict[bytes, Session] = {}
        self._by_sid: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._by_digest)

    def __repr__(self) -> str:
        return f"MemorySessionStore(sessions={len(self)})"

    def _new_sid(self) -> str:
        while True:
            sid = self._random_bytes(SID_BYTES).hex()
            if sid not in self._by_sid:
                return sid

    def _new_token(self) -> tuple[SessionCookie, bytes]:
        while True:
            raw = self._random_bytes(COOKIE_BYTES)
            digest = hashlib.sha256(raw).digest()
            if digest not in self._by_digest:
                return SessionCookie(base64.b64encode(raw).decode("ascii")), digest

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
        cookie, digest = self._new_token()
        session = Session(
            sid=self._new_sid(),
            token_digest=digest,
            username=username,
            groups=tuple(groups),
            group=group,
            created=now,
            authenticated_at=now,
            expires_at=now + cookie_timeout,
            session_deadline=now + session_timeout if session_timeout else None,
            remote_addr=remote_addr,
            user_agent=user_agent,
        )
        self._by_digest[digest] = session
        self._by_sid[session.sid] = session
        return cookie, session

    def lookup(self, cookie: str, now: float) -> Session:
        digest = cookie_digest_untrusted(cookie)
        session = self._by_digest.get(digest)
        if session is None or not hmac.compare_digest(session.token_digest, digest):
            raise InvalidCookie("unknown cookie")
        if session.is_expired(now):
            raise InvalidCookie(f"session {session.sid} has expired")
        return session

    def by_sid(self, sid: str) -> Session:
        return self._by_sid[sid]

    def sessions(self) -> list[Session]:
        return list(self._by_sid.values())

    def mark_connected(self, session: Session, now: float, *, tunnel_id: int | None = None) -> None:
        session.connected = True
        session.expires_at = None
        if tunnel_id is not None:
            session.tunnel_id = tunnel_id

    def mark_disconnected(
        self, session: Session, now: float, cookie_timeout: float, *, tunnel_id: int | None = None
    ) -> None:
        if tunnel_id is not None and session.tunnel_id != tunnel_id:
            return
        session.connected = False
        session.tunnel_id = None
        session.expires_at = now + cookie_timeout

    def invalidate(self, session: Session) -> None:
        # ``connected`` is left as it is: the caller uses it to know a tunnel must be torn down.
        self._by_digest.pop(session.token_digest, None)
        self._by_sid.pop(session.sid, None)

    def expire(self, now: float) -> list[Session]:
        expired = [s for s in self._by_sid.values() if s.is_expired(now)]
        for session in expired:
            self.invalidate(session)
        return expired
