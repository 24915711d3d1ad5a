"""Fixed snapshots shared by the control tests (times in UTC, ``NOW`` = 2023-11-14 22:13:20)."""

from __future__ import annotations

from datetime import UTC

import pytest

from ocgate.control import BanInfo, SessionInfo, StatusInfo, UserInfo

NOW = 1_700_000_000.0
TZ = UTC


def make_user() -> UserInfo:
    return UserInfo(
        id=7,
        username="alice",
        groupname="staff",
        device="vpns0",
        mtu=1400,
        remote_ip="198.51.100.7",
        local_device_ip="203.0.113.1",
        ipv4="10.10.0.2",
        ptp_ipv4="10.10.0.1",
        ipv6="fd00::2",
        ptp_ipv6="fd00::1",
        user_agent="Open AnyConnect VPN Agent v9.01",
        rx=12345,
        tx=2_500_000,
        limit_rx=16000,
        limit_tx=2_000_000,
        dpd=90,
        keepalive=32400,
        hostname="laptop",
        connected_at=NOW - 125,
        session_started_at=NOW - 7200,
        session_id="AbCdEfGhIjKlMnOpQrStUvWxYz0=",
        tls_ciphersuite="(TLS1.3)-(ECDHE-SECP256R1)-(RSA-PSS-RSAE-SHA256)-(AES-256-GCM)",
        dtls_cipher="(DTLS1.2)-(RSA)-(AES-256-GCM)",
        cstp_compression="lzs",
        dtls_compression="oc-lz4",
        dns=("10.10.0.1", "fd00::1"),
        nbns=("10.10.0.3",),
        split_dns=("corp.example",),
        routes=("10.0.0.0/255.0.0.0", "fd00::/48"),
        no_routes=("10.9.0.0/255.255.0.0",),
        iroutes=("192.168.5.0/255.255.255.0",),
        restrict_to_routes=True,
        restrict_to_ports=("tcp(443)", "!udp()"),
    )


def make_minimal_user() -> UserInfo:
    return UserInfo(
        id=8,
        username="bob",
        state="authenticating",
        remote_ip="192.0.2.9",
        connected_at=NOW - 30,
        session_id="ZyXwVuTsRqPo",
    )


def make_status() -> StatusInfo:
    return StatusInfo(
        server_pid=4242,
        sec_mod_pid=4242,
        up_since=NOW - 22 * 86400 - 3600,
        active_sessions=50,
        total_sessions=15760,
        total_auth_failures=1308,
        ips_in_ban_list=2,
        sec_mod_client_entries=3,
        tls_db_entries=4,
        last_stats_reset=NOW - 41 * 3600 - 6 * 60,
        sessions_handled=2570,
        timed_out=1,
        timed_out_idle=17,
        closed_due_to_error=2196,
        auth_failures=131,
        avg_auth_time=0,
        max_auth_time=39,
        avg_session_time=120,
        max_session_time=7 * 86400,
        min_mtu=576,
        max_mtu=1354,
        rx=20_400_000_000,
        tx=31_000_000_000,
    )


def make_sessions() -> tuple[SessionInfo, ...]:
    return (
        SessionInfo(
            session_id="AbCdEfGhIjKlMnOpQrStUvWxYz0=",
            created=NOW - 7200,
            expires=NOW + 3600,
            state="authenticated",
            username="alice",
            groupname="staff",
            user_agent="Open AnyConnect VPN Agent v9.01 (Linux x86_64)",
            remote_ip="198.51.100.7",
            in_use=True,
            activated=True,
        ),
        SessionInfo(
            session_id="QwErTyUiOp",
            created=NOW - 61,
            state="pre-auth",
            remote_ip="192.0.2.9",
        ),
    )


def make_bans() -> tuple[BanInfo, ...]:
    return (
        BanInfo(ip="192.0.2.66", score=80, expires=NOW + 300, since=NOW - 20),
        BanInfo(ip="2001:db8::66", score=10),
        BanInfo(ip="192.0.2.67", score=90, expires=NOW - 5),
    )


@pytest.fixture
def user() -> UserInfo:
    return make_user()


@pytest.fixture
def minimal_user() -> UserInfo:
    return make_minimal_user()


@pytest.fixture
def status() -> StatusInfo:
    return make_status()


@pytest.fixture
def sessions() -> tuple[SessionInfo, ...]:
    return make_sessions()


@pytest.fixture
def bans() -> tuple[BanInfo, ...]:
    return make_bans()
