"""Acceptance (issue 13 §1-3): profiles written by ``ocgate profile``, listed in the login's
manifest, downloaded by the real openconnect 9.01 in AnyConnect emulation.

openconnect downloads a profile only when given ``-x FILE`` (``--xmlconfig``). Seen live
(``--dump-http-traffic``): 9.01 takes the profile from the ``webvpnc`` cookie, as ocserv sets
it (``bu:/`` + ``fu:profiles%2FNAME``, hash ``fh:``), sends ``GET /profiles%2Fcorp.xml`` with
its session cookie, and writes the file only if its SHA-1 equals ``fh:``, the same digest as
the manifest's: a file on disk after the run means the hash matched. The manifest
itself and the refusal without a cookie are checked with a raw client. No Cisco client runs
here: what a Cisco client does with the ``nvm`` and ``vpn-mgmt`` entries is inference
(docs/profiles.md).
"""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path
from xml.etree.ElementTree import fromstring

import pytest

from ocgate.profiles import read_client, read_nvm, validate
from ocgate.profiles._cli import main as profile_main

from ._openconnect import OpenConnectRunner
from ._rawclient import _XML_HEADERS, Conn, _auth_reply, init_xml, open_conn
from ._server import POOL4, Server, ServerKind, StartServer, server_kind

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        server_kind() is ServerKind.OCSERV,
        reason="service-profile-nvm and service-profile-vpn-mgmt are ocgate keys",
    ),
]

CISCO_UA = "AnyConnect Linux_64 4.10.07061"


def _write_profiles(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """The three profiles, written by ``ocgate profile`` as an administrator would."""
    collector = str(ipaddress.ip_network(POOL4).network_address + 1)  # The gateway's tun end.
    client, mgmt, nvm = tmp_path / "corp.xml", tmp_path / "mgmt.xml", tmp_path / "nvm.xml"
    assert profile_main(["client", "-o", str(client), "--server", "Corp=192.0.2.1",
                         "--auto-vpn-policy", "--trusted-dns-domain", "corp.test",
                         "--always-on", "--connect-failure-policy", "closed",
                         "--captive-portal-remediation"]) == 0  # fmt: skip
    mgmt_argv = ["mgmt", "-o", str(mgmt), "--server", "Corp=192.0.2.1", "--auto-vpn-policy",
                 "--trusted-dns-server", "10.77.0.53"]  # fmt: skip
    assert profile_main(mgmt_argv) == 0
    collector_conf = tmp_path / "collector.conf"
    collector_conf.write_text("nvm-listen = udp://0.0.0.0:2055\n")
    assert profile_main(["nvm", "-c", str(collector_conf), "-o", str(nvm),
                         "--address", collector]) == 0  # fmt: skip
    return client, mgmt, nvm, collector


def _login(server: Server) -> tuple[str, bytes]:
    """An XML login on one connection: the cookie and the ``complete`` body."""
    conn = open_conn(server.pair.client, server.host, server.port, pin=server.pin)
    try:
        form = conn.request("POST", "/", headers=_XML_HEADERS, body=init_xml(server.url))
        assert form is not None
        assert form.status == 200
        doc = fromstring(form.body)
        auth = doc.find("auth")
        assert auth is not None
        reply = _auth_reply(auth, doc.find("opaque"), "alice", "alicepass")
        done = conn.request("POST", "/", headers=_XML_HEADERS, body=reply)
        assert done is not None
        assert done.status == 200, done
        token = fromstring(done.body).findtext("session-token")
        assert token
        return token, done.body
    finally:
        conn.close()


def _get(server: Server, path: str, cookie: str | None) -> tuple[int, bytes]:
    conn: Conn = open_conn(server.pair.client, server.host, server.port, pin=server.pin)
    try:
        headers = [("X-Transcend-Version", "1")]
        if cookie is not None:
            headers.append(("Cookie", f"webvpn={cookie}"))
        response = conn.request("GET", path, headers=headers)
        assert response is not None
        return response.status, response.body
    finally:
        conn.close()


def test_profiles_manifest_download_and_refusal(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    client, mgmt, nvm, collector = _write_profiles(tmp_path)
    server = start_gateway(
        {
            "user-profile": str(client),
            "service-profile-vpn-mgmt": str(mgmt),
            "service-profile-nvm": str(nvm),
        }
    )

    # openconnect in AnyConnect emulation downloads the user profile (-x) and checks its SHA-1
    # (openconnect 9.01 asks for /profiles%2Fcorp.xml, following the webvpnc cookie).
    downloaded = tmp_path / "client-side" / "profile.xml"
    downloaded.parent.mkdir()
    run = openconnect.authenticate(
        server, user="alice", stdin="alicepass\n",
        extra=["--useragent", CISCO_UA, "-x", str(downloaded), "-v"],
    )  # fmt: skip
    assert run.returncode == 0, run.describe()
    assert run.cookie, run.describe()
    assert downloaded.read_bytes() == client.read_bytes(), run.describe()
    server.wait_log(r"event=profile-download user='alice' .*profile='corp\.xml'", timeout=10)

    # The manifest: user, vpn-mgmt and nvm, each with the upper-case SHA-1 of the served file.
    cookie, body = _login(server)
    doc = fromstring(body)
    files = {
        f.get("service-type"): (f.findtext("uri") or "", f.findtext("hash") or "")
        for f in doc.iterfind("config/vpn-profile-manifest/vpn/file")
    }
    assert set(files) == {"user", "vpn-mgmt", "nvm"}
    for service, path in (("user", client), ("vpn-mgmt", mgmt), ("nvm", nvm)):
        uri, sha1 = files[service]
        assert sha1 == hashlib.sha1(path.read_bytes()).hexdigest().upper()
        status, served = _get(server, uri, cookie)
        assert (status, served) == (200, path.read_bytes())
    assert files["user"][1] == hashlib.sha1(downloaded.read_bytes()).hexdigest().upper()
    assert doc.findtext("config/vpn-base-config/server-cert-hash")

    # The ASA's URL form serves the same file; without a (valid) cookie nothing is served.
    assert _get(server, "/CACHE/stc/profiles/corp.xml", cookie) == (200, client.read_bytes())
    assert _get(server, "/profiles/corp.xml", None)[0] == 401
    assert _get(server, "/CACHE/stc/profiles/corp.xml", "0" * 40)[0] == 401

    # What was served reads back: the NVM profile names the collector, the others validate.
    status, nvm_served = _get(server, files["nvm"][0], cookie)
    validate("nvm", nvm_served)
    assert read_nvm(nvm_served).collector == collector
    assert fromstring(nvm_served).findtext("CollectorConfiguration/CollectorIP") == collector
    validate("client", downloaded.read_bytes())
    assert read_client(downloaded.read_bytes()).always_on
    validate("mgmt", mgmt.read_bytes())
