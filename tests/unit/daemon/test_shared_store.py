"""Two authentication services ("nodes") sharing one real Redis server (issue 14 §1).

Each test runs two :class:`AuthService` instances in one event loop against a ``redis-server``
(Debian's, started by the test on loopback): what one node does, the other sees. The end-to-end
tests with two gateways behind HAProxy are ``tests/interop/test_cluster.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config
from ocgate.daemon import _shared
from ocgate.daemon._auth import AuthService
from ocgate.daemon._cluster import UNAVAILABLE
from ocgate.errors import AuthFailed, InvalidCookie, ResourceError
from ocgate.gateway import SessionSettings
from ocgate.ipc import messages as m
from ocgate.session import Session
from tests.interop._redis import RedisServer, redis_missing
from tests.pki import make_pki

pytestmark = pytest.mark.skipif(redis_missing(), reason="needs Debian's redis-server (make test)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def short_recovery_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh server is an empty store: new leases wait RECOVERY_HOLD (shortened here)."""
    monkeypatch.setattr(_shared, "RECOVERY_HOLD", 0.3)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", host="127.0.0.1", port=_free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _config(tmp_path: Path, redis: RedisServer, node: str) -> Config:
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "passwd").write_text("alice:eng:$5$x$y\n")
    text = (
        f'auth = "plain[passwd={tmp_path}/passwd]"\n'
        f"server-cert = {pki.server.cert_path}\nserver-key = {pki.server.key_path}\n"
        "ipv4-network = 10.77.0.0/26\nipv6-network = fd00:77::/48\n"
        f"session-store = {redis.url()}\nnode-name = {node}\nmax-ban-score = 50\n"
    )
    return parse_config(text, source=str(tmp_path / f"{node}.conf"))


class Nodes:
    def __init__(self, a: AuthService, b: AuthService) -> None:
        self.a = a
        self.b = b

    async def login(self, node: AuthService, user: str = "alice") -> tuple[str, Session]:
        """A session as a login makes it (written to the shared store before the reply)."""
        cookie, session = node.store.create(
            username=user, groups=("eng",), group="eng", now=time.time(), user_agent="oc",
            remote_addr="198.18.0.2", cookie_timeout=300, session_timeout=None,
        )  # fmt: skip
        session.extra["settings"] = SessionSettings(config=node.config)
        node.store.save(session)
        assert node.cluster is not None
        await node.cluster.login_done()
        return str(cookie), session


@contextlib.asynccontextmanager
async def _two_nodes(tmp_path: Path, redis: RedisServer) -> AsyncIterator[Nodes]:
    services = []
    for name in ("a", "b"):
        directory = tmp_path / name
        directory.mkdir()
        config = _config(directory, redis, name)
        service = AuthService(config, store_path=str(directory / "sessions.sqlite"))
        service.start()
        services.append(service)
    await _until(lambda: all(s.cluster is not None and s.cluster.shared.healthy for s in services))
    await asyncio.sleep(0.2)  # Both subscribed to the events channel.
    try:
        yield Nodes(*services)
    finally:
        for service in services:
            await service.close()


@pytest.fixture
def run(tmp_path: Path, redis: RedisServer) -> Callable[[Callable[[Nodes], Awaitable[None]]], None]:
    """Runs a test body with two fresh nodes in one event loop."""

    def runner(body: Callable[[Nodes], Awaitable[None]]) -> None:
        async def main() -> None:
            async with _two_nodes(tmp_path, redis) as nodes:
                await body(nodes)

        asyncio.run(main())

    return runner


Run = Callable[[Callable[[Nodes], Awaitable[None]]], None]


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def _claim(node: AuthService, cookie: str, worker: int = 0, tunnel: int = 1) -> Session:
    reply = await node._from_worker(worker, m.ClaimSession(cookie=cookie, tunnel_id=tunnel))
    assert isinstance(reply, m.SessionGranted), reply
    return node.store.lookup(cookie, time.time())


def test_a_cookie_of_node_a_connects_on_node_b_with_the_same_addresses(
    run: Run, redis: RedisServer
) -> None:
    async def body(nodes: Nodes) -> None:
        cookie, _ = await nodes.login(nodes.a)
        on_a = await _claim(nodes.a, cookie)
        sid, addresses = on_a.sid, (on_a.ipv4, on_a.ipv6)
        assert None not in addresses
        assert redis.command("GET", f"ocgate:l:{on_a.ipv4}") == sid

        on_b = await _claim(nodes.b, cookie)  # Node A died, or the balancer chose B.

        assert (on_b.sid, on_b.ipv4, on_b.ipv6) == (sid, *addresses)
        assert redis.command("GET", f"ocgate:h:{sid}") == "b"
        # A hears that B is the session's home: it drops its copy, frees the address locally.
        await _until(lambda: sid not in {s.sid for s in nodes.a.store.sessions()})
        assert nodes.a.pool4 is not None
        assert addresses[0] not in nodes.a.pool4
        assert redis.command("GET", f"ocgate:l:{on_b.ipv4}") == sid
        # And back to A: the session moves again, still with its addresses.
        again = await _claim(nodes.a, cookie, tunnel=2)
        assert (again.ipv4, again.ipv6) == addresses

    run(body)


def test_logins_on_both_nodes_never_share_an_address(run: Run) -> None:
    async def body(nodes: Nodes) -> None:
        leased = []
        for i in range(40):
            node = nodes.a if i % 2 else nodes.b
            cookie, _ = await nodes.login(
                node, user="alice"
            )  # One user: both nodes start at one slot.
            session = await _claim(node, cookie, tunnel=i)
            leased.append(session.ipv4)
        assert len(set(leased)) == 40

    run(body)


def test_an_unknown_or_ended_cookie_is_refused_everywhere(run: Run, redis: RedisServer) -> None:
    async def body(nodes: Nodes) -> None:
        cookie, session = await nodes.login(nodes.a)
        await _claim(nodes.a, cookie)
        nodes.a.end_session(nodes.a.store.by_sid(session.sid), "admin terminate")
        await _until(lambda: redis.command("EXISTS", f"ocgate:i:{session.sid}") == 0)
        reply = await nodes.b._from_worker(0, m.ClaimSession(cookie=cookie, tunnel_id=5))
        assert isinstance(reply, m.Failed)
        with pytest.raises(InvalidCookie):
            await nodes.b.cluster.prepare_claim("A" * 44)  # type: ignore[union-attr]

    run(body)


def test_ban_points_on_one_node_ban_on_the_other(run: Run) -> None:
    async def body(nodes: Nodes) -> None:
        for _ in range(5):
            nodes.a._wrong_password("198.51.100.7")
        assert nodes.a.is_banned("198.51.100.7")
        await _until(lambda: nodes.b.is_banned("198.51.100.7"))
        nodes.b.unban("198.51.100.7")
        await _until(lambda: not nodes.a.is_banned("198.51.100.7"))

    run(body)


def test_an_otp_code_is_good_once_on_all_nodes(run: Run) -> None:
    async def body(nodes: Nodes) -> None:
        assert nodes.a.cluster is not None
        assert nodes.b.cluster is not None
        await nodes.a.cluster.otp_first_use("alice", "123456", 60)
        with pytest.raises(AuthFailed, match="already used"):
            await nodes.b.cluster.otp_first_use("alice", "123456", 60)

    run(body)


def test_terminate_reaches_the_session_on_the_other_node(run: Run, redis: RedisServer) -> None:
    async def body(nodes: Nodes) -> None:
        cookie, session = await nodes.login(nodes.a)
        on_b = await _claim(nodes.b, cookie)
        assert on_b.ipv4 is not None
        assert nodes.a.cluster is not None
        assert await nodes.a.cluster.end_elsewhere(session.sid, "admin terminate")
        # B, the home, ends it: its tunnel, its keys and its lease.
        await _until(lambda: session.sid not in {s.sid for s in nodes.b.store.sessions()})
        await _until(lambda: redis.command("EXISTS", f"ocgate:i:{session.sid}") == 0)
        assert redis.command("EXISTS", f"ocgate:l:{on_b.ipv4}") == 0
        reply = await nodes.a._from_worker(0, m.ClaimSession(cookie=cookie, tunnel_id=9))
        assert isinstance(reply, m.Failed)

    run(body)


def test_a_session_ended_while_its_node_was_away_stays_ended(
    run: Run, tmp_path: Path, redis: RedisServer
) -> None:
    async def body(nodes: Nodes) -> None:
        directory = tmp_path / "c"
        directory.mkdir()
        config = _config(directory, redis, "c")
        node_c = AuthService(config, store_path=str(directory / "s.sqlite"))
        node_c.start()
        try:
            await _until(lambda: node_c.cluster is not None and node_c.cluster.shared.healthy)
            cookie, session = await nodes.login(node_c)
            await _claim(node_c, cookie)
        finally:
            await node_c.close()  # C stops (its SQLite file keeps the session)...
        assert nodes.a.cluster is not None
        assert await nodes.a.cluster.end_elsewhere(session.sid, "admin terminate")  # ...ended.
        again = AuthService(config, store_path=str(directory / "s.sqlite"))
        again.start()
        try:
            await _until(lambda: session.sid not in {s.sid for s in again.store.sessions()})
        finally:
            await again.close()

    run(body)


def test_an_outage_refuses_logins_keeps_held_sessions_and_heals(
    run: Run, redis: RedisServer
) -> None:
    async def body(nodes: Nodes) -> None:
        cookie, session = await nodes.login(nodes.a)
        held = (await _claim(nodes.a, cookie)).ipv4
        other, _ = await nodes.login(nodes.a, user="bob")
        redis.stop()
        assert nodes.a.cluster is not None
        await _until(
            lambda: nodes.a.cluster is not None and nodes.a.cluster.unavailable() is not None
        )
        assert nodes.a.cluster.unavailable() == UNAVAILABLE
        # The session this node holds reconnects here, with its addresses.
        again = await _claim(nodes.a, cookie, tunnel=2)
        assert again.ipv4 == held
        # A session that needs a new address (or another node's session) is refused, cleanly.
        refused = await nodes.a._from_worker(0, m.ClaimSession(cookie=other, tunnel_id=3))
        assert isinstance(refused, m.Failed)
        assert "unavailable" in refused.message
        refused = await nodes.b._from_worker(0, m.ClaimSession(cookie=cookie, tunnel_id=4))
        assert isinstance(refused, m.Failed)
        with pytest.raises(ResourceError):
            await nodes.a.cluster.confirm_leases(
                nodes.a.store.lookup(other, time.time()), (None, None)
            )
        # The server comes back empty: node A writes its session and lease again.
        redis.start()
        await _until(lambda: redis.command("GET", f"ocgate:l:{held}") == session.sid, 10.0)
        await _until(lambda: redis.command("EXISTS", f"ocgate:i:{session.sid}") == 1)
        assert nodes.a.cluster.unavailable() is None
        on_b = await _claim(nodes.b, cookie, tunnel=5)
        assert on_b.ipv4 == held

    run(body)


def test_a_login_context_is_taken_once_by_the_same_client(run: Run) -> None:
    async def body(nodes: Nodes) -> None:
        assert nodes.a.cluster is not None
        assert nodes.b.cluster is not None
        keep = nodes.a.cluster.keep_context
        await keep("tok1", b"state", remote="198.18.0.2", vhost="", seconds=60)
        take = nodes.b.cluster.take_context
        assert await take("tok1", remote="198.18.0.9", vhost="") is None  # Another client...
        await keep("tok1", b"state", remote="198.18.0.2", vhost="", seconds=60)
        assert await take("tok1", remote="198.18.0.2", vhost="") == b"state"
        assert await take("tok1", remote="198.18.0.2", vhost="") is None  # ...and only once.

    run(body)


def test_a_node_that_starts_later_learns_the_bans_in_force(
    run: Run, tmp_path: Path, redis: RedisServer
) -> None:
    async def body(nodes: Nodes) -> None:
        for _ in range(5):
            nodes.a._wrong_password("198.51.100.8")
        await _until(lambda: redis.command("HEXISTS", "ocgate:bans", "198.51.100.8") == 1)
        directory = tmp_path / "c"
        directory.mkdir()
        late = AuthService(_config(directory, redis, "c"), store_path=str(directory / "s.sqlite"))
        late.start()
        try:
            await _until(lambda: late.is_banned("198.51.100.8"))
            assert not late.is_banned("198.51.100.9")
        finally:
            await late.close()

    run(body)


def test_terminate_user_ends_the_user_s_sessions_on_every_node(run: Run) -> None:
    async def body(nodes: Nodes) -> None:
        cookie, _ = await nodes.login(nodes.b)  # A session of alice's on B with a tunnel,
        await _claim(nodes.b, cookie)
        await nodes.login(nodes.b)  # one with no tunnel,
        await nodes.login(nodes.b, user="bob")  # and bob's, which stays.
        assert nodes.a.cluster is not None
        nodes.a.cluster.end_user_elsewhere("alice")
        await _until(lambda: [s.username for s in nodes.b.store.sessions()] == ["bob"])

    run(body)


def test_a_late_write_of_the_old_home_loses_to_the_new_one(run: Run, redis: RedisServer) -> None:
    async def body(nodes: Nodes) -> None:
        cookie, session = await nodes.login(nodes.a)
        await _claim(nodes.a, cookie)
        stale = nodes.a.store.by_sid(session.sid)
        await _claim(nodes.b, cookie)  # B is the home now...
        assert nodes.a.cluster is not None
        shared = nodes.a.cluster.shared
        shared.written.add(stale.sid)
        shared.dirty(stale)  # ...and A writes its older copy (queued before it heard of it).
        await shared.flush()
        assert redis.command("GET", f"ocgate:h:{session.sid}") == "b"
        assert session.sid not in {s.sid for s in nodes.a.store.sessions()}
        again = await _claim(nodes.b, cookie, tunnel=3)  # B's row is intact.
        assert again.sid == session.sid

    run(body)


def test_both_nodes_rewrite_their_leases_when_the_store_restarts_empty(
    run: Run, redis: RedisServer
) -> None:
    async def body(nodes: Nodes) -> None:
        cookie_a, on_a = await nodes.login(nodes.a)
        cookie_b, on_b = await nodes.login(nodes.b, user="bob")
        leased_a = (await _claim(nodes.a, cookie_a)).ipv4
        leased_b = (await _claim(nodes.b, cookie_b)).ipv4
        redis.stop()
        redis.start()  # Back at once, empty: the nodes may not even have noticed it was down.
        for sid, address in ((on_a.sid, leased_a), (on_b.sid, leased_b)):
            await _until(lambda s=sid, a=address: redis.command("GET", f"ocgate:l:{a}") == s)
        await _until(lambda: redis.command("EXISTS", f"ocgate:i:{on_b.sid}") == 1)
        moved = await _claim(nodes.a, cookie_b, tunnel=7)  # bob moves, with his address.
        assert moved.ipv4 == leased_b

    run(body)
