"""Login contexts: the rounds of one login may arrive on several TLS connections.

A login spread over several requests (password, then OTP or a RADIUS challenge, or a group form)
normally keeps its TLS connection, but nothing obliges a client to: a Cisco client that loses the
connection between the password and the OTP reconnects and posts the next round on a new one.
ocserv ties the rounds together with a ``webvpncontext`` cookie naming its sec-mod entry (and once
had a heap overflow there: hence the strict, bounded parser below). This table does the same for
the login dialogs of the authentication service:

* a form reply of a login under way carries ``Set-Cookie: webvpncontext=TOKEN``; TOKEN is random
  (192 bits), bound to the client address and the virtual host that started the login;
* a request on a connection with no dialog yet presents the cookie: if TOKEN names a live context of
  the same address and host, the request continues that login — with its step, its pending user
  and its failure count (the per-login try limit still holds across connections);
* a context lives ``auth-timeout`` seconds after its last use and ends with its login (success,
  failure, or the dialog closing the connection); at most :data:`MAX_CONTEXTS` live at once, the
  least recently used giving way first, so a peer that starts logins cannot grow the table.

Sans-IO: time is passed in, the table never touches a socket.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["CONTEXT_COOKIE", "MAX_CONTEXTS", "LoginContexts", "parse_context_token_untrusted"]

CONTEXT_COOKIE = "webvpncontext"
MAX_CONTEXTS = 4096
_TOKEN_BYTES = 24
_MAX_TOKEN_LEN = 64
_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

D = TypeVar("D")


def parse_context_token_untrusted(value: str | None) -> str | None:
    """The ``webvpncontext`` cookie's value if it has a token's shape, else ``None``.

    Only what a token of this table can look like is accepted (URL-safe base64, at most 64
    characters); anything else is as if no cookie had been sent. The ``Cookie`` header itself is
    split by the front door's parser (``Request.cookies``).
    """
    if value and len(value) <= _MAX_TOKEN_LEN and set(value) <= _TOKEN_ALPHABET:
        return value
    return None


@dataclass(slots=True)
class _Entry(Generic[D]):
    dialog: D
    remote: str
    vhost: str
    expires: float


class LoginContexts(Generic[D]):
    """Tokens naming login dialogs, bound to the client address and virtual host.

    :param lifetime: seconds a context lives after its last use (``auth-timeout``).
    :param limit: contexts kept at most.
    """

    def __init__(self, lifetime: float, *, limit: int = MAX_CONTEXTS) -> None:
        self.lifetime = lifetime
        self._limit = limit
        self._entries: OrderedDict[str, _Entry[D]] = OrderedDict()
        self._tokens: dict[int, str] = {}  # id(dialog) -> its token

    def __len__(self) -> int:
        return len(self._entries)

    def dialogs(self) -> list[D]:
        """The dialogs with a live context (for ``show sessions all``)."""
        return [entry.dialog for entry in self._entries.values()]

    def token_for(self, dialog: D, *, remote: str, vhost: str, now: float) -> str:
        """The token of ``dialog``'s context, made now if it has none; its lifetime restarts."""
        self.sweep(now)
        token = self._tokens.get(id(dialog))
        if token is None:
            while len(self._entries) >= self._limit:
                self._drop(next(iter(self._entries)))
            token = secrets.token_urlsafe(_TOKEN_BYTES)
            self._tokens[id(dialog)] = token
            self._entries[token] = _Entry(dialog, remote, vhost, now + self.lifetime)
            return token
        entry = self._entries[token]
        entry.expires = now + self.lifetime
        self._entries.move_to_end(token)
        return token

    def resume(self, cookie: str | None, *, remote: str, vhost: str, now: float) -> D | None:
        """The dialog the ``webvpncontext`` cookie's value names, if it may continue it here.

        A token of another address or host, or an expired one, names nothing.
        """
        token = parse_context_token_untrusted(cookie)
        if token is None:
            return None
        self.sweep(now)
        entry = self._entries.get(token)
        if entry is None or entry.expires <= now or entry.remote != remote or entry.vhost != vhost:
            return None
        entry.expires = now + self.lifetime
        self._entries.move_to_end(token)
        return entry.dialog

    def adopt(self, dialog: D, token: str, *, remote: str, vhost: str, now: float) -> None:
        """Name ``dialog`` by ``token`` here: a login another gateway started, whose state came
        through the shared session store (``gateway/_resume.py``)."""
        self.sweep(now)
        self.forget(dialog)
        if token in self._entries:
            self._drop(token)
        while len(self._entries) >= self._limit:
            self._drop(next(iter(self._entries)))
        self._tokens[id(dialog)] = token
        self._entries[token] = _Entry(dialog, remote, vhost, now + self.lifetime)

    def token_of(self, dialog: D) -> str | None:
        """The token naming ``dialog``, if it has one."""
        return self._tokens.get(id(dialog))

    def forget(self, dialog: D) -> None:
        """``dialog``'s login is over: its token names nothing any more."""
        token = self._tokens.get(id(dialog))
        if token is not None:
            self._drop(token)

    def sweep(self, now: float) -> None:
        """Drop the contexts whose lifetime ended.

        Every use moves a context to the end with a full lifetime, so the table is in expiry
        order: the sweep stops at the first live one.
        """
        entries = self._entries
        while entries:
            token, entry = next(iter(entries.items()))
            if entry.expires > now:
                return
            self._drop(token)

    def _drop(self, token: str) -> None:
        entry = self._entries.pop(token)
        self._tokens.pop(id(entry.dialog), None)
