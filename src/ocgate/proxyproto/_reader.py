"""The sans-IO reader of the PROXY protocol header at the start of one TCP connection.

Theory of operation: a connection on a ``listen-proxy-proto`` listener must begin with a header
(proxy-protocol.txt §2: "The receiver MUST NOT start processing the connection before it receives
a complete and valid PROXY protocol header" and "MUST not try to guess whether the protocol header
is present or not"). The reader buffers what arrives (at most one header's worth plus the chunk
that completed it), and reports exactly one event:

* :class:`~ocgate.proxyproto.events.HeaderReceived` with the header and the bytes after it, which
  belong to the client (its TLS ClientHello) and go to the caller's next layer unchanged;
* :class:`~ocgate.proxyproto.events.HeaderRefused` on a malformed header, on bytes that cannot
  start one (a client connecting straight to the gateway: its first byte is TLS's 0x16), or when
  :data:`HEADER_TIMEOUT` passes without a complete header (``handle_timer``).

After the event the reader takes no more bytes. The header may arrive in any number of pieces:
the parser answers "need more" until it is whole (§2 recommends being tolerant of partial
headers).
"""

from __future__ import annotations

from collections import deque

from ocgate.errors import BadProxyHeader
from ocgate.proxyproto._parse import pull_proxy_header_untrusted
from ocgate.proxyproto.events import Event, HeaderReceived, HeaderRefused

__all__ = ["HEADER_TIMEOUT", "ProxyHeaderReader"]

HEADER_TIMEOUT = 10.0
"""Seconds for the whole header to arrive: ocserv's ``DEFAULT_SOCKET_TIMEOUT``, the bound of its
``force_read_timeout()`` calls in ``src/worker-proxyproto.c`` (the specification asks for at least
3 s, to cover a TCP retransmission)."""


class ProxyHeaderReader:
    """Reads one header.

    :param now: the time the connection was accepted (monotonic seconds).
    :param timeout: how long the header may take.
    """

    def __init__(self, *, now: float, timeout: float = HEADER_TIMEOUT) -> None:
        self._buffer = bytearray()
        self._deadline = now + timeout
        self._events: deque[Event] = deque()
        self.done = False
        """The event has been produced; later bytes are not the reader's."""

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the connection (ignored once :attr:`done`)."""
        if self.done:
            return
        self._buffer += data
        try:
            header = pull_proxy_header_untrusted(self._buffer)
        except BadProxyHeader as exc:
            self._finish(HeaderRefused(reason=str(exc)))
            return
        if header is not None:
            self._finish(HeaderReceived(header=header, data=bytes(self._buffer[header.length :])))
        elif now >= self._deadline:
            self.handle_timer(now)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is due (``None`` once done)."""
        return None if self.done else self._deadline

    def handle_timer(self, now: float) -> None:
        if not self.done and now >= self._deadline:
            self._finish(HeaderRefused(reason="no complete PROXY protocol header in time"))

    def _finish(self, event: Event) -> None:
        self.done = True
        self._buffer = bytearray()
        self._events.append(event)
