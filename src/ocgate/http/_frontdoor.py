"""The HTTP/1.1 front door: one per TLS connection, from the first byte to the CONNECT.

Theory of operation
-------------------
h11 parses; this class enforces the rules h11 leaves to its user (anyconnect-protocol.md §2.4,
ocserv-compatibility.md §4.9 and §9):

* **One request at a time.** A request is delivered as one :class:`Request` event (head and body).
  Until :meth:`FrontDoor.send_response` answers it, any further byte is a pipelined request and a
  :class:`ProtocolViolation` (400): ocserv #716 was a desync on exactly that. The only exception is
  a CONNECT, whose followers are CSTP bytes; they are kept (up to ``max_early_tunnel_bytes``) and
  handed over by :meth:`FrontDoor.tunnel_established`.
* **Firm limits.** Bytes are fed to h11 in slices of :data:`_FEED_SLICE`, so its
  ``max_incomplete_event_size`` check bounds a request head even when it arrives in one piece; the
  parsed head is measured again exactly. Header count, ``Content-Length`` (before the body is read),
  chunked body size, methods and versions are checked here. The response to the
  ``max_requests``-th request closes the connection.
* **Every peer error becomes one event.** Errors are raised inside as :class:`BadHttpRequest` and
  turned, in :meth:`FrontDoor.receive_data` alone, into a queued error response with
  ``Connection: close`` plus a :class:`ProtocolViolation`; after it the front door ignores input.
  Requests parsed but not yet taken by the caller are withdrawn, so no work is done for them.
* **The deadline.** From connection start until a 2xx CONNECT reply, :meth:`FrontDoor.get_timer`
  returns the deadline; passing it yields :class:`TimedOut` (no response is written).
* **Exact response bytes.** See :mod:`ocgate.http._response`.
"""

from __future__ import annotations

from collections import deque
from enum import Enum, auto

import h11

from ocgate.errors import BadHttpRequest, LocalProtocolError
from ocgate.http._cookie_header import parse_cookies_untrusted
from ocgate.http._limits import HttpLimits
from ocgate.http._response import NO_BODY_STATUSES, Response, reason_for, render_head
from ocgate.http.events import (
    ConnectionClosed,
    HttpEvent,
    ProtocolViolation,
    Request,
    TimedOut,
)

__all__ = ["FrontDoor"]

# h11 checks its buffer against max_incomplete_event_size only between slices; a head that
# arrives in one piece can overshoot the limit by at most this much before the exact check.
_FEED_SLICE = 1024
_MAX_MESSAGE_CHARS = 200
_VERSIONS = frozenset({"1.0", "1.1"})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _State(Enum):
    RECV_REQUEST = auto()  # reading a request head or body
    SEND_RESPONSE = auto()  # a complete request awaits send_response()
    TUNNEL = auto()  # a 2xx CONNECT reply was sent; tunnel_established() not yet called
    DONE = auto()  # tunnel_established() handed the stream to CSTP
    CLOSED = auto()  # the connection is to be closed


_TRANSITIONS: dict[_State, frozenset[_State]] = {
    _State.RECV_REQUEST: frozenset({_State.SEND_RESPONSE, _State.CLOSED}),
    _State.SEND_RESPONSE: frozenset({_State.RECV_REQUEST, _State.TUNNEL, _State.CLOSED}),
    _State.TUNNEL: frozenset({_State.DONE, _State.CLOSED}),
    _State.DONE: frozenset(),
    _State.CLOSED: frozenset(),
}


class FrontDoor:
    """Sans-IO HTTP/1.1 server side of one connection, up to the CONNECT.

    :param limits: the hard limits.
    :param now: the time the connection started (the auth deadline counts from it).
    """

    def __init__(self, *, limits: HttpLimits = HttpLimits(), now: float) -> None:  # noqa: B008
        self._limits = limits
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self._state = _State.RECV_REQUEST
        self._events: deque[HttpEvent] = deque()
        self._out = bytearray()
        self._early = bytearray()
        self._deadline = None if limits.auth_timeout is None else now + limits.auth_timeout
        self._requests = 0
        self._head: h11.Request | None = None
        self._body = bytearray()
        self._method = ""
        self._keep_alive = True

    # -- the verbs ---------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from the peer; ``b""`` means EOF.

        :raises LocalProtocolError: called after :meth:`tunnel_established`.
        """
        if self._state is _State.CLOSED:
            return
        if self._state is _State.DONE:
            raise LocalProtocolError("receive_data after tunnel_established")
        deadline = self.get_timer()
        if deadline is not None and now >= deadline:
            self._end(TimedOut())
            return
        try:
            self._receive(data)
        except BadHttpRequest as exc:
            self._violation(exc)

    def next_event(self) -> HttpEvent | None:
        """The next event, or ``None`` when more data is needed."""
        return self._events.popleft() if self._events else None

    def send_response(self, response: Response) -> None:
        """Answer the current request. Ignored once the connection is closing.

        :raises LocalProtocolError: no request awaits a response, or the response does not fit
            it (a 2xx to CONNECT with a body or ``close``).
        """
        if self._state is _State.CLOSED:
            return
        if self._state is not _State.SEND_RESPONSE:
            raise LocalProtocolError("no request awaits a response")
        if self._method == "CONNECT" and 200 <= response.status < 300:
            self._send_tunnel_reply(response)
        else:
            self._send_reply(response)

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer (and forget)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called, or ``None``."""
        if self._state in (_State.RECV_REQUEST, _State.SEND_RESPONSE):
            return self._deadline
        return None

    def handle_timer(self, now: float) -> None:
        """Check the deadline; past it, queue :class:`TimedOut`."""
        deadline = self.get_timer()
        if deadline is not None and now >= deadline:
            self._end(TimedOut())

    def set_deadline(self, when: float | None) -> None:
        """Replace the auth deadline (an absolute time), or disable it with ``None``."""
        self._deadline = when

    def tunnel_established(self) -> bytes:
        """After a 2xx reply to CONNECT: the bytes received after the request (CSTP).

        The front door is finished afterwards.

        :raises LocalProtocolError: no 2xx reply to a CONNECT was sent.
        """
        if self._state is not _State.TUNNEL:
            raise LocalProtocolError("tunnel_established without a 2xx reply to CONNECT")
        trailing, _ = self._conn.trailing_data
        self._goto(_State.DONE)
        return trailing + bytes(self._early)

    @property
    def should_close(self) -> bool:
        """True once the connection is to be closed (after flushing :meth:`data_to_send`)."""
        return self._state is _State.CLOSED

    # -- receiving ---------------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        if not data:
            self._end(ConnectionClosed())
            return
        if self._state is not _State.RECV_REQUEST:
            self._receive_early(data)
            return
        for pos in range(0, len(data), _FEED_SLICE):
            if self._state is not _State.RECV_REQUEST:
                self._receive_early(data[pos:])
                return
            self._conn.receive_data(data[pos : pos + _FEED_SLICE])
            self._pump()

    def _receive_early(self, data: bytes) -> None:
        """Bytes after a complete request: CSTP after a CONNECT, else a pipelined request."""
        if self._method != "CONNECT":
            raise BadHttpRequest("pipelined request (bytes before the response)", status_hint=400)
        self._early += data
        if self._state is _State.SEND_RESPONSE and (
            len(self._early) > self._limits.max_early_tunnel_bytes
        ):
            raise BadHttpRequest("too many bytes after CONNECT", status_hint=400)

    def _pump(self) -> None:
        """Take h11's events until it needs data (or pauses after a CONNECT)."""
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                # h11 quotes the offending line; it may hold a cookie, so it stays out of the log.
                message = str(exc).split(": bytearray(", 1)[0]
                raise BadHttpRequest(_clip(message), status_hint=exc.error_status_hint) from None
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                if self._method == "CONNECT":
                    return
                raise BadHttpRequest("pipelined request (bytes before the response)")
            if isinstance(event, h11.Request):
                self._on_head(event)
            elif isinstance(event, h11.Data):
                self._on_body(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._on_end()
            else:  # pragma: no cover - h11 reports ConnectionClosed only after EOF, never fed.
                raise LocalProtocolError(f"unexpected h11 event {event!r}")

    def _on_head(self, head: h11.Request) -> None:
        self._requests += 1
        self._method = head.method.decode("ascii")
        _check_head(head, self._limits)
        self._keep_alive = _wants_keep_alive(head)
        self._head = head
        self._body.clear()
        if self._conn.they_are_waiting_for_100_continue:
            self._conn.send(
                h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            )
            self._out += _CONTINUE

    def _on_body(self, data: bytes) -> None:
        self._body += data
        if len(self._body) > self._limits.max_body_bytes:
            raise BadHttpRequest("request body too large", status_hint=413)

    def _on_end(self) -> None:
        assert self._head is not None
        head, self._head = self._head, None
        self._events.append(
            Request(
                method=self._method,
                target=head.target.decode("ascii"),
                headers=tuple(
                    (name.decode("ascii"), value.decode("latin-1")) for name, value in head.headers
                ),
                body=bytes(self._body),
                http_version=head.http_version.decode("ascii"),
            )
        )
        self._body.clear()
        self._goto(_State.SEND_RESPONSE)

    # -- sending -----------------------------------------------------------------------------

    def _send_tunnel_reply(self, response: Response) -> None:
        if response.body or response.close:
            raise LocalProtocolError("a 2xx reply to CONNECT has no body and does not close")
        self._h11_send(
            h11.Response(status_code=response.status, headers=[], reason=_b(response.reason))
        )
        self._out += render_head(response.status, response.reason, response.headers)
        self._goto(_State.TUNNEL)

    def _send_reply(self, response: Response) -> None:
        close = (
            response.close
            or not self._keep_alive
            or self._requests >= self._limits.max_requests
            or bool(self._early)
            or bool(self._conn.trailing_data[0])
        )
        framing: list[tuple[str, str]] = []
        if response.status not in NO_BODY_STATUSES:
            framing.append(("Content-Length", str(len(response.body))))
        if close:
            framing.append(("Connection", "close"))
        self._h11_send(
            h11.Response(status_code=response.status, headers=framing, reason=_b(response.reason))
        )
        head_only = self._method == "HEAD"
        if response.body and not head_only:
            self._h11_send(h11.Data(data=response.body))
        self._h11_send(h11.EndOfMessage())
        self._out += render_head(
            response.status, response.reason, response.headers + tuple(framing)
        )
        if not head_only:
            self._out += response.body
        if close:
            self._goto(_State.CLOSED)
            return
        self._conn.start_next_cycle()
        self._method = ""
        self._goto(_State.RECV_REQUEST)

    def _h11_send(self, event: h11.Event) -> None:
        """Tell h11 what we send (for its state machine); the bytes are written by us."""
        try:
            self._conn.send(event)
        except h11.LocalProtocolError as exc:  # pragma: no cover - responses are validated first.
            raise LocalProtocolError(str(exc)) from exc

    # -- ending ------------------------------------------------------------------------------

    def _violation(self, exc: BadHttpRequest) -> None:
        status = exc.status_hint
        headers: tuple[tuple[str, str], ...] = (("Content-Length", "0"), ("Connection", "close"))
        if status == 405:
            headers = (("Allow", ", ".join(sorted(self._limits.methods))), *headers)
        self._out += render_head(status, reason_for(status), headers)
        self._end(ProtocolViolation(message=str(exc), status_hint=status))

    def _end(self, event: HttpEvent) -> None:
        """Withdraw undelivered requests, queue ``event`` and close."""
        self._events = deque(e for e in self._events if not isinstance(e, Request))
        self._events.append(event)
        self._goto(_State.CLOSED)

    def _goto(self, state: _State) -> None:
        assert state in _TRANSITIONS[self._state], (self._state, state)
        self._state = state


def _check_head(head: h11.Request, limits: HttpLimits) -> None:
    """Checks h11 leaves to us, made before the body is read.

    :raises BadHttpRequest: with the status to answer.
    """
    version = head.http_version.decode("ascii")
    if version not in _VERSIONS:
        raise BadHttpRequest(f"HTTP version {version} not supported", status_hint=505)
    raw = head.headers.raw_items()
    if len(raw) > limits.max_header_count:
        raise BadHttpRequest("too many header fields", status_hint=431)
    size = len(head.method) + len(head.target) + len(b"  HTTP/1.1\r\n\r\n")
    size += sum(len(name) + len(value) + 4 for name, value in raw)
    if size > limits.max_header_bytes:
        raise BadHttpRequest("request head too large", status_hint=431)
    method = head.method.decode("ascii")
    if method not in limits.methods:
        raise BadHttpRequest(f"method {_clip(method)} not allowed", status_hint=405)
    lengths = [value for name, value in head.headers if name == b"content-length"]
    if lengths and any(name == b"transfer-encoding" for name, _ in head.headers):
        raise BadHttpRequest("both Content-Length and Transfer-Encoding", status_hint=400)
    if lengths and int(lengths[0]) > limits.max_body_bytes:
        raise BadHttpRequest("request body too large", status_hint=413)
    parse_cookies_untrusted(
        value.decode("latin-1") for name, value in head.headers if name == b"cookie"
    )


def _clip(text: str) -> str:
    """Keep peer-controlled text in log messages short."""
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS] + "…"


def _wants_keep_alive(head: h11.Request) -> bool:
    """RFC 9112 section 9.3: HTTP/1.1 persists unless ``Connection: close``; HTTP/1.0 is closed."""
    if head.http_version != b"1.1":
        return False
    tokens = (
        token.strip().lower()
        for name, value in head.headers
        if name == b"connection"
        for token in value.split(b",")
    )
    return b"close" not in tokens


def _b(text: str) -> bytes:
    return text.encode("latin-1")
