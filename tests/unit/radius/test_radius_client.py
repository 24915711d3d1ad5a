"""Authenticator and accounting over loopback UDP against a scripted server: retransmission,
invalid replies, challenges, failover and bounded failure."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from _radius_fakeserver import reply, start_fake

from ocgate.errors import AuthFailed
from ocgate.radius import (
    AccountingSession,
    RadiusAccounting,
    RadiusAuthenticator,
    RadiusChallenge,
    RadiusConfig,
    RadiusResult,
    RadiusServer,
    SessionStats,
    TerminateCause,
)
from ocgate.radius._constants import PacketCode

SECRET = b"unit-secret"
T = TypeVar("T")


def _config(ports: list[int], **kwargs: Any) -> RadiusConfig:
    servers = tuple(RadiusServer(host="127.0.0.1", port=p, secret=SECRET) for p in ports)
    values: dict[str, Any] = {"timeout": 0.3, "retries": 2, "groupconfig": True, **kwargs}
    return RadiusConfig(source="test", auth_servers=servers, acct_servers=servers, **values)


def _silent_port() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def _run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


def _accept(request: Any, count: int) -> bytes:
    return reply(request, PacketCode.ACCESS_ACCEPT, Class="OU=eng")


def test_accept_after_a_lost_datagram() -> None:
    def drop_first(request: Any, count: int) -> bytes | None:
        return None if count == 1 else _accept(request, count)

    async def scenario() -> tuple[RadiusResult | RadiusChallenge, list[bytes]]:
        async with start_fake(SECRET, drop_first) as (server, port):
            auth = RadiusAuthenticator(_config([port]))
            return await auth.authenticate("alice", "pw", client_ip="192.0.2.1"), server.raw

    result, raw = _run(scenario)
    assert isinstance(result, RadiusResult)
    assert result.groups == ("eng",)
    assert len(raw) == 2
    assert raw[0] == raw[1]  # A retransmission keeps its Identifier and Authenticator.


def test_invalid_replies_are_dropped() -> None:
    def noisy(request: Any, count: int) -> list[bytes]:
        good = _accept(request, count)
        return [b"junk", good[:-1] + bytes([good[-1] ^ 0xFF]), good]

    async def scenario() -> RadiusResult | RadiusChallenge:
        async with start_fake(SECRET, noisy) as (_, port):
            auth = RadiusAuthenticator(_config([port], retries=1))
            return await auth.authenticate("alice", "pw", client_ip="192.0.2.1")

    assert isinstance(_run(scenario), RadiusResult)


def test_reject_and_realm() -> None:
    def reject(request: Any, count: int) -> bytes:
        assert request["User-Name"] == ["alice@example.org"]
        return reply(request, PacketCode.ACCESS_REJECT, Reply_Message="nope")

    async def scenario() -> None:
        async with start_fake(SECRET, reject) as (_, port):
            auth = RadiusAuthenticator(_config([port], default_realm="example.org"))
            await auth.authenticate("alice", "pw", client_ip="192.0.2.1")

    with pytest.raises(AuthFailed, match="rejected: nope"):
        _run(scenario)


def test_bad_inputs_fail_without_sending() -> None:
    auth = RadiusAuthenticator(_config([9]))
    with pytest.raises(AuthFailed, match="empty user name"):
        _run(lambda: auth.authenticate("", "pw", client_ip="192.0.2.1"))
    with pytest.raises(AuthFailed, match="password too long"):
        _run(lambda: auth.authenticate("u", "p" * 200, client_ip="192.0.2.1"))


def test_challenge_goes_back_to_the_same_server() -> None:
    def challenger(request: Any, count: int) -> bytes:
        if "State" in request:
            assert request["State"] == [b"st-1"]
            return _accept(request, count)
        return reply(request, PacketCode.ACCESS_CHALLENGE, Reply_Message="Code?", State=b"st-1")

    def accept_all(request: Any, count: int) -> bytes:
        raise AssertionError("the challenge answer went to the wrong server")

    async def scenario() -> tuple[RadiusChallenge, RadiusResult | RadiusChallenge, int]:
        silent, dead = _silent_port()
        async with (
            start_fake(SECRET, accept_all) as (_, other),
            start_fake(SECRET, challenger) as (server, port),
        ):
            silent.close()
            auth = RadiusAuthenticator(_config([dead, port, other], retries=1))
            first = await auth.authenticate("bob", "pw", client_ip="192.0.2.1")
            assert isinstance(first, RadiusChallenge)
            second = await auth.authenticate("bob", "123", client_ip="192.0.2.1", challenge=first)
            return first, second, len(server.requests)

    first, second, count = _run(scenario)
    assert (first.message, first.round, first.server) == ("Code?", 1, 1)
    assert isinstance(second, RadiusResult)
    assert count == 2


def test_challenge_rounds_are_capped() -> None:
    def always_challenge(request: Any, count: int) -> bytes:
        return reply(request, PacketCode.ACCESS_CHALLENGE, Reply_Message="again", State=b"s")

    async def scenario() -> None:
        async with start_fake(SECRET, always_challenge) as (_, port):
            auth = RadiusAuthenticator(_config([port]))
            challenge: RadiusChallenge | None = None
            while True:
                outcome = await auth.authenticate(
                    "bob", "x", client_ip="192.0.2.1", challenge=challenge
                )
                assert isinstance(outcome, RadiusChallenge)
                assert outcome.round == (challenge.round + 1 if challenge else 1)
                challenge = outcome

    with pytest.raises(AuthFailed, match="more than 16"):
        _run(scenario)


def test_challenge_without_state_fails() -> None:
    def bad(request: Any, count: int) -> bytes:
        return reply(request, PacketCode.ACCESS_CHALLENGE, Reply_Message="no state")

    async def scenario() -> None:
        async with start_fake(SECRET, bad) as (_, port):
            auth = RadiusAuthenticator(_config([port]))
            await auth.authenticate("b", "x", client_ip="192.0.2.1")

    with pytest.raises(AuthFailed, match="without State"):
        _run(scenario)


def test_unreachable_is_bounded() -> None:
    silent, port = _silent_port()
    with silent:
        config = _config([port, port], timeout=0.2, retries=2)
        began = time.monotonic()
        with pytest.raises(AuthFailed, match="RADIUS server unreachable"):
            _run(lambda: RadiusAuthenticator(config).authenticate("a", "b", client_ip="x"))
        assert time.monotonic() - began < 0.2 * 2 * 2 + 1


def test_unresolvable_server_is_skipped() -> None:
    servers = (RadiusServer(host="host.invalid.", port=1812, secret=SECRET),)
    config = RadiusConfig(source="t", auth_servers=servers, timeout=0.5, retries=1)
    with pytest.raises(AuthFailed, match="unreachable"):
        _run(lambda: RadiusAuthenticator(config).authenticate("a", "b", client_ip="x"))


SESSION = AccountingSession(username="alice", session_id="s1", client_ip="192.0.2.1")


def test_accounting_outcomes() -> None:
    def ack(request: Any, count: int) -> bytes:
        return request.CreateReply().ReplyPacket()  # type: ignore[no-any-return]

    async def scenario() -> tuple[list[bool], list[int]]:
        async with start_fake(SECRET, ack) as (server, port):
            acct = RadiusAccounting(_config([port]))
            stats = SessionStats(bytes_in=1, bytes_out=2, session_time=3)
            outcomes = [
                await acct.start(SESSION),
                await acct.interim(SESSION, stats),
                await acct.stop(SESSION, stats, TerminateCause.ADMIN_RESET),
            ]
            return outcomes, [r["Acct-Status-Type"][0] for r in server.requests]

    outcomes, kinds = _run(scenario)
    assert outcomes == [True, True, True]
    assert kinds == [1, 3, 2]


def test_accounting_failures_return_false() -> None:
    silent, port = _silent_port()
    with silent:
        acct = RadiusAccounting(_config([port], timeout=0.2, retries=1))
        assert _run(lambda: acct.start(SESSION)) is False
    none = RadiusConfig(source="t", auth_servers=_config([1]).auth_servers)
    assert _run(lambda: RadiusAccounting(none).start(SESSION)) is False
    broken = RadiusAccounting(_config([1]))
    bad_stats = SessionStats(bytes_in=-1)
    assert _run(lambda: broken.stop(SESSION, bad_stats, TerminateCause.USER_ERROR)) is False
