from __future__ import annotations

import ocgate.session


def test_exports() -> None:
    assert sorted(ocgate.session.__all__) == [
        "COOKIE_LENGTH",
        "Ipv4Pool",
        "Ipv6Pool",
        "MemorySessionStore",
        "Session",
        "SessionCookie",
        "SessionStore",
        "SqliteSessionStore",
        "assign_leases",
        "cookie_digest_untrusted",
        "parse_cookie_untrusted",
        "release_leases",
    ]
    for name in ocgate.session.__all__:
        assert getattr(ocgate.session, name) is not None


def test_memory_store_satisfies_protocol() -> None:
    store: ocgate.session.SessionStore = ocgate.session.MemorySessionStore()
    assert store.sessions() == []
