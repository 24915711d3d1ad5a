"""The login dialogs of the authentication service (:class:`~ocgate.daemon._auth.AuthService`).

A worker forwards every pre-tunnel HTTP request of a connection here (``LoginRequest``), and
:class:`LoginDialogs` answers it with that connection's :class:`~ocgate.gateway.LoginDialog`, so
the verdict and the cookie never depend on a worker's word (ocserv likewise keeps a sec-mod entry
per login from its first request on, ``src/sec-mod-db.c`` ``new_client_entry``). Its rules:

* one dialog per pre-tunnel connection, keyed by worker and connection id, made at the
  connection's first request; at most :data:`MAX_DIALOGS_PER_WORKER` per worker, a request
  beyond them answered ``503`` with the connection closed. The count is the size of the worker's
  own table, so the bound costs nothing per login;
* a dialog goes when its connection does (``ConnectionGone``), when its worker exits (all of that
  worker's at once), and when the dialog closes the connection (a refused login's last answer);
* the rounds of one login may come on several connections: each form of a login under way
  carries a ``webvpncontext`` cookie naming it (:class:`~ocgate.gateway.LoginContexts`, whose
  docstring gives the rules), and a connection's first request that presents it continues that
  login. One connection at a time continues a login: the dialog leaves its previous connection,
  found in one step by the table from dialog to key;
* with a shared session store, a login waiting for its next round is kept there too, so that round
  may come to another node (``gateway/_resume.py``): a node that does not know the token takes
  the login's state from the store. A login that ends (it made a session, or the dialog closed the
  connection) forgets its context here and there; one that made a session keeps its dialog until
  its connection goes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ocgate.config import Config
from ocgate.gateway import CONTEXT_COOKIE, LoginContexts, LoginDialog, LoginServices
from ocgate.gateway._contexts import parse_context_token_untrusted
from ocgate.gateway._resume import dialog_state, restore_dialog
from ocgate.http import Response
from ocgate.ipc import messages as m

if TYPE_CHECKING:
    from ocgate.daemon._cluster import Cluster

__all__ = ["MAX_DIALOGS_PER_WORKER", "LoginDialogs"]

log = logging.getLogger("ocgate.secmod")

MAX_DIALOGS_PER_WORKER = 4096
"""Login dialogs a worker may hold open here (one per pre-tunnel TLS connection)."""

_Key = tuple[int, int]
"""A connection: its worker and its id there."""


class LoginDialogs:
    """The open login dialogs, their ``webvpncontext`` tokens and the logins kept in a shared store.

    :param config: the configuration now (``auth-timeout``; :meth:`load` takes a reload's).
    :param services_for: the login services of a host by vhost name (``""``: the default host).
    :param cluster: with a shared store, this node among the others.
    """

    def __init__(
        self,
        config: Config,
        *,
        services_for: Callable[[str], LoginServices],
        cluster: Cluster | None,
    ) -> None:
        self._auth_timeout = config.auth_timeout
        self._services_for = services_for
        self._cluster = cluster
        self._open: dict[int, dict[int, LoginDialog]] = {}
        """The dialog of each connection that asked for one, by worker, then connection id."""
        self._key_of: dict[LoginDialog, _Key] = {}
        """The connection each open dialog answers (a dialog answers one at a time)."""
        self.contexts: LoginContexts[LoginDialog] = LoginContexts(config.auth_timeout)
        """``webvpncontext`` tokens: a login's next round may come on another connection."""
        self._shared_contexts: weakref.WeakKeyDictionary[LoginDialog, str] = (
            weakref.WeakKeyDictionary()
        )
        """With a shared store: the token each login under way is kept under there."""

    def load(self, config: Config) -> None:
        """Take ``auth-timeout`` of ``config`` (start and reload)."""
        self._auth_timeout = config.auth_timeout
        self.contexts.lifetime = config.auth_timeout

    def count(self, worker: int) -> int:
        """Dialogs open for the connections of ``worker``."""
        return len(self._open.get(worker, ()))

    def under_way(self) -> list[LoginDialog]:
        """Every dialog open or waiting for its next round on a new connection, once each."""
        dialogs = {id(d): d for d in self._key_of}
        dialogs.update((id(d), d) for d in self.contexts.dialogs())
        return list(dialogs.values())

    def connection_gone(self, worker: int, conn: int) -> None:
        """Connection ``conn`` of ``worker`` closed: its dialog goes (its context stays)."""
        self._drop((worker, conn))

    def worker_gone(self, worker: int) -> None:
        """``worker`` exited: the dialogs of its connections go."""
        for dialog in self._open.pop(worker, {}).values():
            del self._key_of[dialog]

    async def handle(self, worker: int, msg: m.LoginRequest) -> m.LoginResponse:
        """Answer a pre-tunnel request with its connection's dialog (made or resumed first)."""
        key = (worker, msg.conn)
        now = time.monotonic()
        dialog = self._open.get(worker, {}).get(msg.conn)
        if dialog is None:
            if self.count(worker) >= MAX_DIALOGS_PER_WORKER:
                return _response(Response(503, "Service Unavailable", (), b"", close=True))
            dialog = await self._open_dialog(msg, now)
            self._insert(key, dialog)
        cluster = self._cluster
        if cluster is not None and msg.request.method == "POST":
            await cluster.check()  # A login must not rely on a store that went away.
        response = await dialog.handle(msg.request)
        progress = dialog.progress()
        if cluster is not None and progress is None:
            await cluster.login_done()  # Every node knows the cookie before the client.
        if response.close or progress is None:
            ended = self._shared_contexts.pop(dialog, None) or self.contexts.token_of(dialog)
            if ended is not None and cluster is not None:
                cluster.forget_context(ended)
            self.contexts.forget(dialog)
            if response.close:
                self._drop(key)
        elif response.status == 200 and progress.state != "pre-auth":
            token = await self._keep_context(dialog, msg, now)
            cookie = f"{CONTEXT_COOKIE}={token}; Max-Age={self._auth_timeout}; Secure; HttpOnly"
            response = dataclasses.replace(
                response, headers=(*response.headers, ("Set-Cookie", cookie))
            )
        return _response(response)

    async def _open_dialog(self, msg: m.LoginRequest, now: float) -> LoginDialog:
        """The dialog of a connection's first request: the login its ``webvpncontext`` cookie
        names (here or in the shared store), else a new one."""
        token = msg.request.cookies().get(CONTEXT_COOKIE)
        dialog = self.contexts.resume(token, remote=msg.remote, vhost=msg.vhost, now=now)
        if dialog is None and self._cluster is not None:
            dialog = await self._resume_elsewhere(token, msg, now)
        if dialog is None:
            chain = tuple(msg.peer_chain)
            return LoginDialog(
                self._services_for(msg.vhost),
                remote_addr=msg.remote,
                local_addr=msg.local,
                peer_chain=lambda: chain,
            )
        previous = self._key_of.get(dialog)  # One connection at a time continues a login.
        if previous is not None:
            self._drop(previous)
        return dialog

    async def _keep_context(self, dialog: LoginDialog, msg: m.LoginRequest, now: float) -> str:
        """The token of a login waiting for its next round, kept in the shared store too."""
        token = self.contexts.token_for(dialog, remote=msg.remote, vhost=msg.vhost, now=now)
        cluster = self._cluster
        state = dialog_state(dialog) if cluster is not None else None
        if cluster is not None and state is not None:
            kept = await cluster.keep_context(token, state, remote=msg.remote,
                vhost=msg.vhost, seconds=self._auth_timeout)  # fmt: skip
            if kept:  # The next round on a new connection takes it from the store.
                self.contexts.forget(dialog)
                older = self._shared_contexts.get(dialog)
                if older is not None and older != token:
                    cluster.forget_context(older)
                self._shared_contexts[dialog] = token
        return token

    async def _resume_elsewhere(
        self, token: str | None, msg: m.LoginRequest, now: float
    ) -> LoginDialog | None:
        """The login another node started, if ``token`` names one kept in the shared store."""
        cluster = self._cluster
        token = parse_context_token_untrusted(token)
        if cluster is None or token is None:
            return None
        state = await cluster.take_context(token, remote=msg.remote, vhost=msg.vhost)
        if state is None:
            return None
        chain = tuple(msg.peer_chain)
        try:
            dialog = restore_dialog(
                self._services_for(msg.vhost),
                state,
                remote_addr=msg.remote,
                local_addr=msg.local,
                peer_chain=lambda: chain,
            )
        except ValueError as exc:
            log.warning("event=login-context-unreadable reason=%r", str(exc))
            return None
        self.contexts.adopt(dialog, token, remote=msg.remote, vhost=msg.vhost, now=now)
        progress = dialog.progress()
        log.info("event=login-resumed remote=%s user=%r", msg.remote,
                 progress.username if progress is not None else "")  # fmt: skip
        return dialog

    def _insert(self, key: _Key, dialog: LoginDialog) -> None:
        self._drop(key)
        self._open.setdefault(key[0], {})[key[1]] = dialog
        self._key_of[dialog] = key

    def _drop(self, key: _Key) -> None:
        worker, conn = key
        dialogs = self._open.get(worker)
        if dialogs is None:
            return
        dialog = dialogs.pop(conn, None)
        if dialog is not None:
            del self._key_of[dialog]
        if not dialogs:
            del self._open[worker]


def _response(response: Response) -> m.LoginResponse:
    return m.LoginResponse(
        status=response.status,
        reason=response.reason,
        headers=[(k, v) for k, v in response.headers],
        body=response.body,
        close=response.close,
    )
