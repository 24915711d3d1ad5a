"""The bans of the authentication service (:class:`~ocgate.daemon._auth.AuthService`).

:class:`AddressBans` owns sec-mod's :class:`~ocgate.bans.BanTable` (ban points per client
address, ``max-ban-score``, ``ban-time``) and everyone who hears of it:

* the supervisor, whose accept gate refuses banned sources: it is told of every ban change
  (``publish``), and of every ban in force when it asks (it forgets its copy when it restarts);
* the other nodes of a shared store: points and unbans given here count there too;
* the durable store: the table is saved when a ban starts, at each maintenance round and at the
  end, and read back at start, so a restart does not lift a ban.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ocgate.bans import BanPolicy, BanTable
from ocgate.config import Config
from ocgate.control import BanInfo
from ocgate.ipc import messages as m
from ocgate.session import SessionStore

if TYPE_CHECKING:
    from ocgate.daemon._cluster import Cluster

__all__ = ["AddressBans"]

log = logging.getLogger("ocgate.secmod")


class AddressBans:
    """Ban points, bans and their publication.

    :param store: the session store, which may keep the table (``save_bans``/``load_bans``).
    :param cluster: with a shared store, this node among the others.
    :param publish: tells the supervisor of bans: the entries, and whether they are all of them.
    :param on_ban: called when an address becomes banned (the metrics count it).
    """

    def __init__(
        self,
        store: SessionStore,
        cluster: Cluster | None,
        *,
        publish: Callable[[list[m.BanState], bool], None],
        on_ban: Callable[[], None],
    ) -> None:
        self.table = BanTable(BanPolicy())
        self._store = store
        self._cluster = cluster
        self._publish = publish
        self._on_ban = on_ban

    def load(self, config: Config) -> None:
        """Take the ban policy of ``config`` (start and reload)."""
        self.table.policy = BanPolicy(
            max_score=config.max_ban_score,
            reset_time=config.ban_reset_time,
            ban_time=config.ban_time,
            points_wrong_password=config.ban_points_wrong_password,
            points_connection=config.ban_points_connection,
            points_kkdcp=config.ban_points_kkdcp,
        )

    def restore(self) -> None:
        """Read back the table the store kept (at start)."""
        load_bans = getattr(self._store, "load_bans", None)
        if callable(load_bans):
            self.table.restore(load_bans(), time.monotonic(), time.time())

    def save(self) -> None:
        """Write the table to the store (a failed write is tried again at the next save)."""
        save = getattr(self._store, "save_bans", None)
        if callable(save):
            with contextlib.suppress(OSError):
                save(self.table.snapshot(time.monotonic(), time.time()))

    def expire(self) -> None:
        """Forget the bans and scores that are over, and save the table."""
        self.table.expire(time.monotonic())
        self.save()

    def is_banned(self, address: str) -> bool:
        return self.table.is_banned(address, time.monotonic())

    def connection_points(self, addresses: list[str]) -> None:
        """Connections the supervisor accepted from ``addresses`` (``ban-points-connection``)."""
        points = self.table.policy.points_connection
        for address in addresses:
            self.add_points(address, points, "connection")

    def wrong_password(self, address: str) -> None:
        self.add_points(address, self.table.policy.points_wrong_password, "wrong-password")

    def unban(self, address: str, *, share: bool = True) -> bool:
        """Lift the ban of ``address`` (``share``: on every node of a shared store too)."""
        found = self.table.unban(address)
        if found:
            log.info("event=address-unbanned remote=%s", address)
            self._publish([m.BanState(address=address[:64], seconds=0.0)], False)
        if share and self._cluster is not None:
            self._cluster.unbanned(address)
        return found

    def publish_all(self) -> None:
        """Tell the supervisor every ban in force (at start: it forgets its copy)."""
        now = time.monotonic()
        self._publish(
            [
                m.BanState(address=e.address, seconds=e.banned_until - now)
                for e in self.table.entries(now)
                if e.banned_until is not None
            ],
            True,
        )

    def add_points(self, address: str, points: int, why: str, *, share: bool = True) -> None:
        """Ban points for ``address`` (``share``: they count on every node of a shared store)."""
        if share and self._cluster is not None:
            self._cluster.points(address, points, why)
        now = time.monotonic()
        was_banned = self.table.is_banned(address, now)
        if self.table.add_points(address, points, now) and not was_banned:
            self._on_ban()
            ban = self.table.policy.ban_time
            self._publish([m.BanState(address=address[:64], seconds=float(ban))], False)
            if self._cluster is not None:  # A node that starts (or returns) later learns it too.
                self._cluster.banned(address, self.table.policy.ban_time)
            log.warning(
                "event=address-banned remote=%s reason=%s ban_time=%d",
                address,
                why,
                self.table.policy.ban_time,
            )
            self.save()

    def entries(self) -> list[BanInfo]:
        """The table as the supervisor reports it (occtl ``show ip bans``), expiry in wall time."""
        now, wall = time.monotonic(), time.time()
        return [
            BanInfo(
                ip=entry.address,
                score=entry.score,
                expires=None if entry.banned_until is None else wall + entry.banned_until - now,
            )
            for entry in self.table.entries(now)
        ]

    def banned_count(self) -> int:
        """Addresses banned now (the metrics' gauge)."""
        now = time.monotonic()
        return sum(1 for e in self.table.entries(now) if e.banned_until is not None)
