"""The state of one authenticated VPN session and the cookie that names it.

A session starts when authentication succeeds and outlives its tunnels: a reconnect
(anyconnect-protocol §11) presents the same cookie and gets the same session, hence the same
addresses. The cookie itself is never stored; the session keeps only its SHA-256 digest
(anyconnect-protocol §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from ocgate.errors import ResourceError
from ocgate.session._lease import Ipv4Pool, Ipv6Pool

__all__ = ["Session", "SessionCookie", "assign_leases", "release_leases"]


class SessionCookie(str):
    """The ``webvpn`` cookie value: a ``str`` whose ``repr`` hides the secret.

    ``str(cookie)`` and formatting give the value (for ``Set-Cookie``); ``repr`` (and so ``%r`` in
    logs, tracebacks and containers) does not.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "SessionCookie('<redacted>')"


@dataclass(slots=True, kw_only=True, eq=False)
class Session:
    """One session; mutable, owned by a :class:`~ocgate.session.SessionStore`.

    Times are the caller's clock (``now``), in seconds. Equality is identity.
    """

    sid: str
    """Short public id for logs and occtl; independent of the cookie and not a secret."""
    token_digest: bytes = field(repr=False)
    """SHA-256 of the raw cookie bytes; the cookie itself is never kept."""
    username: str
    groups: tuple[str, ...] = ()
    """Every group the user belongs to (from the auth backend)."""
    group: str | None = None
    """The group the user selected or was put in."""
    created: float
    authenticated_at: float
    expires_at: float | None = None
    """When the cookie expires while no tunnel uses it; ``None`` while connected."""
    session_deadline: float | None = None
    """``created + session-timeout``: absolute, spans reconnects (ocserv #599)."""
    cookie_timeout: float = 0.0
    """The ``cookie_timeout`` given when the session was created (0 if unknown).
    :class:`~ocgate.session.SqliteSessionStore` keeps it to re-arm the cookie of a session whose
    tunnel was up when the gateway stopped."""
    ipv4: IPv4Address | None = None
    ipv6: IPv6Network | None = None
    connected: bool = False
    tunnel_id: int | None = None
    remote_addr: str | None = None
    user_agent: str | None = None
    hostname: str | None = None
    device: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def is_expired(self, now: float) -> bool:
        """Whether the session is over at ``now`` (session deadline, or cookie expiry when idle)."""
        if self.session_deadline is not None and now >= self.session_deadline:
            return True
        return not self.connected and self.expires_at is not None and now >= self.expires_at


def assign_leases(
    session: Session,
    v4pool: Ipv4Pool | None,
    v6pool: Ipv6Pool | None,
    prefer4: IPv4Address | None = None,
    prefer6: IPv6Network | IPv6Address | None = None,
) -> None:
    """Give ``session`` an address from each configured pool unless it already holds one.

    A session keeps its leases across reconnects (anyconnect-protocol §11: a changed address is
    fatal to openconnect), so an existing lease wins over ``prefer4``/``prefer6``, which only guide
    a first allocation (e.g. the ``X-CSTP-Address`` a client sends after a gateway restart). If the
    IPv6 pool is exhausted, an IPv4 lease taken by this call is given back before the error
    propagates.

    :raises ResourceError: a pool has no free lease.
    """
    new4: IPv4Address | None = None
    if v4pool is not None and session.ipv4 is None:
        new4 = v4pool.allocate(session.username, prefer=prefer4)
    if v6pool is not None and session.ipv6 is None:
        try:
            session.ipv6 = v6pool.allocate(session.username, prefer=prefer6)
        except ResourceError:
            if new4 is not None and v4pool is not None:
                v4pool.release(new4)
            raise
    if new4 is not None:
        session.ipv4 = new4


def release_leases(session: Session, v4pool: Ipv4Pool | None, v6pool: Ipv6Pool | None) -> None:
    """Return the session's leases to their pools (on invalidation or expiry) and forget them."""
    if session.ipv4 is not None:
        if v4pool is not None:
            v4pool.release(session.ipv4)
        session.ipv4 = None
    if session.ipv6 is not None:
        if v6pool is not None:
            v6pool.release(session.ipv6)
        session.ipv6 = None
