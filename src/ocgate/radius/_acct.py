"""RADIUS accounting as ocserv ``src/acct/radius.c`` does it (Start, Interim-Update, Stop).

Theory of operation: each call sends one Accounting-Request to the ``acctserver`` list with the
same timeouts, retries and failover as authentication, and reports the outcome as a bool: an
accounting failure is logged and never raised into the session's path. The gateway schedules
Interim-Updates (``stats-report-time``, or Acct-Interim-Interval from the Access-Accept) and
passes Acct-Session-Time itself, so a session that spans reconnects keeps counting.
Unlike ocserv, Acct-Output-Gigawords carries the output counter (ocserv sends the input one).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from ocgate.radius._auth import nas_info
from ocgate.radius._client import ServersUnreachable, exchange
from ocgate.radius._codec import EncodedRequest, encode_accounting_request
from ocgate.radius._config import RadiusConfig, RadiusServer
from ocgate.radius._constants import AcctStatusType, TerminateCause
from ocgate.radius._results import AccountingSession, SessionStats

__all__ = ["RadiusAccounting"]

logger = logging.getLogger("ocgate.radius")


class RadiusAccounting:
    """Sends accounting records to the ``acctserver`` list of a radcli config.

    :param config: from :func:`ocgate.radius.load_radius_config`.
    :param random_bytes: source of Identifiers (tests inject one).
    """

    def __init__(
        self,
        config: RadiusConfig,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._config = config
        self._random_bytes = random_bytes

    async def start(self, session: AccountingSession) -> bool:
        """Send Acct-Status-Type = Start. :returns: whether a server acknowledged it."""
        return await self._send(AcctStatusType.START, session, None, None)

    async def interim(self, session: AccountingSession, stats: SessionStats) -> bool:
        """Send Acct-Status-Type = Interim-Update with the counters so far."""
        return await self._send(AcctStatusType.INTERIM_UPDATE, session, stats, None)

    async def stop(
        self, session: AccountingSession, stats: SessionStats, cause: TerminateCause
    ) -> bool:
        """Send Acct-Status-Type = Stop with the final counters and the terminate cause."""
        return await self._send(AcctStatusType.STOP, session, stats, cause)

    async def _send(
        self,
        status: AcctStatusType,
        session: AccountingSession,
        stats: SessionStats | None,
        cause: TerminateCause | None,
    ) -> bool:
        config = self._config
        if not config.acct_servers:
            logger.warning("radius: no acctserver configured; %s not sent", status.name)
            return False
        nas = nas_info(config, session.server_ip)

        def build(server: RadiusServer) -> EncodedRequest:
            return encode_accounting_request(
                secret=server.secret,
                status=status,
                session=session,
                nas=nas,
                stats=stats,
                cause=cause,
                random_bytes=self._random_bytes,
            )

        try:
            await exchange(config.acct_servers, build, wait=config.timeout, retries=config.retries)
        except ServersUnreachable:
            logger.error(
                "radius: accounting %s for session %s: no server answered",
                status.name,
                session.session_id,
            )
            return False
        except Exception:  # Accounting must never break the session; the log keeps the cause.
            logger.exception("radius: accounting %s failed", status.name)
            return False
        return True
