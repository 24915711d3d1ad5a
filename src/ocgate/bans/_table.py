"""Per-address ban scores, as ocserv ``src/main-ban.c`` keeps them (ocserv-compatibility §4.9).

Theory of operation (sans-IO: the caller passes ``now``, a monotonic time in seconds):

* Every source address has a score. Events add points: a connection (``ban-points-connection``),
  a wrong password or code (``ban-points-wrong-password``), a KDC-proxy request
  (``ban-points-kkdcp``).
* The score starts again from zero when ``ban-reset-time`` has passed since the entry's last
  reset, so slow, occasional failures never add up to a ban.
* When the score reaches ``max-ban-score`` the address is banned for ``ban-time`` seconds. When
  the ban ends, the score is cleared as well (otherwise the next connection point would ban the
  address again at once).
* ``max-ban-score = 0`` disables banning (points are not even recorded).
* Loopback addresses (``127.0.0.0/8``, ``::1``) are never banned. ocserv also exempts addresses
  it considers local (``if_address_test_local``); ocgate exempts only loopback, so a neighbour on
  the gateway's own LAN cannot guess passwords without limit.
* Entries that carry no ban and no live score are dropped by :meth:`BanTable.expire`, so the
  table stays small under a scan. It never holds more than ``max_entries`` (default
  :data:`MAX_ENTRIES`): when a new source would pass that, expired entries go first, then the
  lowest scores that carry no ban (an eighth of the table at a time, so a scan from many sources
  costs one sort per eighth), and only when every entry is a ban the one that ends soonest.
* :meth:`BanTable.snapshot` and :meth:`BanTable.restore` carry the table across a restart. The
  table runs on a monotonic clock, which means nothing in another process, so a snapshot holds
  wall-clock times (:class:`SavedBan`) and ``restore`` moves them back onto the new monotonic clock.
  A wall clock stepped back in between cannot make a ban outlast ``ban-time`` from the restore.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_ENTRIES", "BanEntry", "BanPolicy", "BanTable", "SavedBan", "is_exempt"]

MAX_ENTRIES = 65536
"""The default bound of a :class:`BanTable` (a few MB at most)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BanPolicy:
    """The ban keys of ocserv.conf (defaults are ocserv's)."""

    max_score: int = 80
    reset_time: int = 1200
    ban_time: int = 300
    points_wrong_password: int = 10
    points_connection: int = 1
    points_kkdcp: int = 1

    @property
    def enabled(self) -> bool:
        return self.max_score > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BanEntry:
    """One address as ``show ip bans`` reports it.

    :param address: the source address (normalised text form).
    :param score: the current score.
    :param banned_until: when the ban ends (caller's clock), or ``None`` when not banned.
    """

    address: str
    score: int
    banned_until: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedBan:
    """One address's score and ban with wall-clock times, to keep across a restart.

    :param address: the source address (normalised text form).
    :param score: the score.
    :param last_reset: when the score last started from zero (wall-clock seconds).
    :param banned_until: when the ban ends (wall-clock seconds), or ``None`` when not banned.
    """

    address: str
    score: int
    last_reset: float
    banned_until: float | None


@dataclass(slots=True)
class _Record:
    score: int
    last_reset: float
    banned_until: float | None = None


def _normalise(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        try:  # A key of our own: an IPv6 /64 (saved bans, "unban ip 2001:db8::/64").
            net = ipaddress.ip_network(address, strict=False)
        except ValueError:
            return None
        if isinstance(net, ipaddress.IPv6Network) and net.prefixlen == 64:
            return str(net)
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if not ip.is_loopback:
            # One IPv6 client holds a whole /64 (ocserv's rule): a ban covers the prefix, or a
            # banned client would simply move to the next address of its own network.
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def ban_key(address: str) -> str | None:
    """What a ban on ``address`` is kept under: the address, or its /64 for IPv6."""
    return _normalise(address)


def is_exempt(address: str) -> bool:
    """Whether ``address`` is never banned (loopback, or not an IP address at all)."""
    normal = _normalise(address)
    return normal is None or ipaddress.ip_network(normal).network_address.is_loopback


class BanTable:
    """Scores and bans by source address.

    :param policy: the ban settings.
    """

    def __init__(self, policy: BanPolicy, *, max_entries: int = MAX_ENTRIES) -> None:
        self.policy = policy
        self.max_entries = max_entries
        self._records: dict[str, _Record] = {}

    def __len__(self) -> int:
        return len(self._records)

    def _current(self, key: str, now: float) -> _Record | None:
        record = self._records.get(key)
        if record is None:
            return None
        if record.banned_until is not None and now >= record.banned_until:
            record.banned_until = None
            record.score = 0
            record.last_reset = now
        if now >= record.last_reset + self.policy.reset_time:
            record.score = 0
            record.last_reset = now
        return record

    def add_points(self, address: str, points: int, now: float) -> bool:
        """Add ``points`` to ``address``; returns whether the address is banned afterwards."""
        policy = self.policy
        key = _normalise(address)
        if key is None or not policy.enabled or points <= 0 or is_exempt(key):
            return False
        record = self._current(key, now)
        if record is None:
            if len(self._records) >= self.max_entries:
                self._make_room(now)
            record = self._records[key] = _Record(score=0, last_reset=now)
        record.score += points
        if record.banned_until is None and record.score >= policy.max_score:
            record.banned_until = now + policy.ban_time
        return record.banned_until is not None

    def is_banned(self, address: str, now: float) -> bool:
        """Whether connections and logins from ``address`` are refused at ``now``."""
        key = _normalise(address)
        if key is None or not self.policy.enabled:
            return False
        record = self._current(key, now)
        return record is not None and record.banned_until is not None

    def unban(self, address: str) -> bool:
        """Forget ``address`` (score and ban); returns whether it was banned or scored."""
        key = _normalise(address)
        return key is not None and self._records.pop(key, None) is not None

    def entries(self, now: float) -> list[BanEntry]:
        """Every address with a score or a ban, highest score first."""
        self.expire(now)
        found = [
            BanEntry(address=key, score=r.score, banned_until=r.banned_until)
            for key, r in self._records.items()
        ]
        return sorted(found, key=lambda e: (-e.score, e.address))

    def _make_room(self, now: float) -> None:
        self.expire(now)
        excess = len(self._records) - self.max_entries + 1
        if excess <= 0:
            return
        scored = sorted(
            (r.score, r.last_reset, key)
            for key, r in self._records.items()
            if r.banned_until is None
        )
        for _score, _reset, key in scored[: max(excess, self.max_entries // 8)]:
            del self._records[key]
        if len(self._records) >= self.max_entries:  # Every entry is a ban.
            soonest = min(self._records, key=lambda k: self._records[k].banned_until or 0.0)
            del self._records[soonest]

    def expire(self, now: float) -> None:
        """Drop entries that have neither a ban nor a score any more."""
        for key in list(self._records):
            record = self._current(key, now)
            if record is not None and record.banned_until is None and record.score == 0:
                del self._records[key]

    def snapshot(self, now_mono: float, now_wall: float) -> list[SavedBan]:
        """Every live entry with its times moved to the wall clock; bans first, then by score.

        :param now_mono: now on the table's (monotonic) clock.
        :param now_wall: now on the wall clock (``time.time()``).
        """
        self.expire(now_mono)
        shift = now_wall - now_mono
        saved = [
            SavedBan(
                address=key,
                score=r.score,
                last_reset=r.last_reset + shift,
                banned_until=None if r.banned_until is None else r.banned_until + shift,
            )
            for key, r in self._records.items()
        ]
        return sorted(saved, key=lambda e: (e.banned_until is None, -e.score, e.address))

    def restore(self, entries: Iterable[SavedBan], now_mono: float, now_wall: float) -> None:
        """Load a :meth:`snapshot` (taken by this process or an earlier one).

        Entries whose ban and score have run out by now are dropped; an address that is already
        in the table keeps its current record; exempt and malformed addresses are skipped. Times
        ahead of now (a wall clock stepped back) are clamped: the score's window starts now at the
        latest and a ban ends ``ban-time`` from now at the latest. Nothing is restored while
        banning is disabled.

        :param now_mono: now on the table's (monotonic) clock.
        :param now_wall: now on the wall clock (``time.time()``).
        """
        if not self.policy.enabled:
            return
        shift = now_mono - now_wall
        latest_ban = now_mono + self.policy.ban_time
        for entry in entries:
            if len(self._records) >= self.max_entries:
                break
            key = _normalise(entry.address)
            if key is None or is_exempt(key) or key in self._records or entry.score < 0:
                continue
            until = entry.banned_until
            self._records[key] = _Record(
                score=entry.score,
                last_reset=min(entry.last_reset + shift, now_mono),
                banned_until=None if until is None else min(until + shift, latest_ban),
            )
        self.expire(now_mono)
