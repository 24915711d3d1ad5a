"""Acceptance: client-certificate login with the real openconnect (``--certificate``/``--sslkey``).

The test PKI (``tests/pki.py``) provides a trusted CA with a CRL, an unrelated CA, and users that
are valid, expired, revoked or issued by the unrelated CA.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pki import OID_UID, IssuedCert, Pki, make_pki

from ._openconnect import OpenConnectRunner
from ._server import Server, ServerKind, StartServer, server_kind

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(180),
    pytest.mark.skipif(server_kind() is ServerKind.OCSERV, reason="ocgate's certificate set-up"),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("client-pki"))


def _options(pki: Pki, auth: list[str]) -> dict[str, str | list[str] | None]:
    return {
        "auth": auth,
        "ca-cert": str(pki.ca.cert_path),
        "crl": str(pki.crl_path),
        "cert-user-oid": OID_UID.dotted_string,
    }


def _with_cert(
    openconnect: OpenConnectRunner,
    server: Server,
    cert: IssuedCert,
    *,
    user: str | None,
    stdin: str,
) -> tuple[int, str]:
    result = openconnect.authenticate(
        server,
        user=user,
        stdin=stdin,
        mode="--cookieonly",
        extra=["--certificate", str(cert.cert_path), "--sslkey", str(cert.key_path)],
    )
    return result.returncode, result.describe()


def test_certificate_only_login(
    start_gateway: StartServer, openconnect: OpenConnectRunner, pki: Pki
) -> None:
    server = start_gateway(_options(pki, ["certificate"]))
    code, text = _with_cert(openconnect, server, pki.alice, user=None, stdin="unused\n")
    assert code == 0, f"{text}\n{server.describe()}"
    server.wait_log(r"event=login user='alice' .*method=certificate", timeout=10)


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("stranger", "not signed by ca-cert"),
        ("expired", "expired"),
        ("revoked", "revoked"),
    ],
)
def test_bad_certificates_are_refused(
    start_gateway: StartServer, openconnect: OpenConnectRunner, pki: Pki, which: str, reason: str
) -> None:
    server = start_gateway(_options(pki, ["certificate"]))
    cert: IssuedCert = getattr(pki, which)
    code, text = _with_cert(openconnect, server, cert, user=None, stdin="unused\n")
    assert code != 0, text
    server.wait_log(rf"login-failed .*certificate required: {reason}", timeout=10)
    server.assert_alive()


def _passwd(tmp_path: Path) -> Path:
    return tmp_path / "server0" / "ocpasswd"


def test_certificate_and_password(
    start_gateway: StartServer, openconnect: OpenConnectRunner, pki: Pki, tmp_path: Path
) -> None:
    auth = ["certificate", f'"plain[passwd={_passwd(tmp_path)}]"']
    server = start_gateway(_options(pki, auth))
    code, text = _with_cert(openconnect, server, pki.alice, user="alice", stdin="alicepass\n")
    assert code == 0, f"{text}\n{server.describe()}"
    server.wait_log(r"event=login user='alice' .*method=certificate\+password", timeout=10)


def test_certificate_user_must_match_typed_user(
    start_gateway: StartServer, openconnect: OpenConnectRunner, pki: Pki, tmp_path: Path
) -> None:
    auth = ["certificate", f'"plain[passwd={_passwd(tmp_path)}]"']
    server = start_gateway(_options(pki, auth))
    code, text = _with_cert(openconnect, server, pki.alice, user="bob", stdin="bobpass\n")
    assert code != 0, text
    server.wait_log(r"login-failed user='bob'.*certificate is for user 'alice'", timeout=10)


def test_certificate_or_password_alternatives(
    start_gateway: StartServer, openconnect: OpenConnectRunner, pki: Pki, tmp_path: Path
) -> None:
    options = _options(pki, [f'"plain[passwd={_passwd(tmp_path)}]"'])
    options["enable-auth"] = "certificate"
    server = start_gateway(options)
    code, text = _with_cert(openconnect, server, pki.bob, user=None, stdin="unused\n")
    assert code == 0, f"{text}\n{server.describe()}"
    result = openconnect.authenticate(
        server, user="alice", stdin="alicepass\n", mode="--cookieonly"
    )
    assert result.returncode == 0, result.describe()
