"""deny-roaming at the authentication service: a cookie is good only from the login's address.

ocserv ``src/main-auth.c`` (``handle_auth_cookie_req``) refuses a cookie re-used from another IP
when the session's ``deny-roaming`` (global, or from its per-user/per-group file) is set. The
end-to-end test with openconnect is ``tests/interop/test_policy_keys.py``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config
from ocgate.daemon._auth import AuthService
from ocgate.errors import InvalidCookie
from ocgate.gateway import SessionSettings
from ocgate.ipc import messages as m
from ocgate.session import Session
from tests.pki import make_pki

LOGIN = "198.18.0.2"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "passwd").write_text("alice:eng:$5$x$y\n")
    text = (
        f'auth = "plain[passwd={tmp_path}/passwd]"\n'
        f"server-cert = {pki.server.cert_path}\nserver-key = {pki.server.key_path}\n"
        "ipv4-network = 10.77.0.0/24\n"
    )
    return parse_config(text, source=str(tmp_path / "ocserv.conf"))


def _login(service: AuthService, session_config: Config) -> tuple[str, Session]:
    cookie, session = service.store.create(
        username="alice", groups=("eng",), group="eng", now=time.time(), user_agent="oc",
        remote_addr=LOGIN, cookie_timeout=300, session_timeout=None,
    )  # fmt: skip
    session.extra["settings"] = SessionSettings(config=session_config)
    session.extra["login_address"] = LOGIN
    return str(cookie), session


def _claim(service: AuthService, cookie: str, remote: str, tunnel_id: int) -> str:
    """Claim the session (a CONNECT); return the id of the session now owned by that tunnel."""
    service.claim(1, m.ClaimSession(cookie=cookie, tunnel_id=tunnel_id, remote=remote))
    (sid,) = [sid for sid, o in service.owners.items() if o.tunnel_id == tunnel_id]
    return sid


@pytest.mark.parametrize("remote", ["198.18.0.6", "2001:db8::2", ""])
def test_a_cookie_from_another_address_is_refused(
    config: Config, tmp_path: Path, remote: str
) -> None:
    service = AuthService(config, store_path=str(tmp_path / "sessions.sqlite"))
    cookie, session = _login(service, dataclasses.replace(config, deny_roaming=True))
    with pytest.raises(InvalidCookie, match="another address"):
        service.claim(1, m.ClaimSession(cookie=cookie, tunnel_id=1, remote=remote))
    assert session.sid not in service.owners  # Nothing was leased or claimed.
    # From the address that logged in (also written as an IPv4-mapped IPv6 address): accepted.
    assert _claim(service, cookie, LOGIN, 2) == session.sid
    assert _claim(service, cookie, f"::ffff:{LOGIN}", 3) == session.sid


def test_without_deny_roaming_a_cookie_roams(config: Config, tmp_path: Path) -> None:
    service = AuthService(config, store_path=str(tmp_path / "sessions.sqlite"))
    cookie, session = _login(service, config)
    assert _claim(service, cookie, "198.18.0.6", 1) == session.sid


def test_the_session_s_own_setting_decides(config: Config, tmp_path: Path) -> None:
    # deny-roaming = true globally, a per-user "deny-roaming = false" lifts it for this session.
    service = AuthService(
        dataclasses.replace(config, deny_roaming=True),
        store_path=str(tmp_path / "sessions.sqlite"),
    )
    cookie, session = _login(service, config)
    assert _claim(service, cookie, "198.18.0.6", 1) == session.sid
