"""Who is asking: console sessions, bearer tokens, and the per-source login guard.

Theory of operation
-------------------
* **Sessions.** A successful login mints a random 32-byte session token (the cookie value) and
  a separate random CSRF token. :class:`SessionTable` keys sessions by the SHA-256 digest of the
  cookie, so the table never holds a usable cookie; a session ends after ``idle`` seconds
  without a request or ``lifetime`` seconds after login, whichever comes first. The table holds
  at most ``capacity`` sessions: a login beyond that evicts the oldest one.
* **CSRF.** Every state-changing request authenticated by the cookie must repeat the session's
  CSRF token in ``X-CSRF-Token``; :func:`check_token` compares in constant time and raises.
* **Tokens.** ``Authorization: Bearer TOKEN`` is looked up by its SHA-256 digest in the
  ``token_digests`` map the console process gives the app (the console never sees the token
  file); every digest is compared, without stopping at the first match.
* **Login guard.** :class:`LoginGuard` counts, per source address, login attempts in the last
  minute (beyond ``rate`` the source gets 429) and failures in the last ``window`` seconds
  (``max_failures`` of them ban the source for ``ban_seconds``: 403 on login and on the API).
  Both tables are bounded; the oldest source is forgotten first.

Time is passed in (``now``, monotonic seconds), so the tests replay expiry exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from ocgate.console._backend import Role
from ocgate.errors import AuthFailed

__all__ = [
    "Identity",
    "LoginGuard",
    "Session",
    "SessionTable",
    "check_token",
    "lookup_bearer",
    "token_digest",
]

_RATE_WINDOW: Final = 60.0
_MAX_TOKEN_CHARS: Final = 512
_MAX_SOURCES: Final = 4096


def token_digest(token: str) -> bytes:
    """The SHA-256 digest the app keys bearer tokens (and sessions) by."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def check_token(presented: str | None, expected: str) -> None:
    """:raises AuthFailed: ``presented`` is missing or differs from ``expected``."""
    if presented is None or len(presented) > _MAX_TOKEN_CHARS:
        raise AuthFailed("CSRF token missing or invalid")
    if not hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), expected.encode()):
        raise AuthFailed("CSRF token missing or invalid")


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated requester: an administrator's session or an API token."""

    username: str
    role: Role
    session: Session | None = None
    """The cookie session, or ``None`` for a bearer token."""


def lookup_bearer(header: str, digests: Mapping[bytes, Role]) -> Identity:
    """The identity of an ``Authorization`` header value.

    :raises AuthFailed: not a bearer credential, malformed, or an unknown token.
    """
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_CHARS:
        raise AuthFailed("malformed bearer token")
    presented = token_digest(token)
    found: Role | None = None
    for digest, role in digests.items():
        if hmac.compare_digest(presented, digest):
            found = role
    if found is None:
        raise AuthFailed("unknown bearer token")
    return Identity(f"token:{presented.hex()[:8]}", found)


@dataclass(slots=True)
class Session:
    username: str
    role: Role
    csrf: str = field(repr=False)
    created: float
    last_seen: float


class SessionTable:
    """Server-side console sessions, keyed by the digest of their cookie."""

    def __init__(self, *, idle: float, lifetime: float, capacity: int = 1024) -> None:
        self._idle = idle
        self._lifetime = lifetime
        self._capacity = capacity
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()

    def __repr__(self) -> str:
        return f"SessionTable(<{len(self._sessions)} sessions>)"

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, username: str, role: Role, now: float) -> tuple[str, Session]:
        """A new session and its cookie value (shown to the browser once)."""
        self._purge(now)
        while len(self._sessions) >= self._capacity:
            self._sessions.popitem(last=False)
        cookie = secrets.token_urlsafe(32)
        session = Session(username, role, secrets.token_urlsafe(32), now, now)
        self._sessions[token_digest(cookie)] = session
        return cookie, session

    def lookup(self, cookie: str | None, now: float) -> Session | None:
        """The live session of a cookie value (refreshing its idle timer), else ``None``."""
        if not cookie or len(cookie) > _MAX_TOKEN_CHARS:
            return None
        key = token_digest(cookie)
        session = self._sessions.get(key)
        if session is None:
            return None
        if now - session.last_seen > self._idle or now - session.created > self._lifetime:
            del self._sessions[key]
            return None
        session.last_seen = now
        return session

    def remove(self, cookie: str | None) -> None:
        if cookie:
            self._sessions.pop(token_digest(cookie), None)

    def _purge(self, now: float) -> None:
        expired = [
            key
            for key, s in self._sessions.items()
            if now - s.last_seen > self._idle or now - s.created > self._lifetime
        ]
        for key in expired:
            del self._sessions[key]


class LoginGuard:
    """Per-source login rate limit and failed-login bans."""

    def __init__(
        self,
        *,
        max_failures: int,
        window: float,
        ban_seconds: float,
        rate: int,
        max_sources: int = _MAX_SOURCES,
    ) -> None:
        self._max_failures = max_failures
        self._window = window
        self._ban_seconds = ban_seconds
        self._rate = rate
        self._max_sources = max_sources
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._attempts: OrderedDict[str, deque[float]] = OrderedDict()
        self._banned: OrderedDict[str, float] = OrderedDict()

    def banned(self, source: str, now: float) -> bool:
        """Whether ``source`` is banned at ``now``."""
        until = self._banned.get(source)
        if until is None:
            return False
        if now >= until:
            del self._banned[source]
            return False
        return True

    def attempt(self, source: str, now: float) -> bool:
        """Count a login attempt; False when ``source`` exceeded the rate (answer 429)."""
        times = self._recent(self._attempts, source, now, _RATE_WINDOW)
        if len(times) >= self._rate:
            return False
        times.append(now)
        return True

    def failure(self, source: str, now: float) -> bool:
        """Count a failed login or bad token; True when this failure bans ``source``."""
        times = self._recent(self._failures, source, now, self._window)
        times.append(now)
        if len(times) < self._max_failures:
            return False
        del self._failures[source]
        self._banned[source] = now + self._ban_seconds
        self._banned.move_to_end(source)
        while len(self._banned) > self._max_sources:
            self._banned.popitem(last=False)
        return True

    def success(self, source: str) -> None:
        """A successful login clears the source's failures."""
        self._failures.pop(source, None)

    def _recent(
        self, table: OrderedDict[str, deque[float]], source: str, now: float, span: float
    ) -> deque[float]:
        times = table.get(source)
        if times is None:
            times = table[source] = deque()
            while len(table) > self._max_sources:
                table.popitem(last=False)
        else:
            table.move_to_end(source)
        while times and now - times[0] >= span:
            times.popleft()
        return times
