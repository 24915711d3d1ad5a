"""ocgate's RADIUS client against a real FreeRADIUS 3 (no VPN involved).

Needs the ``freeradius`` binary (Debian package ``freeradius``); skipped without it. The users
are defined in ``_freeradius.USERS``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocgate.errors import AuthFailed
from ocgate.radius import (
    AccountingSession,
    RadiusAccounting,
    RadiusAuthenticator,
    RadiusChallenge,
    RadiusConfig,
    RadiusResult,
    SessionStats,
    TerminateCause,
    load_radius_config,
)

from ._freeradius import FreeRadius, free_udp_port
from ._freeradius import freeradius_server as freeradius_server  # The fixture.

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


def _config(
    server: FreeRadius, tmp_path: Path, *, groupconfig: bool = True, **kwargs: object
) -> RadiusConfig:
    path = server.write_radcli_config(tmp_path / "radiusclient.conf", **kwargs)  # type: ignore[arg-type]
    params = {"config": str(path), "groupconfig": "true" if groupconfig else "false"}
    return load_radius_config(params)


def _login(config: RadiusConfig, user: str, password: str) -> RadiusResult | RadiusChallenge:
    auth = RadiusAuthenticator(config)
    return asyncio.run(
        auth.authenticate(
            user,
            password,
            client_ip="192.0.2.7",
            user_agent="Open AnyConnect VPN Agent v9.01",
            session_id="sess-1",
            server_ip="127.0.0.1",
        )
    )


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A bound UDP port on 127.0.0.1 that never answers (a server that is down but routed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_password_accept_with_class_group(freeradius_server: FreeRadius, tmp_path: Path) -> None:
    result = _login(_config(freeradius_server, tmp_path), "alice", "alicepass")
    assert isinstance(result, RadiusResult)
    assert result.username == "alice"
    assert result.groups == ("eng",)
    assert result.classes == (b"OU=eng",)


def test_groups_need_groupconfig(freeradius_server: FreeRadius, tmp_path: Path) -> None:
    config = _config(freeradius_server, tmp_path, groupconfig=False)
    result = _login(config, "alice", "alicepass")
    assert isinstance(result, RadiusResult)
    assert result.groups == ()


def test_one_class_per_group(freeradius_server: FreeRadius, tmp_path: Path) -> None:
    result = _login(_config(freeradius_server, tmp_path), "dave", "davepass")
    assert isinstance(result, RadiusResult)
    assert result.groups == ("red", "blue")


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("nobody", "x")])
def test_password_reject(
    freeradius_server: FreeRadius, tmp_path: Path, user: str, password: str
) -> None:
    with pytest.raises(AuthFailed, match="rejected"):
        _login(_config(freeradius_server, tmp_path), user, password)


def test_challenge_round_trip(freeradius_server: FreeRadius, tmp_path: Path) -> None:
    auth = RadiusAuthenticator(_config(freeradius_server, tmp_path))

    async def flow(code: str) -> RadiusResult | RadiusChallenge:
        first = await auth.authenticate("bob", "bobpass", client_ip="192.0.2.8")
        assert isinstance(first, RadiusChallenge)
        assert first.message == "Enter the code"
        assert first.round == 1
        assert first.state
        return await auth.authenticate("bob", code, client_ip="192.0.2.8", challenge=first)

    result = asyncio.run(flow("123456"))
    assert isinstance(result, RadiusResult)
    assert result.groups == ("twofactor",)
    with pytest.raises(AuthFailed, match="rejected"):
        asyncio.run(flow("000000"))


def test_framed_attributes(freeradius_server: FreeRadius, tmp_path: Path) -> None:
    result = _login(_config(freeradius_server, tmp_path), "carol", "carolpass")
    assert isinstance(result, RadiusResult)
    assert result.framed_ipv4 == ipaddress.IPv4Address("10.9.0.5")
    assert result.framed_netmask == ipaddress.IPv4Address("255.255.255.0")
    assert result.routes == (
        ipaddress.IPv4Network("192.168.50.0/24"),
        ipaddress.IPv4Network("10.20.0.0/16"),
    )
    assert result.ipv6_routes == (ipaddress.IPv6Network("2001:db8:1::/48"),)
    assert result.dns == (ipaddress.IPv4Address("10.9.0.1"), ipaddress.IPv4Address("10.9.0.2"))
    assert (result.session_timeout, result.idle_timeout, result.interim_interval) == (3600, 600, 60)
    assert (result.upstream_kbps, result.downstream_kbps) == (1000, 2000)
    assert result.groups == ("ops", "admins")


def test_accounting_start_interim_stop(freeradius_server: FreeRadius, tmp_path: Path) -> None:
    acct = RadiusAccounting(_config(freeradius_server, tmp_path))
    session = AccountingSession(
        username="alice",
        session_id="ocg-acct-1",
        client_ip="192.0.2.9",
        user_agent="AnyConnect Linux_64 4.10",
        framed_ipv4=ipaddress.IPv4Address("10.77.0.10"),
        server_ip="127.0.0.1",
        classes=(b"OU=eng",),
    )
    interim = SessionStats(bytes_in=1000, bytes_out=2000, packets_in=10, packets_out=20)
    final = SessionStats(
        bytes_in=5 * 2**32 + 7,
        bytes_out=3 * 2**32 + 11,
        packets_in=100,
        packets_out=200,
        session_time=125,
    )

    async def run() -> list[bool]:
        return [
            await acct.start(session),
            await acct.interim(session, interim),
            await acct.stop(session, final, TerminateCause.USER_REQUEST),
        ]

    assert asyncio.run(run()) == [True, True, True]
    records = freeradius_server.detail_records()
    assert [r["Acct-Status-Type"] for r in records] == ["Start", "Interim-Update", "Stop"]
    start, mid, stop = records
    for record in records:
        assert record["User-Name"] == "alice"
        assert record["Acct-Session-Id"] == "ocg-acct-1"
        assert record["Calling-Station-Id"] == "192.0.2.9"
        assert record["Framed-IP-Address"] == "10.77.0.10"
        assert record["Service-Type"] == "Framed-User"
        assert record["Framed-Protocol"] == "PPP"
        assert record["Acct-Authentic"] == "RADIUS"
        assert record["NAS-Identifier"] == "ocgate-test"
        assert record["NAS-IP-Address"] == "127.0.0.1"
        assert record["Connect-Info"] == "AnyConnect Linux_64 4.10"
    assert "Acct-Input-Octets" not in start
    assert (mid["Acct-Input-Octets"], mid["Acct-Output-Octets"]) == ("1000", "2000")
    assert (stop["Acct-Input-Octets"], stop["Acct-Input-Gigawords"]) == ("7", "5")
    assert (stop["Acct-Output-Octets"], stop["Acct-Output-Gigawords"]) == ("11", "3")
    assert (stop["Acct-Input-Packets"], stop["Acct-Output-Packets"]) == ("100", "200")
    assert stop["Acct-Session-Time"] == "125"
    assert stop["Acct-Terminate-Cause"] == "User-Request"


def test_silent_server_fails_in_bounded_time(
    freeradius_server: FreeRadius, tmp_path: Path, blackhole: int
) -> None:
    config = _config(
        freeradius_server, tmp_path, auth_servers=[f"127.0.0.1:{blackhole}"], timeout=1, retries=2
    )
    began = time.monotonic()
    with pytest.raises(AuthFailed, match="unreachable"):
        _login(config, "alice", "alicepass")
    elapsed = time.monotonic() - began
    assert 1.5 < elapsed < 1 * 2 * 1 + 1


def test_stopped_server_fails_in_bounded_time(
    freeradius_server: FreeRadius, tmp_path: Path
) -> None:
    config = _config(freeradius_server, tmp_path, timeout=1, retries=2)
    freeradius_server.stop()
    began = time.monotonic()
    with pytest.raises(AuthFailed, match="unreachable"):
        _login(config, "alice", "alicepass")
    assert time.monotonic() - began < 1 * 2 * 1 + 1
    acct = RadiusAccounting(config)
    session = AccountingSession(username="alice", session_id="s", client_ip="192.0.2.1")
    began = time.monotonic()
    assert asyncio.run(acct.start(session)) is False
    assert time.monotonic() - began < 1 * 2 * 1 + 1


def test_failover_to_second_server(
    freeradius_server: FreeRadius, tmp_path: Path, blackhole: int
) -> None:
    live = f"{freeradius_server.host}:{freeradius_server.auth_port}"
    dead = [f"127.0.0.1:{blackhole}", f"127.0.0.1:{free_udp_port()}"]
    config = _config(freeradius_server, tmp_path, auth_servers=[*dead, live], timeout=1, retries=1)
    began = time.monotonic()
    result = _login(config, "alice", "alicepass")
    assert isinstance(result, RadiusResult)
    assert time.monotonic() - began < 1 * 1 * 3 + 1


def test_all_servers_dead_bounded_by_count(
    freeradius_server: FreeRadius, tmp_path: Path, blackhole: int
) -> None:
    dead = [f"127.0.0.1:{blackhole}", f"127.0.0.1:{free_udp_port()}", f"127.0.0.1:{blackhole}"]
    config = _config(freeradius_server, tmp_path, auth_servers=dead, timeout=1, retries=1)
    began = time.monotonic()
    with pytest.raises(AuthFailed, match="unreachable"):
        _login(config, "alice", "alicepass")
    assert time.monotonic() - began < 1 * 1 * 3 + 1


def test_wrong_secret_is_unreachable_not_accepted(
    freeradius_server: FreeRadius, tmp_path: Path
) -> None:
    live = f"{freeradius_server.host}:{freeradius_server.auth_port}:not-the-secret"
    config = _config(freeradius_server, tmp_path, auth_servers=[live], timeout=1, retries=1)
    with pytest.raises(AuthFailed):
        _login(config, "alice", "alicepass")
