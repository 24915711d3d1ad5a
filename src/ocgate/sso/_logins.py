"""The single sign-on logins in flight and their single-use tokens (sans-IO, time passed in).

Theory of operation. A login begins when the gateway shows a client the sso-v2 form
(:meth:`SsoLogins.begin`): it gets a fresh ``login_id`` (128 random bits), remembered with the
browser mode chosen for the client and, for the external mode, the client's STRAP DH key. The
browser then visits the start URL (:meth:`SsoLogins.started` keeps the provider's ``pending``
state) and comes back from the identity provider with ``login_id`` as ``state`` / ``RelayState``
(:meth:`SsoLogins.returned` hands out ``pending`` once: a second return for the same login is
refused, so a replayed authorization response or assertion post does nothing). The verdict
becomes a token (:meth:`SsoLogins.issue` or :meth:`SsoLogins.issue_refusal`) that the client
posts in its ``auth-reply``; :meth:`SsoLogins.redeem` accepts it only

* for the login that requested it (a token of another login is refused, whoever presents it),
* once (a replay is refused),
* within :attr:`SsoLogins.token_lifetime` seconds of the provider's verdict.

State is bounded: at most ``max_logins`` logins are kept, and everything older than
``login_lifetime`` is purged on each :meth:`begin`; when the table is full a new login is refused
(no login in flight is ever dropped for a newcomer, so a flood of sign-in forms cannot break
another user's sign-in). A login's start is taken once: a second visit of the start URL (someone
who learnt the ``login_id``) cannot replace the pending PKCE verifier, nonce or request ID.
"""

from __future__ import annotations

import enum
import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ocgate.errors import SsoError
from ocgate.sso._base import SsoIdentity

__all__ = ["TOKEN_CHARS", "SsoLogins", "SsoMode", "SsoRefusal"]

TOKEN_CHARS = 40
"""A token is 20 random bytes in lowercase hex (alphanumeric, as openconnect requires)."""

_EXPIRED = "the sign-in expired or is unknown; please start again"


class SsoRefusal(SsoError):
    """The token carries the identity provider's refusal, counted toward bans already when the
    browser brought it back (``gateway/_sso.py``): redeeming it does not count it again."""


class SsoMode(enum.Enum):
    """How the token reaches the client (``<sso-v2-browser-mode>``)."""

    EXTERNAL = "external"
    """The browser's last redirect goes to the client's listener on localhost:29786."""
    EMBEDDED = "embedded"
    """The client's own browser stops at the final URL and reads the token cookie."""


@dataclass(slots=True)
class _Token:
    value: str = field(repr=False)
    expires: float
    identity: SsoIdentity | None
    refusal: str | None
    used: bool = False


@dataclass(slots=True)
class _Login:
    login_id: str = field(repr=False)
    created: float
    mode: SsoMode
    client_key: bytes | None = field(default=None, repr=False)
    pending: bytes | None = field(default=None, repr=False)
    returned: bool = False
    token: _Token | None = None


class SsoLogins:
    """The logins of one host's SSO method.

    :param random_bytes: the randomness source (``os.urandom``; tests inject their own).
    :param login_lifetime: seconds a login may take from form to token (the gateway's
        ``auth-timeout``).
    :param token_lifetime: seconds a token stays redeemable.
    :param max_logins: logins kept at once.
    """

    def __init__(
        self,
        *,
        random_bytes: Callable[[int], bytes],
        login_lifetime: float = 300.0,
        token_lifetime: float = 120.0,
        max_logins: int = 4096,
    ) -> None:
        self._random = random_bytes
        self.login_lifetime = login_lifetime
        self.token_lifetime = token_lifetime
        self.max_logins = max_logins
        self._logins: OrderedDict[str, _Login] = OrderedDict()
        self._by_token: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._logins)

    def _purge(self, now: float) -> None:
        while self._logins:
            login_id, login = next(iter(self._logins.items()))
            if now - login.created < self.login_lifetime:
                break
            self._drop(login_id)

    def _drop(self, login_id: str) -> None:
        login = self._logins.pop(login_id, None)
        if login is not None and login.token is not None:
            self._by_token.pop(login.token.value, None)

    def begin(self, *, mode: SsoMode, client_key: bytes | None, now: float) -> str:
        """A new login; returns its ``login_id``.

        :raises SsoError: ``max_logins`` logins are in flight.
        """
        self._purge(now)
        if len(self._logins) >= self.max_logins:
            raise SsoError("too many sign-ins are in progress; please try again shortly")
        login_id = self._random(16).hex()
        self._logins[login_id] = _Login(
            login_id=login_id, created=now, mode=mode, client_key=client_key
        )
        return login_id

    def mode(self, login_id: str, now: float) -> tuple[SsoMode, bytes | None]:
        """The browser mode and the client's STRAP DH key of a live login.

        :raises SsoError: no such login, or it expired.
        """
        login = self._live(login_id, now)
        return login.mode, login.client_key

    def _live(self, login_id: str, now: float) -> _Login:
        login = self._logins.get(login_id)
        if login is None or now - login.created >= self.login_lifetime:
            raise SsoError(_EXPIRED)
        return login

    def started(self, login_id: str, pending: bytes, now: float) -> None:
        """The browser went to the identity provider; keep the provider's state.

        :raises SsoError: unknown or expired login, or one that already has its verdict.
        """
        login = self._live(login_id, now)
        if login.returned:
            raise SsoError("this sign-in is already complete; please start again")
        if login.pending is not None:
            raise SsoError("this sign-in was already started; please start again")
        login.pending = pending

    def returned(self, login_id: str, now: float) -> bytes:
        """The browser came back from the provider: the ``pending`` state, handed out once.

        :raises SsoError: unknown or expired login, never started, or already returned (replay).
        """
        login = self._live(login_id, now)
        if login.returned:
            raise SsoError("this sign-in response was already used")
        if login.pending is None:
            raise SsoError("this sign-in was never started")
        login.returned = True
        pending, login.pending = login.pending, None
        return pending

    def issue(self, login_id: str, identity: SsoIdentity, now: float) -> str:
        """The provider vouched for ``identity``: a token for the client to post."""
        return self._issue(login_id, identity, None, now)

    def issue_refusal(self, login_id: str, reason: str, now: float) -> str:
        """The provider's answer was refused: a token that, posted, shows ``reason``."""
        return self._issue(login_id, None, reason, now)

    def _issue(
        self, login_id: str, identity: SsoIdentity | None, refusal: str | None, now: float
    ) -> str:
        login = self._live(login_id, now)
        if login.token is not None:
            self._by_token.pop(login.token.value, None)
        value = self._random(TOKEN_CHARS // 2).hex()
        login.token = _Token(
            value=value, expires=now + self.token_lifetime, identity=identity, refusal=refusal
        )
        login.returned = True
        self._by_token[value] = login_id
        return value

    def redeem(self, login_id: str | None, token: str, now: float) -> SsoIdentity:
        """Accept the token a client posted for its login ``login_id``.

        :raises SsoError: malformed, unknown, expired, already used, issued to another login,
            or carrying the provider's refusal.
        """
        token = token.strip()
        if len(token) != TOKEN_CHARS or not token.isascii() or not token.isalnum():
            raise SsoError("the sign-in token is malformed")
        owner = self._by_token.get(token)
        if owner is None:
            raise SsoError("the sign-in token is unknown or expired")
        if login_id is None or not hmac.compare_digest(owner, login_id):
            raise SsoError("the sign-in token was issued to another login")
        login = self._logins[owner]
        record = login.token
        if record is None or not hmac.compare_digest(record.value, token):
            raise SsoError("the sign-in token is unknown or expired")  # pragma: no cover
        if record.used:
            raise SsoError("the sign-in token was already used")
        if now >= record.expires:
            raise SsoError("the sign-in token expired; please sign in again")
        record.used = True
        if record.refusal is not None:
            raise SsoRefusal(record.refusal)
        if record.identity is None:  # pragma: no cover - issue() always sets one of the two.
            raise SsoError("the sign-in failed")
        return record.identity

    def forget(self, login_id: str) -> None:
        """Drop a login (its dialog ended)."""
        self._drop(login_id)
