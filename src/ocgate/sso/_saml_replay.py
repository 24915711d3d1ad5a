"""A bounded cache of the SAML assertion IDs already used, so no assertion logs in twice.

Theory of operation: SAML bearer assertions (Web Browser SSO profile, saml-profiles 4.1.4.5) must
be used once: "the service provider MUST ensure that bearer assertions are not replayed, by
maintaining the set of used ID values for the length of time for which the assertion would be
considered valid based on the NotOnOrAfter attribute". sec-mod's provider keeps one
:class:`AssertionIdCache`: :meth:`~AssertionIdCache.claim` records an ID until its expiry and
raises :class:`~ocgate.errors.SsoError` for an ID seen before. The cache is bounded: expired
entries are dropped first; when it is full of live entries it refuses new logins (fails closed)
rather than forgetting an ID that could then be replayed. Only signature-checked assertions
reach it, so only the IdP can fill it. Each login's pending AuthnRequest ID is single-use as
well (the framework forgets the login), which already stops most replays; this cache also
covers an assertion copied out of a browser and posted for another login of the same user.
"""

from __future__ import annotations

import heapq

from ocgate.errors import SsoError

__all__ = ["AssertionIdCache"]


class AssertionIdCache:
    """The used assertion IDs with their expiry (wall-clock seconds).

    :param max_entries: the bound; a full cache of unexpired IDs refuses new ones.
    :param max_lifetime: the longest an ID is kept, whatever its assertion says.
    """

    __slots__ = ("_expiry", "_heap", "max_entries", "max_lifetime")

    def __init__(self, *, max_entries: int = 100_000, max_lifetime: float = 86_400.0) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.max_lifetime = max_lifetime
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def __repr__(self) -> str:
        return f"AssertionIdCache(entries={len(self._expiry)}, max_entries={self.max_entries})"

    def _expire(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            expires, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires:
                del self._expiry[key]

    def claim(self, assertion_id: str, *, expires: float, now: float) -> None:
        """Record ``assertion_id`` as used until ``expires``.

        :raises SsoError: the ID was used before, or the cache is full of unexpired IDs.
        """
        self._expire(now)
        if assertion_id in self._expiry:
            raise SsoError("this SAML assertion was already used (replayed login refused)")
        if len(self._expiry) >= self.max_entries:
            raise SsoError("too many SAML logins in progress; try again in a few minutes")
        until = min(max(expires, now), now + self.max_lifetime)
        self._expiry[assertion_id] = until
        heapq.heappush(self._heap, (until, assertion_id))
