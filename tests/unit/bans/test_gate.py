"""The accept gate (bans/_gate.py): bans, caps, per-source rate slots, bounded tables."""

from __future__ import annotations

import pytest

from ocgate.bans import MAX_BANS, AdmissionGate, AdmissionRefused, GatePolicy


def gate(**policy: float) -> AdmissionGate:
    return AdmissionGate(GatePolicy(**policy))  # type: ignore[arg-type]


def test_admits_and_counts_until_released() -> None:
    g = gate()
    first = g.admit("192.0.2.1", 0.0)
    second = g.admit("192.0.2.1", 0.0)
    assert (first.delay, second.delay) == (0.0, 0.0)
    assert first.token != second.token
    assert (g.pending, g.pending_from("192.0.2.1")) == (2, 2)
    g.release(first.token)
    g.release(first.token)  # Twice: ignored.
    g.release(9999)  # Unknown: ignored.
    assert (g.pending, g.pending_from("192.0.2.1")) == (1, 1)
    g.release(second.token)
    assert (g.pending, g.pending_from("192.0.2.1")) == (0, 0)


def test_per_source_cap_refuses_only_that_source() -> None:
    g = gate(max_pre_auth_per_source=3)
    for _ in range(3):
        g.admit("198.51.100.7", 0.0)
    with pytest.raises(AdmissionRefused, match="from this source"):
        g.admit("198.51.100.7", 0.0)
    g.admit("198.51.100.8", 0.0)  # Another source still gets in.


def test_an_ipv6_slash64_is_one_source() -> None:
    g = gate(max_pre_auth_per_source=2)
    g.admit("2001:db8:1:2::1", 0.0)
    g.admit("2001:db8:1:2::ffff", 0.0)
    with pytest.raises(AdmissionRefused):
        g.admit("2001:db8:1:2:abcd::9", 0.0)
    g.admit("2001:db8:1:3::1", 0.0)


def test_loopback_is_exempt_from_the_per_source_cap_only() -> None:
    g = gate(max_pre_auth_per_source=1, max_pre_auth=3)
    for _ in range(3):
        g.admit("127.0.0.1", 0.0)
    with pytest.raises(AdmissionRefused, match="before authentication"):
        g.admit("127.0.0.1", 0.0)


def test_global_cap() -> None:
    g = gate(max_pre_auth=2)
    g.admit("192.0.2.1", 0.0)
    token = g.admit("192.0.2.2", 0.0).token
    with pytest.raises(AdmissionRefused, match="too many connections before authentication"):
        g.admit("192.0.2.3", 0.0)
    g.release(token)
    g.admit("192.0.2.3", 0.0)


def test_bans_refuse_until_they_end() -> None:
    g = gate()
    g.ban("203.0.113.5", until=10.0)
    with pytest.raises(AdmissionRefused, match="banned"):
        g.admit("203.0.113.5", 9.9)
    g.admit("203.0.113.6", 9.9)
    g.admit("203.0.113.5", 10.0)  # Over: admitted, and forgotten.
    assert g.banned == 0


def test_ipv6_ban_covers_the_slash64_and_unban_lifts_it() -> None:
    g = gate()
    g.ban("2001:db8::1", until=100.0)
    with pytest.raises(AdmissionRefused):
        g.admit("2001:db8::abcd", 1.0)
    g.unban("2001:db8::/64")
    g.admit("2001:db8::abcd", 1.0)


def test_replace_bans() -> None:
    g = gate()
    g.ban("192.0.2.1", 100.0)
    g.replace_bans([("192.0.2.2", 100.0), ("not an address", 100.0)])
    g.admit("192.0.2.1", 1.0)
    with pytest.raises(AdmissionRefused):
        g.admit("192.0.2.2", 1.0)
    assert g.banned == 1


def test_ban_table_is_bounded_dropping_the_soonest_end() -> None:
    g = gate()
    for i in range(MAX_BANS):
        g.ban(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", until=1000.0 + i)
    g.ban("192.0.2.99", until=5000.0)
    assert g.banned == MAX_BANS
    g.admit("10.0.0.0", 1.0)  # The soonest-ending ban made room.
    with pytest.raises(AdmissionRefused):
        g.admit("192.0.2.99", 1.0)


def test_rate_limit_spaces_each_source_on_its_own() -> None:
    g = gate(rate_limit=0.5)
    delays = [g.admit("192.0.2.1", 10.0).delay for _ in range(3)]
    assert delays == [0.0, 0.5, 1.0]
    assert g.admit("192.0.2.2", 10.0).delay == 0.0  # Not one global slot.
    assert g.admit("192.0.2.1", 20.0).delay == 0.0  # Long after: at once.


def test_rate_slots_are_bounded() -> None:
    g = AdmissionGate(GatePolicy(rate_limit=100.0, max_pre_auth=0, max_pre_auth_per_source=0),
                      max_sources=64)  # fmt: skip
    for i in range(1000):
        g.admit(f"10.0.{i >> 8}.{i & 255}", 0.0)
    assert len(g._slots) <= 64


# Behind a balancer (listen-proxy-proto): admitted unattributed, judged by the client's address.


def test_unattributed_connections_count_only_against_the_global_cap() -> None:
    g = gate(max_pre_auth=3, max_pre_auth_per_source=1)
    g.ban("198.18.0.1", until=100.0)  # The balancer's own address: not what is judged.
    tokens = [g.admit_unattributed().token for _ in range(3)]
    assert (g.pending, g.pending_from("198.18.0.1")) == (3, 0)
    with pytest.raises(AdmissionRefused, match="too many connections before authentication"):
        g.admit_unattributed()
    g.release(tokens[0])
    g.release(tokens[0])  # Twice: ignored.
    assert g.pending == 2


def test_attribute_applies_bans_caps_and_rate_to_the_client() -> None:
    g = gate(max_pre_auth_per_source=2, rate_limit=0.5)
    g.ban("198.18.0.9", until=100.0)
    banned = g.admit_unattributed().token
    with pytest.raises(AdmissionRefused, match="address is banned"):
        g.attribute(banned, "198.18.0.9", 1.0)
    assert g.pending == 1  # Refused, still counted until the worker reports it closed.
    g.release(banned)
    first, second, third = (g.admit_unattributed().token for _ in range(3))
    assert g.attribute(first, "198.18.0.2", 1.0) == 0.0
    assert g.attribute(second, "198.18.0.2", 1.0) == 0.5  # The rate slot of the client.
    assert g.pending_from("198.18.0.2") == 2
    with pytest.raises(AdmissionRefused, match="from this source"):
        g.attribute(third, "198.18.0.2", 1.0)
    assert g.attribute(third, "198.18.0.3", 1.0) == 0.0  # Another client, same balancer.
    g.release(first)
    assert (g.pending, g.pending_from("198.18.0.2")) == (2, 1)


def test_attribute_takes_only_a_waiting_connection_once() -> None:
    g = gate()
    token = g.admit_unattributed().token
    g.attribute(token, "192.0.2.1", 0.0)
    with pytest.raises(AdmissionRefused, match="not a connection waiting"):
        g.attribute(token, "192.0.2.2", 0.0)  # A second header cannot move the count.
    with pytest.raises(AdmissionRefused, match="not a connection waiting"):
        g.attribute(g.admit("192.0.2.3", 0.0).token, "192.0.2.4", 0.0)
    with pytest.raises(AdmissionRefused, match="not a connection waiting"):
        g.attribute(9999, "192.0.2.5", 0.0)
    assert g.pending_from("192.0.2.1") == 1
