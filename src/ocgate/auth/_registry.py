"""The authentication backends a :class:`~ocgate.config.Config` asks for, built once at start.

Theory of operation: ocserv ANDs the ``auth`` lines and ORs the ``enable-auth`` lines
(``figure_auth_funcs``), so the configuration is a list of *alternatives*, each a set of methods:
the ``auth`` lines together, then each ``enable-auth`` line on its own. A login succeeds when one
alternative is satisfied. ``certificate``, one password method (``plain`` with optional OTP, or
``radius``) and one single sign-on method (``oidc`` or ``saml``, :mod:`ocgate.sso`, whose
provider the login services build) exist in ocgate; ``pam`` and ``gssapi`` are refused at start.

This module is the I/O adapter of the backends: hashing, the OTP users file (``flock`` and
``fsync``) run in a worker thread (:func:`asyncio.to_thread`) so they never stall the event loop;
RADIUS does its own asynchronous I/O.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - the adapter that moves blocking backend work off the event loop.
import datetime
import time  # noqa: TID251 - TOTP needs the wall clock; this is an adapter, not a core.
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ocgate.auth._base import AuthResult
from ocgate.auth._plain import PlainBackend
from ocgate.certauth import CertIdentity, CertPolicy, CertVerifier, load_cert_policy
from ocgate.config import AuthMethod, Config
from ocgate.errors import AuthFailed, ConfigError
from ocgate.otp import OtpVerifier
from ocgate.radius import (
    RadiusAccounting,
    RadiusAuthenticator,
    RadiusChallenge,
    RadiusResult,
    load_radius_config,
)

__all__ = [
    "OTP_WINDOW",
    "AuthBackends",
    "LoginContext",
    "PasswordOk",
    "build_accounting",
    "build_auth_backends",
]

OTP_WINDOW = 1
OTP_REPLAY_SECONDS = 30 * (2 * OTP_WINDOW + 2)
"""How long a code used on one node of a shared session store is refused on all of them (every
step it could still be accepted in, with 30-second steps, and one more)."""
"""TOTP steps accepted on each side of the current one (liboath's users-file default is 20;
one step each way is enough for clock skew and shrinks the guessing window)."""

_PASSWORD_METHODS = frozenset({"plain", "radius"})
SSO_METHODS = frozenset({"oidc", "saml"})
_SUPPORTED = frozenset({"plain", "radius", "certificate", *SSO_METHODS})


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginContext:
    """What RADIUS wants to know about the client (ocserv-compatibility §6)."""

    client_ip: str
    server_ip: str | None = None
    user_agent: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordOk:
    """The password step passed.

    :param username: the user as the backend knows it.
    :param groups: the groups the user may select.
    :param radius: the Access-Accept, with RADIUS.
    :param otp_only: the password was not checked (empty hash with an OTP file).
    """

    username: str
    groups: tuple[str, ...] = ()
    radius: RadiusResult | None = None
    otp_only: bool = False


class AuthAlternatives:
    """What the configured alternatives (``auth`` lines ANDed, ``enable-auth`` ORed) allow.

    Subclasses set ``alternatives``: each a set of method names, one satisfied set is a login.
    """

    alternatives: tuple[frozenset[str], ...]

    @property
    def cert_alone(self) -> bool:
        """A valid certificate alone is a login."""
        return frozenset({"certificate"}) in self.alternatives

    @property
    def cert_and_password(self) -> bool:
        """Some alternative needs a certificate and a password."""
        return any("certificate" in a and a - SSO_METHODS - {"certificate"}
                   for a in self.alternatives)  # fmt: skip

    @property
    def password_alone(self) -> bool:
        """Some alternative needs only a password."""
        return any("certificate" not in a and not a & SSO_METHODS for a in self.alternatives)

    @property
    def sso_alone(self) -> bool:
        """Some alternative needs only a single sign-on."""
        return any("certificate" not in a and a & SSO_METHODS for a in self.alternatives)

    @property
    def cert_and_sso(self) -> bool:
        """Some alternative needs a certificate and a single sign-on."""
        return any("certificate" in a and a & SSO_METHODS for a in self.alternatives)

    @property
    def sso_method(self) -> AuthMethod | None:
        """The configured ``oidc`` or ``saml`` method, if any."""
        return getattr(self, "_sso_method", None)


class AuthBackends(AuthAlternatives):
    """The configured backends and the alternatives they form.

    :param alternatives: each a set of method names; one satisfied set is a login.
    """

    def __init__(
        self,
        *,
        alternatives: Sequence[frozenset[str]],
        plain: PlainBackend | None = None,
        otp: OtpVerifier | None = None,
        radius: RadiusAuthenticator | None = None,
        cert: CertVerifier | None = None,
        sso: AuthMethod | None = None,
    ) -> None:
        self.alternatives = tuple(alternatives)
        self._sso_method = sso
        self.plain = plain
        self.otp = otp
        self.radius = radius
        self.cert = cert
        self.otp_first_use: Callable[[str, str, int], Awaitable[None]] | None = None
        """With a shared session store: records a code on every node, raising
        :class:`AuthFailed` if any node saw it already (``username, code, seconds``)."""

    def __repr__(self) -> str:
        names = [sorted(a) for a in self.alternatives]
        return f"AuthBackends({names})"

    @property
    def password_method(self) -> str | None:
        if self.radius is not None:
            return "radius"
        return "plain" if self.plain is not None else None

    @property
    def has_otp(self) -> bool:
        return self.otp is not None

    async def check_password(
        self,
        username: str,
        password: str,
        ctx: LoginContext,
        challenge: RadiusChallenge | None = None,
    ) -> PasswordOk | RadiusChallenge:
        """Check the password (or the answer to ``challenge``).

        :raises AuthFailed: refused; the message is for the log only.
        """
        if self.radius is not None:
            outcome = await self.radius.authenticate(
                username,
                password,
                client_ip=ctx.client_ip,
                user_agent=ctx.user_agent,
                session_id=ctx.session_id,
                server_ip=ctx.server_ip,
                challenge=challenge,
            )
            if isinstance(outcome, RadiusChallenge):
                return outcome
            return PasswordOk(username=outcome.username, groups=outcome.groups, radius=outcome)
        if self.plain is None:
            raise AuthFailed("no password method is configured")
        return await asyncio.to_thread(self._check_plain, self.plain, username, password)

    def _check_plain(self, plain: PlainBackend, username: str, password: str) -> PasswordOk:
        otp = self.otp
        if otp is not None:
            entry = plain.entry(username)
            if entry is not None and not entry.hash:
                # ocserv: an empty hash with an OTP file means "OTP only".
                self._require_otp_user(otp, username)
                return PasswordOk(username=entry.username, groups=entry.groups, otp_only=True)
        result: AuthResult = plain.authenticate(username, password)
        if otp is not None:
            self._require_otp_user(otp, result.username)
        return PasswordOk(username=result.username, groups=result.groups)

    @staticmethod
    def _require_otp_user(otp: OtpVerifier, username: str) -> None:
        try:
            known = otp.has_user(username)
        except ConfigError as exc:
            raise AuthFailed(f"OTP users file unusable: {exc}") from exc
        if not known:
            raise AuthFailed("OTP: unknown user (every user needs an OTP entry)")

    async def check_otp(self, username: str, code: str) -> None:
        """Check (and consume) a one-time password.

        :raises AuthFailed: wrong, replayed or malformed code, or no OTP entry.
        """
        if self.otp is None:
            raise AuthFailed("OTP is not configured")
        await asyncio.to_thread(self.otp.verify, username, code, time.time())
        if self.otp_first_use is not None:  # Another node's users file does not know this use.
            await self.otp_first_use(username, code, OTP_REPLAY_SECONDS)

    def verify_certificate(self, chain: Sequence[bytes]) -> CertIdentity:
        """Verify a client chain (leaf first, DER).

        :raises AuthFailed: no certificate method, no certificate, or the chain is refused.
        """
        if self.cert is None:
            raise AuthFailed("certificate authentication is not configured")
        if not chain:
            raise AuthFailed("no certificate")
        return self.cert.verify(chain, datetime.datetime.now(datetime.UTC))

    def file_groups(self) -> tuple[str, ...]:
        """The groups of the password file (``auto-select-group``); empty without one."""
        if self.plain is None:
            return ()
        try:
            return self.plain.all_groups()
        except AuthFailed:
            return ()


def _alternatives(config: Config) -> list[frozenset[str]]:
    alternatives = [frozenset(m.name for m in config.auth)]
    alternatives += [frozenset({m.name}) for m in config.enable_auth]
    return alternatives


def _unsupported(methods: Sequence[AuthMethod], source: str) -> None:
    for method in methods:
        if method.name not in _SUPPORTED:
            raise ConfigError(
                f"the {method.name!r} method is not supported by ocgate",
                key="auth",
                file=source,
                expected="plain, radius, certificate, oidc and saml",
            )


def build_auth_backends(config: Config) -> AuthBackends:
    """Load every configured backend (password file, OTP file, radcli config, CA and CRL).

    :raises ConfigError: an unsupported method or a backend that cannot be loaded.
    """
    methods = (*config.auth, *config.enable_auth)
    _unsupported(methods, config.source)
    plain = otp = radius = cert = None
    sso: AuthMethod | None = None
    for method in methods:
        if method.name in SSO_METHODS:
            sso = method  # Its provider is loaded with the login services (it needs the URL).
        elif method.name == "plain":
            plain = PlainBackend(method.params["passwd"])
            otp_file = method.params.get("otp")
            otp = OtpVerifier(otp_file, window=OTP_WINDOW) if otp_file else None
        elif method.name == "radius":
            radius = RadiusAuthenticator(load_radius_config(method.params))
        elif method.name == "certificate":
            if config.ca_cert is None:
                raise ConfigError(
                    "certificate authentication needs ca-cert",
                    key="ca-cert",
                    file=config.source,
                    expected="ca-cert = /path/to/ca.pem",
                )
            cert = load_cert_policy(
                CertPolicy(
                    ca_file=config.ca_cert,
                    crl_file=config.crl,
                    user_oid=config.cert_user_oid,
                    group_oid=config.cert_group_oid,
                )
            )
    return AuthBackends(
        alternatives=_alternatives(config), plain=plain, otp=otp, radius=radius, cert=cert, sso=sso
    )


def build_accounting(config: Config) -> RadiusAccounting | None:
    """The ``acct = radius[config=FILE]`` sender, or ``None`` without ``acct``.

    :raises ConfigError: an unsupported accounting method or a bad radcli config.
    """
    acct = config.acct
    if acct is None:
        return None
    if acct.name != "radius":
        raise ConfigError(
            f"accounting method {acct.name!r} is not supported by ocgate",
            key="acct",
            file=config.source,
            expected='acct = "radius[config=/etc/radcli/radiusclient.conf]"',
        )
    params = {k: v for k, v in acct.params.items() if k != "groupconfig"}
    return RadiusAccounting(load_radius_config(params))
