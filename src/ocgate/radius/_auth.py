"""RADIUS authentication as ocserv ``src/auth/radius.c`` does it.

Theory of operation: one :meth:`RadiusAuthenticator.authenticate` call is one Access-Request.
An Access-Accept gives a :class:`RadiusResult`; an Access-Challenge gives a
:class:`RadiusChallenge` that the gateway shows as a form (``secondary_password``) and passes
back with the answer, which goes to the same server with the challenge's State; an
Access-Reject, a malformed reply, a 17th challenge or no reply from any server raises
:class:`~ocgate.errors.AuthFailed`. The messages of AuthFailed are for the log only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import secrets
from collections.abc import Callable

from ocgate.errors import AuthFailed, RemoteProtocolError
from ocgate.radius._attrs import (
    interpret_accept_untrusted,
    interpret_challenge_untrusted,
    reply_message,
)
from ocgate.radius._client import ServersUnreachable, exchange
from ocgate.radius._codec import EncodedRequest, NasInfo, encode_access_request
from ocgate.radius._config import RadiusConfig, RadiusServer
from ocgate.radius._constants import PacketCode
from ocgate.radius._results import RadiusChallenge, RadiusResult

__all__ = ["RadiusAuthenticator", "nas_info"]

logger = logging.getLogger("ocgate.radius")


def nas_info(config: RadiusConfig, server_ip: str | None) -> NasInfo:
    """The NAS attributes: the connection's local address if valid, else ``nas-ip``."""
    address = config.nas_ip
    if server_ip:
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(server_ip.split("%", 1)[0])
    return NasInfo(identifier=config.nas_identifier, ip=address)


class RadiusAuthenticator:
    """Authenticates users against the ``authserver`` list of a radcli config.

    :param config: from :func:`ocgate.radius.load_radius_config`.
    :param random_bytes: source of Identifiers and Request Authenticators (tests inject one).
    """

    def __init__(
        self,
        config: RadiusConfig,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._config = config
        self._random_bytes = random_bytes

    @property
    def config(self) -> RadiusConfig:
        return self._config

    def _username(self, username: str) -> str:
        realm = self._config.default_realm
        if realm and "@" not in username:
            return f"{username}@{realm}"
        return username

    async def authenticate(
        self,
        username: str,
        password: str,
        *,
        client_ip: str,
        user_agent: str | None = None,
        session_id: str | None = None,
        server_ip: str | None = None,
        challenge: RadiusChallenge | None = None,
    ) -> RadiusResult | RadiusChallenge:
        """Send one Access-Request.

        :param username: the name the user typed (``default_realm`` is added as ocserv does).
        :param password: the password, or the answer to ``challenge``.
        :param client_ip: the VPN client's address (Calling-Station-Id).
        :param user_agent: the client's User-Agent (Connect-Info).
        :param session_id: the session's id (Acct-Session-Id).
        :param server_ip: the local address the client connected to (NAS-IP-Address).
        :param challenge: the challenge this password answers, if any.
        :returns: the accepted user, or the next challenge.
        :raises AuthFailed: rejected, malformed reply, too many challenges, or no server reached.
        """
        config = self._config
        if not username:
            raise AuthFailed("radius: empty user name")
        name = self._username(username)
        nas = nas_info(config, server_ip)
        state = challenge.state if challenge is not None else None

        def build(server: RadiusServer) -> EncodedRequest:
            return encode_access_request(
                secret=server.secret,
                username=name,
                password=password,
                nas=nas,
                client_ip=client_ip,
                user_agent=user_agent,
                session_id=session_id,
                state=state,
                random_bytes=self._random_bytes,
            )

        try:
            index, reply = await exchange(
                config.auth_servers,
                build,
                wait=config.timeout,
                retries=config.retries,
                first=challenge.server if challenge is not None else 0,
            )
        except ServersUnreachable:
            raise AuthFailed("RADIUS server unreachable") from None
        except ValueError as exc:
            raise AuthFailed(f"radius: {exc}") from None
        try:
            if reply.code == PacketCode.ACCESS_ACCEPT:
                return interpret_accept_untrusted(
                    reply.attributes,
                    username=name,
                    groupconfig=config.groupconfig,
                    group_separator=config.group_separator,
                    override_interim_updates=config.override_interim_updates,
                )
            if reply.code == PacketCode.ACCESS_CHALLENGE:
                return interpret_challenge_untrusted(
                    reply.attributes,
                    round=(challenge.round if challenge is not None else 0) + 1,
                    server=index,
                )
        except RemoteProtocolError as exc:
            raise AuthFailed(f"radius: user {name!r}: {exc}") from None
        message = reply_message(reply.attributes)
        raise AuthFailed(f"radius: user {name!r} rejected" + (f": {message}" if message else ""))
