"""Profiles in the login dialog: manifest, webvpnc cookie, download by cookie (issue 13 §1-2).

Vectors: the manifest and cookie shapes are ocserv's (``src/worker-auth.c``
``OC_SUCCESS_MSG_FOOT_PROFILE`` and ``post_common_handler``) and an ASA's ``complete`` reply
(nccgroup/DroppedConnection ``files/loginxml``); the SHA-1 is recomputed here with hashlib.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from ocgate.auth import build_auth_backends
from ocgate.config import parse_config
from ocgate.gateway import LoginDialog, LoginServices
from ocgate.http import Request, Response
from ocgate.session import MemorySessionStore
from ocgate.tls import ServerCredentials

from .conftest import make_config_text
from .test_login_dialog import INIT, _cookie, _post, _reply

PROFILE = (
    b'<?xml version="1.0"?>\n<AnyConnectProfile xmlns="http://schemas.xmlsoap.org/encoding/"/>\n'
)
NVM = b'<?xml version="1.0"?>\n<NVMProfile><CollectorConfiguration><CollectorIP>192.0.2.1'
NVM += b"</CollectorIP></CollectorConfiguration></NVMProfile>\n"


def _services(directory: Path, extra: str) -> LoginServices:
    config = parse_config(make_config_text(directory, extra), source=str(directory / "t.conf"))
    return LoginServices(
        config=config,
        backends=build_auth_backends(config),
        store=MemorySessionStore(),
        credentials=ServerCredentials(sha1_hex="AB" * 20, pin_sha256="pin-sha256:x"),
        clock=lambda: 100.0,
        count_connected=lambda user: 0,
        end_session=lambda s, reason: None,
    )


def _send(dialog: LoginDialog, request: Request) -> Response:
    return asyncio.run(dialog.handle(request))


def _get(path: str, cookie: str | None) -> Request:
    headers: tuple[tuple[str, str], ...] = (("host", "vpn"), ("user-agent", "AnyConnect"))
    if cookie is not None:
        headers += (("cookie", f"webvpn={cookie}"),)
    return Request(method="GET", target=path, headers=headers, body=b"", http_version="1.1")


@pytest.fixture
def profiled(config_dir: Path) -> tuple[LoginServices, str, Response]:
    (config_dir / "corp.xml").write_bytes(PROFILE)
    (config_dir / "NVM_ServiceProfile.xml").write_bytes(NVM)
    extra = "user-profile = corp.xml\nservice-profile-nvm = NVM_ServiceProfile.xml\n"
    services = _services(config_dir, extra)
    dialog = LoginDialog(services, remote_addr="198.18.0.2")
    _send(dialog, _post(INIT))
    done = _send(dialog, _post(_reply("alice", "alicepass")))
    assert done.status == 200
    return services, _cookie(done), done


def test_manifest_lists_user_and_nvm_profiles_with_sha1(
    profiled: tuple[LoginServices, str, Response],
) -> None:
    done = profiled[2]
    doc = ET.fromstring(done.body)
    files = doc.findall("config/vpn-profile-manifest/vpn/file")
    listed = {f.get("service-type"): (f.findtext("uri"), f.findtext("hash")) for f in files}
    assert listed == {
        "user": ("/profiles/corp.xml", hashlib.sha1(PROFILE).hexdigest().upper()),
        "nvm": ("/profiles/NVM_ServiceProfile.xml", hashlib.sha1(NVM).hexdigest().upper()),
    }
    assert doc.find("config/vpn-profile-manifest/vpn").get("rev") == "1.0"
    assert doc.findtext("config/vpn-base-config/server-cert-hash") == "AB" * 20
    sha1 = hashlib.sha1(PROFILE).hexdigest().upper()
    webvpnc = [v for k, v in done.headers if k == "Set-Cookie" and v.startswith("webvpnc=bu")]
    assert webvpnc == [
        f"webvpnc=bu:/&p:t&iu:1/&sh:{'AB' * 20}"
        "&lu:/+CSCOT+/translation-table?textdomain%3DAnyConnect%26type%3Dmanifest"
        f"&fu:profiles%2Fcorp.xml&fh:{sha1}; path=/; Secure; HttpOnly"
    ]


@pytest.mark.parametrize("path", ["/profiles/corp.xml", "/CACHE/stc/profiles/corp.xml",
                                  "/profiles/corp.xml:8443", "/profiles%2Fcorp.xml"])  # fmt: skip
def test_download_with_cookie_under_both_url_forms(
    profiled: tuple[LoginServices, str, Response], path: str
) -> None:
    services, cookie, _done = profiled
    response = _send(LoginDialog(services, remote_addr="198.18.0.9"), _get(path, cookie))
    assert (response.status, response.body) == (200, PROFILE)
    assert ("Content-Type", "text/xml") in response.headers


def test_nvm_profile_is_served_by_its_name(profiled: tuple[LoginServices, str, Response]) -> None:
    services, cookie, _done = profiled
    dialog = LoginDialog(services, remote_addr="198.18.0.9")
    response = _send(dialog, _get("/profiles/NVM_ServiceProfile.xml", cookie))
    assert (response.status, response.body) == (200, NVM)


@pytest.mark.parametrize("cookie", [None, "", "not-a-session-cookie"])
def test_download_without_valid_cookie_is_refused(
    profiled: tuple[LoginServices, str, Response], cookie: str | None
) -> None:
    services = profiled[0]
    response = _send(
        LoginDialog(services, remote_addr="198.18.0.9"), _get("/profiles/corp.xml", cookie)
    )
    assert response.status == 401
    assert response.body == b""
    assert response.close


@pytest.mark.parametrize("name", ["other.xml", "..", "%2e%2e%2fetc%2fpasswd", ""])
def test_unknown_profile_name_is_404(
    profiled: tuple[LoginServices, str, Response], name: str
) -> None:
    services, cookie, _done = profiled
    response = _send(LoginDialog(services, remote_addr="198.18.0.9"),
                     _get(f"/profiles/{name}", cookie))  # fmt: skip
    assert response.status == 404


def test_no_profile_no_manifest(config_dir: Path) -> None:
    dialog = LoginDialog(_services(config_dir, ""), remote_addr="198.18.0.2")
    _send(dialog, _post(INIT))
    done = _send(dialog, _post(_reply("alice", "alicepass")))
    assert b"vpn-profile-manifest" not in done.body
    assert ("Set-Cookie", f"webvpnc=bu:/&p:t&iu:1/&sh:{'AB' * 20}; path=/; Secure; HttpOnly") in (
        done.headers
    )


def test_per_user_profile_replaces_the_global_one(config_dir: Path) -> None:
    (config_dir / "corp.xml").write_bytes(PROFILE)
    other = PROFILE.replace(b"/>", b"><ServerList/></AnyConnectProfile>")
    (config_dir / "alice.xml").write_bytes(other)
    users = config_dir / "users"
    users.mkdir()
    (users / "alice").write_text(f"user-profile = {config_dir}/alice.xml\n")
    services = _services(config_dir, f"user-profile = corp.xml\nconfig-per-user = {users}/\n")
    dialog = LoginDialog(services, remote_addr="198.18.0.2")
    _send(dialog, _post(INIT))
    done = _send(dialog, _post(_reply("alice", "alicepass")))
    sha1 = hashlib.sha1(other).hexdigest().upper()
    assert f'<uri>/profiles/alice.xml</uri><hash type="sha1">{sha1}</hash>'.encode() in done.body
    response = _send(LoginDialog(services, remote_addr="198.18.0.9"),
                     _get("/profiles/alice.xml", _cookie(done)))  # fmt: skip
    assert response.body == other
    refused = _send(LoginDialog(services, remote_addr="198.18.0.9"),
                    _get("/profiles/corp.xml", _cookie(done)))  # fmt: skip
    assert refused.status == 404
