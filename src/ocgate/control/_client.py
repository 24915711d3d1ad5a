"""A blocking Unix-socket client for the control protocol (used by ``ocgate ctl``).

One connection per request, like occtl: connect, write the request line, read the answer line.
``stream()`` keeps reading for ``show events``. Connection failures surface as ``OSError``
(``FileNotFoundError``, ``PermissionError``, ``ConnectionRefusedError``, ``TimeoutError``);
anything malformed, over-long or cut short from the server raises
:class:`~ocgate.errors.BadControlMessage`.
"""

from __future__ import annotations

import socket  # noqa: TID251  (the client adapter does I/O by design)
from collections.abc import Iterator
from typing import Final

from ocgate.control._protocol import (
    MAX_LINE_BYTES,
    Event,
    Request,
    Response,
    encode_request,
    parse_event_untrusted,
    parse_response_untrusted,
)
from ocgate.errors import BadControlMessage

__all__ = ["DEFAULT_SOCKET", "DEFAULT_TIMEOUT", "ControlClient"]

#: occtl's default socket (``OCCTL_UNIX_SOCKET``) and ocserv's ``occtl-socket-file`` default.
DEFAULT_SOCKET: Final = "/var/run/occtl.socket"
#: occtl's ``DEFAULT_TIMEOUT`` (10 s) for each answer.
DEFAULT_TIMEOUT: Final = 10.0
_CHUNK: Final = 65536


class _LineReader:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def readline(self) -> bytes | None:
        """The next line (with its newline), or ``None`` on a clean close between lines."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[: end + 1])
                del self._buf[: end + 1]
                return line
            if len(self._buf) > MAX_LINE_BYTES:
                raise BadControlMessage("control line exceeds the size limit")
            chunk = self._sock.recv(_CHUNK)
            if not chunk:
                if self._buf:
                    raise BadControlMessage("connection closed in the middle of a line")
                return None
            self._buf += chunk


class ControlClient:
    """Talks to the daemon's control socket.

    :param path: the socket path (``occtl-socket-file``).
    :param timeout: seconds to wait for connecting and for each answer.
    """

    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    def _connect(self, req: Request) -> tuple[socket.socket, _LineReader]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            sock.sendall(encode_request(req))
        except BaseException:
            sock.close()
            raise
        return sock, _LineReader(sock)

    def request(self, req: Request) -> Response:
        """Send one request and return the daemon's response.

        :raises OSError: the socket cannot be reached or timed out.
        :raises BadControlMessage: the answer is missing or malformed.
        """
        sock, reader = self._connect(req)
        with sock:
            line = reader.readline()
        if line is None:
            raise BadControlMessage("the server closed the connection without answering")
        return parse_response_untrusted(line)

    def stream(self, req: Request) -> Iterator[Response | Event]:
        """Send a streaming request (``show events``): yield its response, then each event
        until the server closes the connection. After the first answer there is no timeout."""
        sock, reader = self._connect(req)
        with sock:
            first = reader.readline()
            if first is None:
                raise BadControlMessage("the server closed the connection without answering")
            yield parse_response_untrusted(first)
            sock.settimeout(None)
            while (line := reader.readline()) is not None:
                yield parse_event_untrusted(line)
