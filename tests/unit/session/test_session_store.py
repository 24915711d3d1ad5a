from __future__ import annotations

import base64
import hashlib
import random
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.errors import InvalidCookie, ResourceError
from ocgate.session import (
    COOKIE_LENGTH,
    Ipv4Pool,
    Ipv6Pool,
    MemorySessionStore,
    Session,
    SessionCookie,
    SessionStore,
    SqliteSessionStore,
    assign_leases,
    cookie_digest_untrusted,
    parse_cookie_untrusted,
    release_leases,
)

COOKIE_TIMEOUT = 300.0


StoreFactory = Callable[..., MemorySessionStore]


def memory_store(seed: int = 0) -> MemorySessionStore:
    return MemorySessionStore(random_bytes=random.Random(seed).randbytes)


def assert_written_through(store: SqliteSessionStore) -> None:
    """The file holds exactly the store's sessions, in the same state."""
    with closing(sqlite3.connect(store.path)) as db:
        rows = db.execute(
            "SELECT sid, connected, tunnel_id, expires_at, session_deadline FROM sessions"
        ).fetchall()
    assert {sid: (bool(c), t, e, d) for sid, c, t, e, d in rows} == {
        s.sid: (s.connected, s.tunnel_id, s.expires_at, s.session_deadline)
        for s in store.sessions()
    }


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Build stores of one implementation; a SQLite store is checked against its file after."""
    durable: list[SqliteSessionStore] = []

    def factory(
        seed: int = 0, *, random_bytes: Callable[[int], bytes] | None = None
    ) -> MemorySessionStore:
        source = random_bytes or random.Random(seed).randbytes
        if request.param == "memory":
            return MemorySessionStore(random_bytes=source)
        path = tmp_path / f"store{len(durable)}.sqlite"
        store = SqliteSessionStore(path, now=0.0, random_bytes=source)
        durable.append(store)
        return store

    yield factory
    for store in durable:
        try:
            assert_written_through(store)
        finally:
            store.close()


def create(
    store: SessionStore,
    now: float = 1000.0,
    session_timeout: float | None = None,
    user: str = "alice",
) -> tuple[SessionCookie, Session]:
    return store.create(
        username=user,
        groups=["staff", "vpn"],
        group="vpn",
        now=now,
        user_agent="Open AnyConnect VPN Agent v9.01",
        remote_addr="192.0.2.7",
        cookie_timeout=COOKIE_TIMEOUT,
        session_timeout=session_timeout,
    )


def mutate(cookie: str, i: int = 0) -> str:
    c = cookie[i]
    return cookie[:i] + ("B" if c == "A" else "A") + cookie[i + 1 :]


# --- cookie format ----------------------------------------------------------------------------


def test_cookie_format_like_ocserv(make_store: StoreFactory) -> None:
    store = make_store()
    cookie, session = create(store)
    assert isinstance(cookie, str)
    assert len(cookie) == COOKIE_LENGTH == 44
    assert cookie.endswith("=")
    raw = base64.b64decode(cookie, validate=True)
    assert len(raw) == 32
    assert session.token_digest == hashlib.sha256(raw).digest()
    assert parse_cookie_untrusted(str(cookie)) == raw
    assert cookie_digest_untrusted(str(cookie)) == session.token_digest


def test_cookie_comes_from_random_bytes(make_store: StoreFactory) -> None:
    c1, _ = create(make_store(5))
    c2, _ = create(make_store(5))
    c3, _ = create(make_store(6))
    assert c1 == c2
    assert c1 != c3


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "A" * 43,
        "A" * 45,
        "A" * 44,  # no padding
        "A" * 42 + "==",  # 31 bytes
        "A" * 42 + "B=",  # non-canonical final character
        "A" * 42 + "A" + "\u00e9",
        "A" * 20 + "-_" + "A" * 21 + "=",  # URL-safe alphabet
        "A" * 20 + " " + "A" * 22 + "=",
        "A" * 10000,
    ],
)
def test_malformed_cookies_rejected(bad: str, make_store: StoreFactory) -> None:
    with pytest.raises(InvalidCookie):
        parse_cookie_untrusted(bad)
    with pytest.raises(InvalidCookie):
        make_store().lookup(bad, 0.0)


def test_non_str_cookie_rejected() -> None:
    with pytest.raises(InvalidCookie):
        parse_cookie_untrusted(b"A" * 43 + b"=")  # type: ignore[arg-type]


@given(
    st.text(max_size=60)
    | st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
        min_size=43,
        max_size=45,
    )
)
def test_fuzz_parse_cookie_untrusted(text: str) -> None:
    try:
        raw = parse_cookie_untrusted(text)
    except InvalidCookie:
        return
    assert len(raw) == 32
    assert base64.b64encode(raw).decode() == text


@given(st.text(max_size=60))
def test_fuzz_lookup_raises_only_invalid_cookie(text: str) -> None:
    store = memory_store()
    create(store)
    with pytest.raises(InvalidCookie):
        store.lookup(text, 1000.0)


# --- lookup -----------------------------------------------------------------------------------


def test_lookup_finds_session_and_mutated_cookie_fails(make_store: StoreFactory) -> None:
    store = make_store()
    cookie, session = create(store)
    other_cookie, other = create(store, user="bob")
    assert store.lookup(cookie, 1000.0) is session
    assert store.lookup(other_cookie, 1000.0) is other
    for i in (0, 21, 42):
        with pytest.raises(InvalidCookie, match="unknown"):
            store.lookup(mutate(cookie, i), 1000.0)


def test_session_fields(make_store: StoreFactory) -> None:
    store = make_store()
    _, s = create(store, now=50.0, session_timeout=3600)
    assert s.username == "alice"
    assert s.groups == ("staff", "vpn")
    assert s.group == "vpn"
    assert s.created == s.authenticated_at == 50.0
    assert s.expires_at == 50.0 + COOKIE_TIMEOUT
    assert s.session_deadline == 3650.0
    assert s.remote_addr == "192.0.2.7"
    assert s.user_agent == "Open AnyConnect VPN Agent v9.01"
    assert not s.connected
    assert s.ipv4 is None
    assert s.ipv6 is None
    assert len(s.sid) >= 6
    assert store.by_sid(s.sid) is s
    assert store.sessions() == [s]
    assert len(store) == 1
    assert "sessions=1" in repr(store)


def test_sids_unique_even_with_colliding_randomness(make_store: StoreFactory) -> None:
    # The same 4 bytes come back for the sid twice; the store must draw again.
    stream = iter([b"\x01" * 32, b"sid1", b"\x02" * 32, b"sid1", b"sid2"])
    store = make_store(random_bytes=lambda n: next(stream))
    _, a = create(store)
    _, b = create(store)
    assert a.sid != b.sid


def test_token_collision_draws_again(make_store: StoreFactory) -> None:
    stream = iter([b"\x01" * 32, b"sid1", b"\x01" * 32, b"\x02" * 32, b"sid2"])
    store = make_store(random_bytes=lambda n: next(stream))
    c1, _ = create(store)
    c2, _ = create(store)
    assert c1 != c2


def test_by_sid_unknown(make_store: StoreFactory) -> None:
    with pytest.raises(KeyError):
        make_store().by_sid("nope")


# --- lifetime ---------------------------------------------------------------------------------


def test_cookie_expires_only_while_disconnected(make_store: StoreFactory) -> None:
    store = make_store()
    cookie, s = create(store, now=0.0)
    assert store.lookup(cookie, COOKIE_TIMEOUT - 1) is s
    with pytest.raises(InvalidCookie, match="expired"):
        store.lookup(cookie, COOKIE_TIMEOUT)

    cookie, s = create(store, now=0.0)
    store.mark_connected(s, 10.0, tunnel_id=1)
    assert s.connected
    assert s.expires_at is None
    assert s.tunnel_id == 1
    assert store.lookup(cookie, 10_000.0) is s
    assert s not in store.expire(10_000.0)

    store.mark_disconnected(s, 10_000.0, COOKIE_TIMEOUT)
    assert not s.connected
    assert s.tunnel_id is None
    assert s.expires_at == 10_000.0 + COOKIE_TIMEOUT
    assert store.lookup(cookie, 10_299.0) is s
    with pytest.raises(InvalidCookie):
        store.lookup(cookie, 10_300.0)


def test_stale_tunnel_does_not_disconnect_successor(make_store: StoreFactory) -> None:
    store = make_store()
    _, s = create(store)
    store.mark_connected(s, 1.0, tunnel_id=1)
    store.mark_connected(s, 2.0, tunnel_id=2)  # reconnect replaced tunnel 1
    store.mark_disconnected(s, 3.0, COOKIE_TIMEOUT, tunnel_id=1)
    assert s.connected
    assert s.tunnel_id == 2
    store.mark_disconnected(s, 4.0, COOKIE_TIMEOUT, tunnel_id=2)
    assert not s.connected


def test_session_deadline_spans_reconnects(make_store: StoreFactory) -> None:
    store = make_store()
    cookie, s = create(store, now=0.0, session_timeout=1000)
    store.mark_connected(s, 1.0)
    store.mark_disconnected(s, 500.0, COOKIE_TIMEOUT)
    store.mark_connected(s, 600.0)  # reconnect: the deadline does not move
    assert s.session_deadline == 1000.0
    assert store.lookup(cookie, 999.0) is s
    with pytest.raises(InvalidCookie):
        store.lookup(cookie, 1000.0)
    # Connected, yet over: expire() returns it still marked connected, to tear the tunnel down.
    assert store.expire(1000.0) == [s]
    assert s.connected
    assert store.sessions() == []


@pytest.mark.parametrize("timeout", [None, 0])
def test_no_session_timeout(timeout: float | None, make_store: StoreFactory) -> None:
    _, s = create(make_store(), session_timeout=timeout)
    assert s.session_deadline is None


def test_invalidate(make_store: StoreFactory) -> None:
    store = make_store()
    cookie, s = create(store)
    keep_cookie, keep = create(store, user="bob")
    store.invalidate(s)
    with pytest.raises(InvalidCookie):
        store.lookup(cookie, 1000.0)
    with pytest.raises(KeyError):
        store.by_sid(s.sid)
    assert store.sessions() == [keep]
    store.invalidate(s)  # idempotent
    assert store.lookup(keep_cookie, 1000.0) is keep


def test_expire_returns_only_expired(make_store: StoreFactory) -> None:
    store = make_store()
    _, old = create(store, now=0.0)
    _, new = create(store, now=200.0)
    assert store.expire(299.0) == []
    assert store.expire(300.0) == [old]
    assert store.sessions() == [new]


# --- leases -----------------------------------------------------------------------------------


def pools() -> tuple[Ipv4Pool, Ipv6Pool]:
    return (
        Ipv4Pool(IPv4Network("10.10.0.0/24"), predictable=True),
        Ipv6Pool(IPv6Network("fd00:10::/48"), 64, predictable=True),
    )


def test_leases_kept_across_reconnect_and_released_on_expiry(make_store: StoreFactory) -> None:
    v4, v6 = pools()
    store = make_store()
    cookie, s = create(store, now=0.0)
    assign_leases(s, v4, v6)
    ip4, ip6 = s.ipv4, s.ipv6
    assert ip4 is not None
    assert ip6 is not None
    store.mark_connected(s, 1.0, tunnel_id=1)
    store.mark_disconnected(s, 100.0, COOKIE_TIMEOUT, tunnel_id=1)

    again = store.lookup(cookie, 150.0)
    # The client asks for other addresses; the session's own leases win.
    assign_leases(again, v4, v6, IPv4Address("10.10.0.99"), IPv6Network("fd00:10:0:99::/64"))
    assert (again.ipv4, again.ipv6) == (ip4, ip6)
    assert (v4.in_use, v6.in_use) == (1, 1)

    for gone in store.expire(100.0 + COOKIE_TIMEOUT):
        release_leases(gone, v4, v6)
    assert (s.ipv4, s.ipv6) == (None, None)
    assert (v4.in_use, v6.in_use) == (0, 0)


def test_assign_leases_prefers_previous_addresses(make_store: StoreFactory) -> None:
    v4, v6 = pools()
    _, s = create(make_store())
    assign_leases(s, v4, v6, IPv4Address("10.10.0.99"), IPv6Network("fd00:10:0:99::/64"))
    assert s.ipv4 == IPv4Address("10.10.0.99")
    assert s.ipv6 == IPv6Network("fd00:10:0:99::/64")


def test_assign_leases_single_stack(make_store: StoreFactory) -> None:
    v4, v6 = pools()
    _, s = create(make_store())
    assign_leases(s, v4, None)
    assert s.ipv4 is not None
    assert s.ipv6 is None
    _, t = create(make_store(1))
    assign_leases(t, None, v6)
    assert t.ipv4 is None
    assert t.ipv6 is not None
    release_leases(s, None, None)
    assert s.ipv4 is None


def test_assign_leases_rolls_back_ipv4_when_ipv6_exhausted(make_store: StoreFactory) -> None:
    v4 = Ipv4Pool(IPv4Network("10.10.0.0/24"), predictable=True)
    v6 = Ipv6Pool(IPv6Network("fd00::/126"), predictable=True)
    store = make_store()
    for user in ("a", "b"):
        _, s = create(store, user=user)
        assign_leases(s, v4, v6)
    _, s = create(store, user="c")
    with pytest.raises(ResourceError):
        assign_leases(s, v4, v6)
    assert s.ipv4 is None
    assert v4.in_use == 2


# --- secrets stay out of repr -----------------------------------------------------------------


def test_repr_never_shows_cookie_or_digest(make_store: StoreFactory) -> None:
    store = make_store()
    cookie, s = create(store)
    raw = parse_cookie_untrusted(cookie)
    text = repr((cookie, s)) + repr(s) + repr(cookie) + repr([cookie]) + f"{cookie!r}"
    assert str(cookie) not in text
    assert raw.hex() not in text
    assert s.token_digest.hex() not in text
    assert repr(s.token_digest) not in text
    assert "redacted" in repr(cookie)
    assert s.sid in repr(s)
    # The value is still there for Set-Cookie.
    assert f"webvpn={cookie}" == "webvpn=" + str(cookie)
    assert cookie == str(cookie)


def test_session_equality_is_identity(make_store: StoreFactory) -> None:
    store = make_store()
    _, a = create(store)
    assert a == a
    assert len({a, a}) == 1
