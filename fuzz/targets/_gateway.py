"""Fixtures of the gateway-level targets (login, CONNECT): a parsed configuration and backends.

Imports ``ocgate``: import this module inside the target's ``atheris.instrument_imports()``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.pki import make_pki

from ocgate.auth import AuthAlternatives, LoginContext, PasswordOk
from ocgate.certauth import CertIdentity
from ocgate.config import Config, parse_config
from ocgate.errors import AuthFailed
from ocgate.radius import RadiusChallenge, RadiusResult

BASE = (
    "socket-file = /run/ocgate-fuzz.socket\n"
    "device = vpns\n"
    "ipv4-network = 10.77.0.0/24\n"
    "ipv6-network = fd77::/64\n"
    "udp-port = 443\n"
)


def gateway_config(extra: str = "") -> Config:
    """Parse a configuration whose files exist only while it is parsed (nothing is left behind)."""
    directory = Path(tempfile.mkdtemp(prefix="ocgate-fuzz-"))
    try:
        pki = make_pki(directory / "pki")
        (directory / "ocpasswd").write_text("alice:eng:*\n")
        text = (
            f'auth = "plain[passwd={directory}/ocpasswd]"\n'
            f"server-cert = {pki.server.cert_path}\n"
            f"server-key = {pki.server.key_path}\n" + BASE + extra
        )
        return parse_config(text, source="fuzz.conf")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


CERT_ALICE = CertIdentity(
    username="alice", groups=("eng",), subject="CN=alice", serial=1, fingerprint_sha256="00"
)


@dataclass
class FakeBackends(AuthAlternatives):
    """Fast, in-memory backends with the behaviours the login flow must handle.

    Passwords: alice/alice-pass (groups eng, ops; as in tests/vectors/http); bob/bobpass gets a
    RADIUS challenge answered by ``42``. OTP codes per user when ``otp`` is set. Records who
    passed which factor, so a target can check that no session exists without them.
    """

    alternatives: tuple[frozenset[str], ...] = (frozenset({"plain"}),)
    otp: dict[str, str] = field(default_factory=dict)
    cert: CertIdentity | None = None
    password_ok: set[str] = field(default_factory=set)
    otp_ok: set[str] = field(default_factory=set)
    cert_ok: set[str] = field(default_factory=set)

    @property
    def has_otp(self) -> bool:
        return bool(self.otp)

    async def check_password(
        self,
        username: str,
        password: str,
        ctx: LoginContext,
        challenge: RadiusChallenge | None = None,
    ) -> PasswordOk | RadiusChallenge:
        if challenge is not None:
            if challenge.state == b"s" and password == "42":
                self.password_ok.add(username)
                return PasswordOk(username=username, radius=RadiusResult(username=username))
            raise AuthFailed("radius: rejected")
        if (username, password) == ("alice", "alice-pass"):
            self.password_ok.add("alice")
            return PasswordOk(username="alice", groups=("eng", "ops"))
        if (username, password) == ("bob", "bobpass"):
            return RadiusChallenge(message="Code?", state=b"s")
        raise AuthFailed("wrong password")

    async def check_otp(self, username: str, code: str) -> None:
        if self.otp.get(username) != code:
            raise AuthFailed("OTP: wrong code or PIN")
        self.otp_ok.add(username)

    def verify_certificate(self, chain: Sequence[bytes]) -> CertIdentity:
        if not chain or self.cert is None:
            raise AuthFailed("no certificate")
        self.cert_ok.add(self.cert.username)
        return self.cert
