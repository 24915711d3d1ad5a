"""CONNECT rules at the authentication service (hostile-peers issue §4, §5).

* Two CONNECTs racing with one cookie: the later claim wins, the earlier tunnel's ``TunnelUp`` is
  refused, so a session never has two tunnels (the end-to-end race is in
  ``tests/interop/test_processes.py``).
* ``max-same-clients`` holds at CONNECT: above 1 an extra session's CONNECT is refused; at 1 the
  newest session replaces the other one.
* A certificate session's cookie needs its certificate (``tests/interop/test_cert_reload.py`` has
  the end-to-end tests with a CRL reload).
* ``strap = required``: a CONNECT must sign its TLS connection with the session's key, which then
  rotates to the key it brings (the signatures themselves are ``tests/unit/gateway/test_strap.py``;
  openconnect's are ``tests/interop/test_strap.py``).
"""

from __future__ import annotations

import base64
import dataclasses
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ocgate.config import Config, parse_config
from ocgate.daemon._auth import AuthService
from ocgate.errors import InvalidCookie, ResourceError
from ocgate.gateway import SessionSettings
from ocgate.ipc import messages as m
from ocgate.session import Session
from tests.pki import make_pki


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


def _service(config: Config, tmp_path: Path) -> AuthService:
    return AuthService(config, store_path=str(tmp_path / "sessions.sqlite"))


def _login(service: AuthService, config: Config) -> tuple[str, Session]:
    cookie, session = service.store.create(
        username="alice", groups=("eng",), group="eng", now=time.time(), user_agent="oc",
        remote_addr="198.18.0.2", cookie_timeout=300, session_timeout=None,
    )  # fmt: skip
    session.extra["settings"] = SessionSettings(config=config)
    return str(cookie), session


def _up(service: AuthService, worker: int, sid: str, tunnel_id: int) -> bool:
    return service.tunnel_up(
        worker,
        m.TunnelUp(
            sid=sid,
            tunnel_id=tunnel_id,
            device="vpns0",
            remote="198.18.0.2",
            local="",
            user_agent="oc",
        ),
    )


def test_two_racing_connects_yield_one_tunnel(config: Config, tmp_path: Path) -> None:
    service = _service(config, tmp_path)
    cookie, session = _login(service, config)
    service.claim(0, m.ClaimSession(cookie=cookie, tunnel_id=11))
    service.claim(1, m.ClaimSession(cookie=cookie, tunnel_id=22))  # Before the first is up.
    assert not _up(service, 0, session.sid, 11)  # The earlier claim lost.
    assert _up(service, 1, session.sid, 22)
    assert [(o.worker, o.tunnel_id) for o in service.owners.values()] == [(1, 22)]


def test_max_same_clients_above_one_refuses_an_extra_session(
    config: Config, tmp_path: Path
) -> None:
    limited = dataclasses.replace(config, max_same_clients=2)
    service = _service(limited, tmp_path)
    cookies = [_login(service, limited)[0] for _ in range(3)]
    service.claim(0, m.ClaimSession(cookie=cookies[0], tunnel_id=1))
    service.claim(0, m.ClaimSession(cookie=cookies[1], tunnel_id=2))
    with pytest.raises(ResourceError, match=r"max-same-clients \(2\)"):
        service.claim(0, m.ClaimSession(cookie=cookies[2], tunnel_id=3))
    service.claim(0, m.ClaimSession(cookie=cookies[0], tunnel_id=4))  # Its own reconnect: fine.


def test_max_same_clients_one_lets_the_newest_session_replace_the_other(
    config: Config, tmp_path: Path
) -> None:
    limited = dataclasses.replace(config, max_same_clients=1)
    service = _service(limited, tmp_path)
    old_cookie, _old = _login(service, limited)
    new_cookie, new = _login(service, limited)
    service.claim(0, m.ClaimSession(cookie=old_cookie, tunnel_id=1))
    service.claim(0, m.ClaimSession(cookie=new_cookie, tunnel_id=2))
    assert new.sid in service.owners
    with pytest.raises(InvalidCookie):  # The older session ended with its cookie.
        service.store.lookup(old_cookie, time.time())


def test_a_certificate_session_needs_its_certificate(config: Config, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "client-pki")
    cert_config = dataclasses.replace(config, cisco_client_compat=False)
    service = _service(cert_config, tmp_path)
    cookie, session = _login(service, cert_config)
    alice = pki.alice.cert.public_bytes(Encoding.DER)
    bob = pki.bob.cert.public_bytes(Encoding.DER)
    session.extra["cert_chain"] = (alice,)
    with pytest.raises(InvalidCookie, match="another certificate"):
        service.claim(0, m.ClaimSession(cookie=cookie, tunnel_id=1, peer_chain=[bob]))
    with pytest.raises(InvalidCookie, match="without its certificate"):
        service.claim(0, m.ClaimSession(cookie=cookie, tunnel_id=1))


def _strap_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return private, public


def _strap_connect(
    cookie: str, signer: ec.EllipticCurvePrivateKey, new: bytes, tunnel_id: int
) -> m.ClaimSession:
    """A CONNECT that signs its TLS ``Finished`` and its new key (openconnect's construction)."""
    finished = bytes([tunnel_id]) * 12  # Each TLS connection has its own.
    signature = signer.sign(finished + new, ec.ECDSA(hashes.SHA256()))
    return m.ClaimSession(
        cookie=cookie,
        tunnel_id=tunnel_id,
        strap_finished=finished,
        strap_verify=base64.b64encode(signature).decode(),
        strap_pubkey=base64.b64encode(new).decode(),
    )


def test_strap_required_needs_the_session_s_key_which_then_rotates(
    config: Config, tmp_path: Path
) -> None:
    strap_config = dataclasses.replace(config, strap="required")
    service = _service(strap_config, tmp_path)
    cookie, session = _login(service, strap_config)
    login_private, login_key = _strap_key()
    session.extra["strap_key"] = login_key
    with pytest.raises(InvalidCookie, match="no STRAP signature"):
        service.claim(0, m.ClaimSession(cookie=cookie, tunnel_id=1))
    next_private, next_key = _strap_key()
    service.claim(0, _strap_connect(cookie, login_private, next_key, 2))
    assert session.extra["strap_key"] == next_key
    _, later_key = _strap_key()
    with pytest.raises(InvalidCookie, match="does not verify"):  # The login's key is spent.
        service.claim(0, _strap_connect(cookie, login_private, later_key, 3))
    service.claim(0, _strap_connect(cookie, next_private, later_key, 4))
    assert session.extra["strap_key"] == later_key
