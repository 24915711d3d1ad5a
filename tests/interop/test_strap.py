"""Acceptance of issue 13 §6: STRAP binds the session cookie to the client's key.

openconnect 9.01 sends ``X-AnyConnect-STRAP-Pubkey`` with its login requests and, on CONNECT,
``X-AnyConnect-STRAP-Verify`` (a signature over its TLS Finished message and its next key) with that
next key. ``--authenticate`` prints the private key beside the cookie
(``openconnect_strapkey=…; webvpn=…``) so that a later ``--cookie`` run can sign. With
``strap = required`` a cookie replayed without the key is refused like a bad cookie.
"""

from __future__ import annotations

import re

import pytest

from ._netns import NetnsPair
from ._openconnect import OpenConnectRunner
from ._server import SERVER_TUN4, Server, ServerKind, StartServer, server_kind
from ._traffic import ping

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(180),
    pytest.mark.skipif(server_kind() is ServerKind.OCSERV, reason="strap is an ocgate key"),
]

COOKIE_REJECTED = 2  # openconnect's exit status for "401 Cookie is not acceptable".


def _webvpn_only(cookie: str) -> str:
    match = re.search(r"webvpn=[^;\s]+", cookie)
    assert match, cookie
    return match.group(0)


def _with_other_key(cookie: str, other: str) -> str:
    """``cookie``'s session with the STRAP key of another login: a signature that cannot verify."""
    key = re.search(r"openconnect_strapkey=[^;\s]+", other)
    assert key, other
    return f"{key.group(0)}; {_webvpn_only(cookie)}"


def _login(server: Server, openconnect: OpenConnectRunner) -> str:
    auth = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    assert auth.returncode == 0, auth.describe()
    assert "openconnect_strapkey=" in auth.cookie, auth.describe()
    return auth.cookie


def test_openconnects_own_signature_verifies(
    start_gateway: StartServer, openconnect: OpenConnectRunner, netns_pair: NetnsPair
) -> None:
    server = start_gateway({"strap": "required"})
    client = openconnect.connect(server, user="alice", password="alicepass")
    client.wait_env()
    result = ping(netns_pair, netns_pair.client, SERVER_TUN4, count=3)
    assert result.received == 3, result.output
    assert "strap" not in server.log_text().lower(), server.describe()


def test_a_cookie_without_its_key_is_refused_under_required(
    start_gateway: StartServer, openconnect: OpenConnectRunner
) -> None:
    server = start_gateway({"strap": "required"})
    cookie, other = _login(server, openconnect), _login(server, openconnect)

    stolen = openconnect.connect(server, cookie=_webvpn_only(cookie))
    assert stolen.wait(30) == COOKIE_REJECTED, stolen.describe()
    assert "no STRAP signature (strap = required)" in server.log_text(), server.describe()
    forged = openconnect.connect(server, cookie=_with_other_key(cookie, other))
    assert forged.wait(30) == COOKIE_REJECTED, forged.describe()
    assert "STRAP signature does not verify" in server.log_text(), server.describe()

    # The client that holds the key connects with the same cookie.
    owner = openconnect.connect(server, cookie=cookie)
    owner.wait_env()
    server.assert_alive()


def test_optional_lets_a_client_without_strap_in_but_not_a_bad_signature(
    start_gateway: StartServer, openconnect: OpenConnectRunner
) -> None:
    server = start_gateway({"strap": "optional"})
    cookie, other = _login(server, openconnect), _login(server, openconnect)
    forged = openconnect.connect(server, cookie=_with_other_key(cookie, other))
    assert forged.wait(30) == COOKIE_REJECTED, forged.describe()
    # No signature at all (a client without STRAP) is let in under optional.
    plain = openconnect.connect(server, cookie=_webvpn_only(cookie))
    plain.wait_env()
    server.assert_alive()
