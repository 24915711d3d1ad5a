"""The rules a claim passes (:meth:`~ocgate.daemon._auth.AuthService.claim`).

A claim is a CONNECT with a session cookie (``claim``, and ``claim_pinged`` around it). Once the
cookie names a live session, :class:`ClaimRules` checks, in this order:

1. the virtual host (:meth:`ClaimRules.check_vhost`): a cookie is good only on the vhost it
   logged in to, chosen by the TLS server name of the CONNECT;
2. ``deny-roaming`` (:meth:`ClaimRules.check_roaming`): a cookie is good only from the address
   that logged in (ocserv ``src/main-auth.c`` ``handle_auth_cookie_req``);
3. the certificate (:meth:`ClaimRules.check_certificate`): a session that logged in with a
   certificate needs that certificate, still valid with the ``ca-cert`` and ``crl`` loaded now
   (ocserv binds the cookie to it; ``cisco-client-compat`` lets a client present none);
4. ``strap`` (:meth:`ClaimRules.check_strap`): the CONNECT signs its TLS connection with the
   login's key (openconnect's STRAP, :mod:`ocgate.gateway._strap`; ocserv ignores it);

then ``claim`` itself refuses a CONNECT beyond ``max-clients`` tunnels, and last

5. ``max-same-clients`` (:meth:`ClaimRules.check_same_clients`): the user's tunnels of other
   sessions, checked again because cookies outlive the login that checked them.

A refused claim raises :class:`~ocgate.errors.InvalidCookie` (rules 1 to 4) or
:class:`~ocgate.errors.ResourceError` (rule 5), which the service returns to the worker as
``Failed``. Two rules change state when they pass: ``strap`` keeps the key the CONNECT rotated to
in the session, and ``max-same-clients`` at a limit of 1 ends the user's other session.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable, Mapping

from ocgate.config import Config
from ocgate.errors import AuthFailed, InvalidCookie, ResourceError
from ocgate.gateway import LoginServices, SessionSettings, StrapProof, verify_strap
from ocgate.ipc import messages as m
from ocgate.session import Session, SessionStore

__all__ = ["ClaimRules"]

log = logging.getLogger("ocgate.secmod")


class ClaimRules:
    """The checks of a claim; the state they read is the service's.

    :param config: the service's configuration now (a reload replaces it).
    :param host_of: the configuration of the host a session logged in to (its vhost, else the
        default host).
    :param services_for: the login services of a host by vhost name (``""``: the default host).
    :param owners: the sessions that have a tunnel, by session id.
    :param store: the session store.
    :param end_session: ends a session for good (its tunnel, cookie and leases).
    """

    def __init__(
        self,
        *,
        config: Callable[[], Config],
        host_of: Callable[[Session], Config],
        services_for: Callable[[str], LoginServices],
        owners: Mapping[str, object],
        store: SessionStore,
        end_session: Callable[[Session, str], None],
    ) -> None:
        self._config = config
        self._host_of = host_of
        self._services_for = services_for
        self._owners = owners
        self._store = store
        self._end_session = end_session

    def check_vhost(self, session: Session, vhost: str) -> None:
        """A cookie is good only on the virtual host it logged in to (the TLS server name of the
        CONNECT chooses the same vhost): a session of one vhost never gets a tunnel, addresses
        or routes through another's certificate and policy.

        :raises InvalidCookie: the CONNECT came through another vhost.
        """
        own = self._host_of(session).vhost_name or ""
        if self._services_for(vhost) is self._services_for(own):
            return
        log.info(
            "event=vhost-refused user=%r session=%s vhost=%s connect_vhost=%s",
            session.username,
            session.sid,
            own or "default",
            vhost or "default",
        )
        raise InvalidCookie("cookie presented to another virtual host")

    def check_roaming(self, session: Session, remote: str) -> None:
        """``deny-roaming`` (global, per user, per group): a cookie is good only from the address
        that logged in (ocserv ``src/main-auth.c`` ``handle_auth_cookie_req``). The session stays
        usable from that address.

        :raises InvalidCookie: the CONNECT comes from another address.
        """
        settings = session.extra.get("settings")
        config = settings.config if isinstance(settings, SessionSettings) else self._config()
        if not config.deny_roaming:
            return
        login = session.extra.get("login_address", session.remote_addr)
        if isinstance(login, str) and _same_address(login, remote):
            return
        log.info(
            "event=roaming-refused user=%r session=%s login_remote=%s remote=%s",
            session.username,
            session.sid,
            login,
            remote or "?",
        )
        raise InvalidCookie("cookie re-used from another address (deny-roaming)")

    def check_certificate(self, session: Session, presented: list[bytes]) -> None:
        """A session that logged in with a certificate: that certificate, still valid now.

        Without ``cisco-client-compat`` the CONNECT must present the login's certificate (ocserv's
        rule: the cookie is bound to it). With it, a client that presents none is checked with
        the login's chain. Either way the chain is verified again with the ``ca-cert`` and
        ``crl`` loaded now, so a revocation read at a reload refuses the next reconnect.

        :raises InvalidCookie: the certificate differs, is missing or no longer valid.
        """
        stored = session.extra.get("cert_chain")
        if not isinstance(stored, tuple) or not stored:
            return
        if presented and presented[0] != stored[0]:
            raise InvalidCookie("cookie presented with another certificate")
        if not presented and not self._host_of(session).cisco_client_compat:
            raise InvalidCookie("cookie presented without its certificate")
        try:
            host = self._services_for(self._host_of(session).vhost_name or "")
            host.backends.verify_certificate(presented or stored)
        except AuthFailed as exc:
            raise InvalidCookie(f"cookie's certificate refused: {exc}") from exc

    def check_strap(self, session: Session, msg: m.ClaimSession) -> None:
        """``strap``: the CONNECT signs its TLS connection with the key of the login (which then
        rotates to the key the CONNECT brings, as the client's does).

        :raises InvalidCookie: a bad signature, or none where ``strap = required``.
        """
        stored = session.extra.get("strap_key")
        key = stored if isinstance(stored, bytes) else None
        proof = StrapProof(msg.strap_finished, msg.strap_verify, msg.strap_pubkey)
        kept = verify_strap(self._host_of(session).strap, key, proof)
        if kept is not None and kept != key:
            session.extra["strap_key"] = kept

    def check_same_clients(self, session: Session) -> None:
        """``max-same-clients`` at CONNECT: the user's tunnels of *other* sessions.

        A login checked the limit already, but cookies outlive it: without this, several cookies
        of one user obtained while none had a tunnel would all connect. With a limit of 1 the
        newest connection wins and the user's other session is ended (its client is told to
        disconnect); above 1 the CONNECT is refused.

        :raises ResourceError: the limit is reached.
        """
        settings = session.extra.get("settings")
        config = settings.config if isinstance(settings, SessionSettings) else self._config()
        limit = config.max_same_clients
        if not limit:
            return
        others = []
        for sid in self._owners:
            if sid == session.sid:
                continue
            with contextlib.suppress(KeyError):
                other = self._store.by_sid(sid)
                if other.username == session.username and self._same_vhost(other, session):
                    others.append(other)
        if len(others) < limit:
            return
        if limit > 1:
            raise ResourceError(f"max-same-clients ({limit}) reached")
        for other in others:
            log.info("event=session-replaced user=%r session=%s by=%s reason=max-same-clients",
                     other.username, other.sid, session.sid)  # fmt: skip
            self._end_session(other, "replaced by a newer session of the same user")

    def _same_vhost(self, a: Session, b: Session) -> bool:
        return self._host_of(a).vhost_name == self._host_of(b).vhost_name


def _same_address(a: str, b: str) -> bool:
    """Whether two client addresses name one host (``::ffff:192.0.2.1`` is ``192.0.2.1``)."""

    def host(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address

    try:
        return host(a) == host(b)
    except ValueError:
        return bool(a) and a == b
