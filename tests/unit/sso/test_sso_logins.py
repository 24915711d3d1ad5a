"""The SSO logins and their single-use tokens (ocgate.sso._logins), with a fake clock."""

from __future__ import annotations

import itertools

import pytest

from ocgate.errors import SsoError
from ocgate.sso import SsoIdentity
from ocgate.sso._logins import TOKEN_CHARS, SsoLogins, SsoMode

ALICE = SsoIdentity(username="alice", groups=("staff",))


def counter_bytes() -> SsoLogins:
    counter = itertools.count(1)

    def random_bytes(n: int) -> bytes:
        return next(counter).to_bytes(n, "big")

    return SsoLogins(random_bytes=random_bytes, login_lifetime=300, token_lifetime=120)


def returned(logins: SsoLogins, now: float = 0.0) -> str:
    login_id = logins.begin(mode=SsoMode.EXTERNAL, client_key=b"key", now=now)
    logins.started(login_id, b"pending", now)
    assert logins.returned(login_id, now) == b"pending"
    return login_id


def test_token_is_alphanumeric_and_redeems_once() -> None:
    logins = counter_bytes()
    login_id = returned(logins)
    token = logins.issue(login_id, ALICE, 1.0)
    assert len(token) == TOKEN_CHARS
    assert token.isalnum()
    assert logins.redeem(login_id, token, 2.0) == ALICE
    with pytest.raises(SsoError, match="already used"):
        logins.redeem(login_id, token, 3.0)


def test_token_of_another_login_is_refused() -> None:
    logins = counter_bytes()
    mine = returned(logins)
    theirs = returned(logins)
    token = logins.issue(theirs, ALICE, 1.0)
    with pytest.raises(SsoError, match="another login"):
        logins.redeem(mine, token, 2.0)
    with pytest.raises(SsoError, match="another login"):
        logins.redeem(None, token, 2.0)
    assert logins.redeem(theirs, token, 2.0) == ALICE  # Still good for its own login.


def test_token_expires() -> None:
    logins = counter_bytes()
    login_id = returned(logins)
    token = logins.issue(login_id, ALICE, 10.0)
    with pytest.raises(SsoError, match="expired"):
        logins.redeem(login_id, token, 130.0)


def test_login_expires() -> None:
    logins = counter_bytes()
    login_id = logins.begin(mode=SsoMode.EMBEDDED, client_key=None, now=0.0)
    with pytest.raises(SsoError, match="expired or is unknown"):
        logins.started(login_id, b"p", 300.0)


def test_return_is_handed_out_once() -> None:
    logins = counter_bytes()
    login_id = returned(logins)
    with pytest.raises(SsoError, match="already used"):
        logins.returned(login_id, 1.0)
    with pytest.raises(SsoError, match="already complete"):
        logins.started(login_id, b"again", 1.0)


def test_return_without_start_and_unknown_login() -> None:
    logins = counter_bytes()
    login_id = logins.begin(mode=SsoMode.EMBEDDED, client_key=None, now=0.0)
    with pytest.raises(SsoError, match="never started"):
        logins.returned(login_id, 1.0)
    with pytest.raises(SsoError, match="expired or is unknown"):
        logins.returned("0" * 32, 1.0)


@pytest.mark.parametrize("token", ["", "x" * TOKEN_CHARS + "y", "!" * TOKEN_CHARS, "é" * 40])
def test_malformed_tokens(token: str) -> None:
    logins = counter_bytes()
    with pytest.raises(SsoError, match="malformed"):
        logins.redeem(returned(logins), token, 1.0)


def test_unknown_token() -> None:
    logins = counter_bytes()
    with pytest.raises(SsoError, match="unknown or expired"):
        logins.redeem(returned(logins), "a" * TOKEN_CHARS, 1.0)


def test_refusal_token_carries_the_reason() -> None:
    logins = counter_bytes()
    login_id = returned(logins)
    token = logins.issue_refusal(login_id, "the token is for another audience", 1.0)
    with pytest.raises(SsoError, match="another audience"):
        logins.redeem(login_id, token, 2.0)


def test_bounded_and_forgotten() -> None:
    counter = itertools.count()
    logins = SsoLogins(random_bytes=lambda n: next(counter).to_bytes(n, "big"), max_logins=3)
    ids = [logins.begin(mode=SsoMode.EMBEDDED, client_key=None, now=0.0) for _ in range(3)]
    with pytest.raises(SsoError, match="too many"):  # Full: refused, nobody's login dropped.
        logins.begin(mode=SsoMode.EMBEDDED, client_key=None, now=0.0)
    assert len(logins) == 3
    logins.mode(ids[0], 0.0)
    logins.forget(ids[-1])
    assert len(logins) == 2


def test_a_login_is_started_once() -> None:
    # Someone who learnt a login_id (it travels in URLs) cannot replace its PKCE verifier or
    # request ID by visiting the start URL again.
    logins = SsoLogins(random_bytes=lambda n: b"\x01" * n)
    login = logins.begin(mode=SsoMode.EMBEDDED, client_key=None, now=0.0)
    logins.started(login, b"first", 1.0)
    with pytest.raises(SsoError, match="already started"):
        logins.started(login, b"second", 2.0)
    assert logins.returned(login, 3.0) == b"first"
