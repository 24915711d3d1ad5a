"""Certificates at reload and on cookie reconnect (hostile-peers issue §5), with real openconnect.

* A reload (SIGHUP) re-reads ``crl``: a certificate revoked in the new CRL is refused at the next
  login and on the reconnect of a session that logged in with it before the reload.
* With ``certificate`` authentication and ``cisco-client-compat = false``, a cookie is bound to the
  login's certificate: a reconnect with another (valid) certificate, or with none, is refused.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from tests.pki import OID_UID, IssuedCert, Pki, make_pki, write_crl

from ._openconnect import OpenConnectRunner
from ._server import Server, ServerKind, StartServer, server_kind

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(180),
    pytest.mark.skipif(server_kind() is ServerKind.OCSERV, reason="ocgate's certificate set-up"),
]

COOKIE_REJECTED = 2  # openconnect's exit status for "401 Cookie is not acceptable".


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def _cert_args(cert: IssuedCert) -> list[str]:
    return ["--certificate", str(cert.cert_path), "--sslkey", str(cert.key_path)]


def _start(start_gateway: StartServer, pki: Pki, crl: Path) -> Server:
    return start_gateway(
        {
            "auth": ["certificate"],
            "ca-cert": str(pki.ca.cert_path),
            "crl": str(crl),
            "cert-user-oid": OID_UID.dotted_string,
            "cisco-client-compat": "false",
        }
    )


def _cookie(openconnect: OpenConnectRunner, server: Server, cert: IssuedCert) -> str:
    auth = openconnect.authenticate(server, user=None, stdin="unused\n", extra=_cert_args(cert))
    assert auth.returncode == 0, f"{auth.describe()}\n{server.describe()}"
    assert auth.cookie, auth.describe()
    return auth.cookie


def test_a_crl_reload_revokes_the_next_login_and_the_cookie_reconnect(
    start_gateway: StartServer, openconnect: OpenConnectRunner, pki: Pki, tmp_path: Path
) -> None:
    crl = tmp_path / "crl.pem"
    shutil.copy(pki.crl_path, crl)
    server = _start(start_gateway, pki, crl)
    cookie = _cookie(openconnect, server, pki.alice)
    first = openconnect.connect(server, cookie=cookie, extra=_cert_args(pki.alice))
    first.wait_env()

    write_crl(pki.ca, crl, [pki.revoked.cert.serial_number, pki.alice.cert.serial_number])
    offset = server.log_size()
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("event=reloaded", since=offset, timeout=15)

    first.send_signal(signal.SIGKILL)  # The client vanishes; its session stays.
    first.wait(15)
    again = openconnect.connect(server, cookie=cookie, extra=_cert_args(pki.alice))
    assert again.wait(30) == COOKIE_REJECTED, f"{again.describe()}\n{server.describe()}"
    server.wait_log(r"revoked", since=offset, timeout=10)

    login = openconnect.authenticate(
        server, user=None, stdin="unused\n", extra=_cert_args(pki.alice)
    )
    assert login.returncode != 0, login.describe()
    assert not login.cookie, login.describe()
    assert _cookie(openconnect, server, pki.bob)  # Others still log in.
    server.assert_alive()


@pytest.mark.parametrize("other", ["bob", None], ids=["another-certificate", "no-certificate"])
def test_a_cookie_is_bound_to_its_certificate(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    pki: Pki,
    tmp_path: Path,
    other: str | None,
) -> None:
    server = _start(start_gateway, pki, pki.crl_path)
    cookie = _cookie(openconnect, server, pki.alice)
    extra = _cert_args(pki.bob) if other == "bob" else []
    offset = server.log_size()
    thief = openconnect.connect(server, cookie=cookie, extra=extra)
    assert thief.wait(30) != 0, thief.describe()
    assert not thief.env_file.exists()
    # Without a certificate the TLS handshake itself fails (the server requires one without
    # cisco-client-compat); with bob's, the CONNECT is refused.
    server.wait_log(
        r"event=connect-refused .*another certificate|peer did not return a certificate",
        since=offset,
        timeout=10,
    )
    owner = openconnect.connect(server, cookie=cookie, extra=_cert_args(pki.alice))
    owner.wait_env()  # The cookie still works with its own certificate.
