"""Acceptance: the HTTP front door as ocserv ≥ 1.2 presents it (issue 12 §5).

* ``included-http-headers``: the security headers of ocserv's ``doc/sample.config`` (the OWASP list
  its ``add_owasp_headers`` in ``src/worker-http.c`` copies into every response) reach openconnect
  in every response of the login, as its ``--dump-http-traffic`` output shows.
* ``camouflage``: without ``?SECRET`` in the URL openconnect meets an ordinary password-protected
  web server (``401`` with the realm, ``404`` without one; ``src/worker-http.c`` ``response_401``,
  ``response_404``); with ``https://host/?SECRET`` it logs in and its tunnel comes up with the
  cookie; a CONNECT with a bad cookie gets ``405`` rather than the VPN's own refusal.

ocserv 1.1.6 already sends ``included-http-headers``; camouflage arrived in ocserv 1.2.0, so those
tests are skipped against it.
"""

from __future__ import annotations

import re

import pytest

from ._openconnect import OpenConnectRunner
from ._rawclient import open_conn
from ._server import ServerKind, StartServer, server_kind

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

# ocserv doc/sample.config (1.2 and later), "HTTP headers": the values exactly as shipped.
OCSERV_SECURITY_HEADERS = (
    ("Strict-Transport-Security", "max-age=31536000 ; includeSubDomains"),
    ("X-Frame-Options", "deny"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'"),
    ("X-Permitted-Cross-Domain-Policies", "none"),
    ("Referrer-Policy", "no-referrer"),
    ("Clear-Site-Data", '"cache","cookies","storage"'),
    ("Cross-Origin-Embedder-Policy", "require-corp"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("X-XSS-Protection", "0"),
    ("Pragma", "no-cache"),
    ("Cache-control", "no-store, no-cache"),
)
SECRET = "s3cr3t-Path"
REALM = "Restricted Content"
_NO_CAMOUFLAGE = pytest.mark.skipif(
    server_kind() is ServerKind.OCSERV,
    reason="ocserv 1.1.6 has no camouflage (added in ocserv 1.2.0)",
)
_DUMP = ("-v", "-v", "--dump-http-traffic")


def _responses(stderr: str) -> list[list[str]]:
    """The header lines of each HTTP response in openconnect's ``--dump-http-traffic`` output."""
    responses: list[list[str]] = []
    inside = False
    for line in stderr.splitlines():
        if line.startswith("Got HTTP response:"):
            responses.append([])
            inside = True
        elif line.startswith("HTTP body length") or not line.strip():
            inside = False
        elif inside and ":" in line:
            responses[-1].append(line.rstrip())
    return responses


def test_security_headers_on_every_response(
    start_gateway: StartServer, openconnect: OpenConnectRunner
) -> None:
    lines = [f"{name}: {value}" for name, value in OCSERV_SECURITY_HEADERS]
    server = start_gateway({"included-http-headers": lines})
    result = openconnect.authenticate(
        server, user="alice", stdin="alicepass\n", mode="--authenticate", extra=_DUMP
    )
    assert result.returncode == 0, result.describe()
    assert result.cookie, result.describe()
    responses = _responses(result.stderr)
    assert len(responses) >= 2, f"expected the form and the cookie\n{result.describe()}"
    for headers in responses:
        for line in lines:
            assert line in headers, f"{line!r} missing from a response\n{result.describe()}"
    # ocgate adds them to the 200 CONNECTED as well; openconnect still brings the tunnel up.
    client = openconnect.connect(server, cookie=result.cookie)
    env = client.wait_env()
    assert env.get("INTERNAL_IP4_ADDRESS"), client.describe()


@_NO_CAMOUFLAGE
def test_camouflage_hides_the_vpn_without_the_secret(
    start_gateway: StartServer, openconnect: OpenConnectRunner
) -> None:
    server = start_gateway(
        {"camouflage": "true", "camouflage_secret": f'"{SECRET}"', "camouflage_realm": f'"{REALM}"'}
    )
    offset = server.log_size()
    result = openconnect.authenticate(
        server, user="alice", stdin="alicepass\n", mode="--cookieonly", extra=_DUMP
    )
    assert result.returncode != 0, result.describe()
    assert not result.stdout.strip(), f"a cookie was printed\n{result.describe()}"
    assert "Got HTTP response: HTTP/1.1 401 Unauthorized" in result.stderr, result.describe()
    assert f'WWW-Authenticate: Basic realm="{REALM}"' in _responses(result.stderr)[0], (
        result.describe()
    )
    # Nothing of the VPN: no AggAuth body ("< " marks received body lines), no VPN header.
    assert "< <config-auth" not in result.stderr, f"the VPN showed itself\n{result.describe()}"
    assert not any("X-Transcend-Version" in h for r in _responses(result.stderr) for h in r)
    server.wait_log(re.compile(r"event=camouflage .*no secret"), since=offset, timeout=10)

    # A wrong secret is no secret.
    wrong = _Url(server.url + "?wrong", server.pin)
    result = openconnect.authenticate(wrong, user="alice", stdin="alicepass\n", extra=_DUMP)
    assert result.returncode != 0, result.describe()
    assert "401 Unauthorized" in result.stderr, result.describe()
    server.assert_alive()


@_NO_CAMOUFLAGE
def test_camouflage_lets_the_secret_url_log_in_and_connect(
    start_gateway: StartServer, openconnect: OpenConnectRunner
) -> None:
    server = start_gateway(
        {"camouflage": "true", "camouflage_secret": f'"{SECRET}"', "camouflage_realm": f'"{REALM}"'}
    )
    secret_url = _Url(f"{server.url}?{SECRET}", server.pin)
    result = openconnect.authenticate(
        secret_url, user="alice", stdin="alicepass\n", mode="--cookieonly"
    )
    assert result.returncode == 0, result.describe()
    assert result.cookie, result.describe()
    # The tunnel's CONNECT carries the cookie, not the secret: the gate lets it through.
    client = openconnect.connect(secret_url, user="alice", password="alicepass")
    env = client.wait_env()
    assert env.get("INTERNAL_IP4_ADDRESS"), client.describe()
    assert SECRET not in server.log_text(), "the secret must not be logged"


@_NO_CAMOUFLAGE
def test_camouflage_without_realm_is_404_and_bad_cookie_is_405(
    start_gateway: StartServer,
) -> None:
    server = start_gateway({"camouflage": "true", "camouflage_secret": SECRET})
    conn = open_conn(server.pair.client, server.host, server.port, pin=server.pin)
    try:
        response = conn.request("GET", "/")
        assert response is not None
        assert response.status == 404, response
        assert b"404 Not Found" in response.body
        assert response.header("X-Transcend-Version") is None
        assert conn.wait_closed(), "the camouflage answer closes the connection"
    finally:
        conn.close()
    conn = open_conn(server.pair.client, server.host, server.port, pin=server.pin)
    try:
        response = conn.request(
            "CONNECT", "/CSCOSSLC/tunnel", headers=(("Cookie", "webvpn=not-a-cookie"),)
        )
        assert response is not None
        assert response.status == 405, response
    finally:
        conn.close()


class _Url:
    """An endpoint with another URL (the secret appended) and the server's pin."""

    def __init__(self, url: str, pin: str) -> None:
        self.url = url
        self.pin = pin
