"""BanTable: points, bans, decay, exemptions (ocserv-compatibility §4.9)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ocgate.bans import BanPolicy, BanTable, is_exempt

POLICY = BanPolicy(max_score=50, reset_time=100, ban_time=30, points_wrong_password=10)
IP = "198.18.0.2"


def test_five_wrong_passwords_ban_until_ban_time_passes() -> None:
    table = BanTable(POLICY)
    for i in range(4):
        assert not table.add_points(IP, 10, now=float(i))
    assert not table.is_banned(IP, 4.0)
    assert table.add_points(IP, 10, now=5.0)
    assert table.is_banned(IP, 5.0)
    assert table.is_banned(IP, 34.9)
    assert not table.is_banned(IP, 35.0)
    # The ban ended with its score: one more point does not ban again.
    assert not table.add_points(IP, 1, now=35.0)
    assert [(e.address, e.score) for e in table.entries(35.0)] == [(IP, 1)]


def test_scores_reset_after_ban_reset_time() -> None:
    table = BanTable(POLICY)
    table.add_points(IP, 40, now=0.0)
    assert not table.add_points(IP, 10, now=100.0)  # Reset first, then 10 points.
    assert table.entries(100.0)[0].score == 10


def test_unban_and_entries() -> None:
    table = BanTable(POLICY)
    table.add_points(IP, 60, now=0.0)
    (entry,) = table.entries(1.0)
    assert entry.banned_until == 30.0
    assert table.unban(IP)
    assert not table.unban(IP)
    assert not table.is_banned(IP, 1.0)
    assert table.entries(1.0) == []


def test_loopback_and_garbage_are_exempt() -> None:
    table = BanTable(POLICY)
    for address in ("127.0.0.1", "::1", "not-an-ip"):
        assert not table.add_points(address, 1000, now=0.0)
        assert not table.is_banned(address, 0.0)
    assert is_exempt("127.0.0.5")
    assert not is_exempt(IP)


def test_ipv4_mapped_addresses_share_a_score() -> None:
    table = BanTable(POLICY)
    table.add_points("::ffff:198.18.0.2", 60, now=0.0)
    assert table.is_banned(IP, 1.0)


def test_zero_max_score_disables() -> None:
    table = BanTable(BanPolicy(max_score=0))
    assert not table.add_points(IP, 10_000, now=0.0)
    assert not table.is_banned(IP, 0.0)
    assert len(table) == 0


def test_expire_drops_idle_entries() -> None:
    table = BanTable(POLICY)
    table.add_points(IP, 5, now=0.0)
    table.expire(50.0)
    assert len(table) == 1
    table.expire(100.0)
    assert len(table) == 0


@given(st.lists(st.tuples(st.integers(0, 30), st.floats(0, 10))))
def test_never_banned_below_the_threshold_within_a_window(events: list[tuple[int, float]]) -> None:
    table = BanTable(POLICY)
    now, total = 0.0, 0
    for points, step in events:
        now += step
        if now >= 100:
            break
        total += points
        banned = table.add_points(IP, points, now)
        assert banned == (total >= 50)
        if banned:
            assert table.is_banned(IP, now)
            break


def test_table_is_bounded_dropping_low_scores_before_bans() -> None:
    from ocgate.bans import BanPolicy, BanTable

    table = BanTable(BanPolicy(max_score=20, points_connection=1), max_entries=64)
    table.add_points("192.0.2.1", 20, 0.0)  # Banned.
    for i in range(1000):  # A scan from many sources, one point each.
        table.add_points(f"10.0.{i >> 8}.{i & 255}", 1, 0.0)
    assert len(table) <= 64
    assert table.is_banned("192.0.2.1", 1.0)
    assert table.is_banned("10.0.3.231", 1.0) is False
    assert any(e.address == "10.0.3.231" for e in table.entries(1.0))  # The newest is kept.


def test_a_table_of_bans_only_drops_the_one_ending_soonest() -> None:
    from ocgate.bans import BanPolicy, BanTable

    table = BanTable(BanPolicy(max_score=1, ban_time=100), max_entries=4)
    for i in range(5):
        table.add_points(f"192.0.2.{i}", 1, float(i))
    assert len(table) == 4
    assert not table.is_banned("192.0.2.0", 5.0)
    assert all(table.is_banned(f"192.0.2.{i}", 5.0) for i in range(1, 5))
