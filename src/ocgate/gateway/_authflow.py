"""The authentication flow of one connection: which form comes next, and when a login is done.

Theory of operation (ocserv ``src/worker-auth.c``, ``src/auth/plain.c``, ``src/auth/radius.c``;
anyconnect-protocol §3.5, §3.9). The flow is a small state machine:

``CREDENTIALS`` (username + password form)
    → ``OTP`` when an OTP users file is configured: ``<auth id="challenge">`` with a
      ``secondary_password`` input and "Please enter your OTP password." (openconnect's
      ``--token-mode`` fills it);
    → ``CHALLENGE`` on a RADIUS Access-Challenge: the same kind of form with the Reply-Message;
      the answer goes back with the challenge's State (up to 16 rounds, enforced by the RADIUS
      client);
    → done.

A client certificate is examined once per connection (:meth:`LoginFlow.begin`): if a certificate
alone is an accepted alternative and it verifies, the login is done without any form; if an
alternative needs certificate *and* password, the verified identity is kept and the typed user
must equal it; if no alternative works without a certificate and it does not verify, the login
fails at once (:class:`~ocgate.errors.AuthFailed`). Every refusal carries a log-only reason.

Single sign-on (``oidc``/``saml``, :mod:`ocgate.gateway._sso`): when an alternative is the SSO
method alone, or certificate AND SSO with a verified certificate, :meth:`LoginFlow.begin` answers
``Step.SSO`` (the sso-v2 form) if the client can do SSO or no password alternative is left; the
identity the provider vouched for is accepted by :meth:`LoginFlow.accept_sso`, which with a
certificate requires the SSO user to be the certificate's user (as for certificate AND password).

After a wrong OTP code the OTP form is shown again (the password stays accepted); after a
refused challenge answer the dialog starts over, because a RADIUS State is single-use.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ocgate.aggauth import AuthReply
from ocgate.auth import LoginContext, PasswordOk
from ocgate.certauth import CertIdentity, check_cert_user
from ocgate.errors import AuthFailed
from ocgate.radius import RadiusChallenge, RadiusResult

__all__ = [
    "OTP_PROMPT",
    "Accepted",
    "LoginBackends",
    "LoginFlow",
    "Prompt",
    "Step",
]

OTP_PROMPT = "Please enter your OTP password."
CREDENTIALS_PROMPT = "Please enter your username and password."
SSO_PROMPT = "Please complete the authentication process in the browser."


class Step(enum.Enum):
    """Which form the client was last shown."""

    CREDENTIALS = "credentials"
    OTP = "otp"
    CHALLENGE = "challenge"
    SSO = "sso"


@dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    """Show a form for ``step`` with ``message``."""

    step: Step
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """The login is complete.

    :param username: the authenticated user.
    :param groups: the groups the user may select (backend or certificate groups).
    :param radius: the Access-Accept, with RADIUS.
    :param cert: the verified certificate identity, if one was used.
    :param method: a label for the log and metrics (``password``, ``otp``, ``certificate``, …).
    """

    username: str
    groups: tuple[str, ...] = ()
    radius: RadiusResult | None = None
    cert: CertIdentity | None = None
    method: str = "password"


class LoginBackends(Protocol):
    """What the flow needs from :class:`ocgate.auth.AuthBackends`."""

    @property
    def cert_alone(self) -> bool: ...
    @property
    def cert_and_password(self) -> bool: ...
    @property
    def password_alone(self) -> bool: ...
    @property
    def has_otp(self) -> bool: ...
    @property
    def sso_alone(self) -> bool: ...
    @property
    def cert_and_sso(self) -> bool: ...

    async def check_password(
        self,
        username: str,
        password: str,
        ctx: LoginContext,
        challenge: RadiusChallenge | None = None,
    ) -> PasswordOk | RadiusChallenge: ...

    async def check_otp(self, username: str, code: str) -> None: ...

    def verify_certificate(self, chain: Sequence[bytes]) -> CertIdentity: ...


@dataclass(slots=True)
class _Pending:
    username: str
    ok: PasswordOk | None = None
    challenge: RadiusChallenge | None = None


class LoginFlow:
    """The state of one connection's login.

    :param backends: the configured backends.
    :param ctx: the client's addresses and user agent (for RADIUS).
    :param peer_chain: returns the client's certificate chain (DER, leaf first).
    """

    def __init__(
        self,
        backends: LoginBackends,
        ctx: LoginContext,
        peer_chain: Callable[[], Sequence[bytes]] = tuple,
    ) -> None:
        self._backends = backends
        self._peer_chain = peer_chain
        self.ctx = ctx
        self.step = Step.CREDENTIALS
        self._pending: _Pending | None = None
        self._checked_cert = False
        self._identity: CertIdentity | None = None
        self.cert_refusal: str | None = None
        """Why the presented certificate was refused (for the log), if it was."""

    @property
    def identity(self) -> CertIdentity | None:
        """The verified certificate identity, once :meth:`begin` found one."""
        return self._identity

    @property
    def pending_user(self) -> str | None:
        """The user whose OTP code or challenge answer is awaited."""
        return self._pending.username if self._pending is not None else None

    def _check_certificate(self) -> CertIdentity | None:
        """Verify the client's certificate once per connection (when any alternative uses one)."""
        backends = self._backends
        uses_cert = backends.cert_alone or backends.cert_and_password or backends.cert_and_sso
        if not self._checked_cert and uses_cert:
            self._checked_cert = True
            try:
                self._identity = backends.verify_certificate(self._peer_chain())
            except AuthFailed as exc:
                self.cert_refusal = str(exc)
        return self._identity

    def begin(self, *, sso_capable: bool = False) -> Accepted | Prompt:
        """Start (or restart) the dialog.

        :param sso_capable: the client can do an sso-v2 login (it said so, or is Cisco's).
        :raises AuthFailed: every alternative needs a certificate and none verified.
        """
        backends = self._backends
        self.restart()
        identity = self._check_certificate()
        if identity is not None and backends.cert_alone:
            return Accepted(username=identity.username, groups=identity.groups, cert=identity,
                            method="certificate")  # fmt: skip
        sso = backends.sso_alone or (identity is not None and backends.cert_and_sso)
        if identity is None and not backends.password_alone and not sso:
            raise AuthFailed(f"certificate required: {self.cert_refusal or 'no certificate'}")
        password = backends.password_alone or (identity is not None and backends.cert_and_password)
        if sso and (sso_capable or not password):
            self.step = Step.SSO
            return Prompt(step=Step.SSO, message=SSO_PROMPT)
        return Prompt(step=Step.CREDENTIALS, message=CREDENTIALS_PROMPT)

    def accept_sso(self, username: str, groups: tuple[str, ...], method: str) -> Accepted:
        """The SSO provider vouched for ``username``: the login is done.

        :raises AuthFailed: SSO is not part of any usable alternative now, or (certificate AND
            SSO) the certificate is for another user.
        """
        backends = self._backends
        identity = self._identity
        if backends.sso_alone:
            self.restart()
            return Accepted(username=username, groups=groups, method=method)
        if identity is None or not backends.cert_and_sso:
            raise AuthFailed(f"certificate required: {self.cert_refusal or 'no certificate'}")
        check_cert_user(identity, username)
        self.restart()
        return Accepted(
            username=username, groups=groups, cert=identity, method=f"certificate+{method}"
        )

    def restart(self) -> None:
        """Back to the credentials form (the certificate verdict is kept)."""
        self.step = Step.CREDENTIALS
        self._pending = None

    def _bound_identity(self) -> CertIdentity | None:
        """The certificate the password step must match (certificate AND password)."""
        if self._identity is not None and self._backends.cert_and_password:
            return self._identity
        return None

    async def submit(self, reply: AuthReply) -> Accepted | Prompt:
        """Process an ``auth-reply`` for the current step.

        :raises AuthFailed: the step's check failed (log-only reason); call
            :meth:`after_failure` before showing the next form.
        """
        if self.step is not Step.CREDENTIALS and reply.username:
            self.restart()  # The client started over with a fresh credentials form.
        if self.step is Step.OTP:
            return await self._submit_otp(reply)
        if self.step is Step.CHALLENGE:
            return await self._submit_challenge(reply)
        return await self._submit_credentials(reply)

    async def _submit_credentials(self, reply: AuthReply) -> Accepted | Prompt:
        # A client may post its credentials on a new connection: check its certificate here too.
        if self._check_certificate() is None and not self._backends.password_alone:
            raise AuthFailed(f"certificate required: {self.cert_refusal or 'no certificate'}")
        identity = self._bound_identity()
        username = reply.username or ""
        if identity is not None:
            check_cert_user(identity, username)
            username = username or identity.username
        outcome = await self._backends.check_password(username, reply.password or "", self.ctx)
        return self._after_password(username, outcome)

    def _after_password(
        self, username: str, outcome: PasswordOk | RadiusChallenge
    ) -> Accepted | Prompt:
        if isinstance(outcome, RadiusChallenge):
            self._pending = _Pending(username=username, challenge=outcome)
            self.step = Step.CHALLENGE
            return Prompt(step=Step.CHALLENGE, message=outcome.message)
        if self._backends.has_otp:
            self._pending = _Pending(username=outcome.username, ok=outcome)
            self.step = Step.OTP
            return Prompt(step=Step.OTP, message=OTP_PROMPT)
        return self._accepted(outcome, "password")

    def _accepted(self, ok: PasswordOk, method: str) -> Accepted:
        # With certificate AND password the groups are the password backend's; the dialog then
        # also wants the chosen one in the certificate (ocserv sec-mod ``check_group``).
        identity = self._bound_identity()
        groups = ok.groups
        self.restart()
        if identity is not None:
            method = f"certificate+{method}"
        return Accepted(
            username=ok.username, groups=groups, radius=ok.radius, cert=identity, method=method
        )

    async def _submit_otp(self, reply: AuthReply) -> Accepted | Prompt:
        pending = self._pending
        if pending is None or pending.ok is None:  # pragma: no cover - set with Step.OTP.
            raise AuthFailed("OTP answer without a pending login")
        code = reply.secondary_password or reply.password or ""
        await self._backends.check_otp(pending.username, code.strip())
        return self._accepted(pending.ok, "otp")

    async def _submit_challenge(self, reply: AuthReply) -> Accepted | Prompt:
        pending = self._pending
        if pending is None or pending.challenge is None:  # pragma: no cover - set with CHALLENGE.
            raise AuthFailed("challenge answer without a pending challenge")
        answer = reply.secondary_password or reply.password or ""
        outcome = await self._backends.check_password(
            pending.username, answer, self.ctx, challenge=pending.challenge
        )
        return self._after_password(pending.username, outcome)

    def after_failure(self) -> Prompt:
        """The form to show after a refused step: the OTP or SSO form again, else the
        credentials."""
        if self.step is Step.OTP:
            return Prompt(step=Step.OTP, message=OTP_PROMPT)
        if self.step is Step.SSO:
            return Prompt(step=Step.SSO, message=SSO_PROMPT)
        self.restart()
        return Prompt(step=Step.CREDENTIALS, message=CREDENTIALS_PROMPT)
