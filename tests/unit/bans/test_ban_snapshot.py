"""BanTable.snapshot / restore: carrying scores and bans across a restart (wall-clock times)."""

from __future__ import annotations

from ocgate.bans import BanPolicy, BanTable, SavedBan

POLICY = BanPolicy(max_score=50, reset_time=100, ban_time=30)
WALL = 1_700_000_000.0
IP = "198.18.0.2"


def saved(address: str, score: int, last_reset: float, banned_until: float | None) -> SavedBan:
    return SavedBan(address=address, score=score, last_reset=last_reset, banned_until=banned_until)


def test_snapshot_moves_times_to_the_wall_clock_bans_first() -> None:
    table = BanTable(POLICY)
    table.add_points("198.18.0.9", 40, now=5.0)
    table.add_points(IP, 60, now=10.0)
    table.add_points("::ffff:198.18.0.3", 40, now=12.0)
    table.add_points("198.18.0.4", 10, now=-200.0)  # Its score has run out by now.
    assert table.snapshot(now_mono=20.0, now_wall=WALL) == [
        saved(IP, 60, WALL - 10, WALL + 20),
        saved("198.18.0.3", 40, WALL - 8, None),
        saved("198.18.0.9", 40, WALL - 15, None),
    ]


def test_restore_continues_where_the_snapshot_left_off() -> None:
    table = BanTable(POLICY)
    table.add_points(IP, 60, now=10.0)
    table.add_points("2001:db8::1", 20, now=15.0)
    entries = table.snapshot(now_mono=20.0, now_wall=WALL)

    restored = BanTable(POLICY)
    restored.restore(entries, now_mono=5000.0, now_wall=WALL + 5)
    assert restored.is_banned(IP, 5014.9)
    assert not restored.is_banned(IP, 5015.0)
    assert restored.add_points("2001:db8::1", 30, now=5080.0)  # 20 + 30 reaches the limit.


def test_restore_skips_what_is_over_exempt_or_malformed() -> None:
    table = BanTable(POLICY)
    table.restore(
        [
            saved(IP, 60, WALL - 100, WALL - 1),  # The ban ended before the restart.
            saved("198.18.0.3", 20, WALL - 100, None),  # The score's window is over.
            saved("127.0.0.1", 90, WALL, WALL + 10),
            saved("not-an-ip", 90, WALL, WALL + 10),
            saved("198.18.0.4", -5, WALL, None),
            saved("198.18.0.5", 5, WALL, None),
        ],
        now_mono=0.0,
        now_wall=WALL,
    )
    assert [(e.address, e.score) for e in table.entries(0.0)] == [("198.18.0.5", 5)]


def test_restore_keeps_live_records() -> None:
    table = BanTable(POLICY)
    table.add_points(IP, 10, now=0.0)
    table.restore([saved(IP, 45, WALL, None)], now_mono=0.0, now_wall=WALL)
    assert [(e.address, e.score) for e in table.entries(0.0)] == [(IP, 10)]


def test_restore_clamps_a_wall_clock_that_stepped_back() -> None:
    # Saved at wall time WALL + 3600; the clock now reads WALL.
    table = BanTable(POLICY)
    table.restore(
        [saved(IP, 60, WALL + 3600, WALL + 3630), saved("198.18.0.3", 10, WALL + 3600, None)],
        now_mono=0.0,
        now_wall=WALL,
    )
    (ban, score) = table.entries(0.0)
    assert ban.banned_until == POLICY.ban_time
    assert not table.is_banned(IP, POLICY.ban_time)
    assert score.score == 10
    assert table.entries(POLICY.reset_time) == []


def test_restore_does_nothing_with_banning_disabled() -> None:
    table = BanTable(BanPolicy(max_score=0))
    table.restore([saved(IP, 60, WALL, WALL + 10)], now_mono=0.0, now_wall=WALL)
    assert len(table) == 0


def test_an_ipv6_ban_covers_the_whole_64() -> None:
    # ocserv's rule: one IPv6 client holds a /64; moving within it does not escape a ban.
    table = BanTable(POLICY)
    assert table.add_points("2001:db8:1:2::1", 100, now=1.0)
    assert table.is_banned("2001:db8:1:2:ffff::9", 2.0)
    assert not table.is_banned("2001:db8:1:3::1", 2.0)
    assert [e.address for e in table.entries(2.0)] == ["2001:db8:1:2::/64"]
    assert table.unban("2001:db8:1:2::7")
    assert not table.is_banned("2001:db8:1:2::1", 3.0)
