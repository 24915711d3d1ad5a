"""Hard limits of the HTTP front door.

anyconnect-protocol.md §2.4 and ocserv-compatibility.md §4.9.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ocgate.errors import ConfigError

__all__ = ["HttpLimits"]

DEFAULT_METHODS = frozenset({"GET", "HEAD", "POST", "CONNECT"})


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLimits:
    """Per-connection limits; the defaults are ocserv's hard-coded ones.

    :param max_header_bytes: size of a request head (request line plus header lines); over it → 431.
    :param max_header_count: number of header lines in one request; over it → 431.
    :param max_body_bytes: request body size (``Content-Length`` checked up front, chunked as it
        arrives); over it → 413.
    :param max_requests: requests per connection; the response to the last one carries
        ``Connection: close``.
    :param auth_timeout: seconds from connection start until a CONNECT must have been answered with
        2xx; ``None`` disables the deadline.
    :param max_early_tunnel_bytes: bytes a client may send after its CONNECT request before the
        answer.
    :param methods: request methods accepted at all; others → 405 before the body is read.
    """

    max_header_bytes: int = 16384
    max_header_count: int = 100
    max_body_bytes: int = 262144
    max_requests: int = 16
    auth_timeout: float | None = 240.0
    max_early_tunnel_bytes: int = 65536
    methods: frozenset[str] = DEFAULT_METHODS

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not value > 0:
                raise ConfigError("must be positive", key=f.name, expected="a number > 0")
        if not self.methods:
            raise ConfigError("must not be empty", key="methods", expected="HTTP method names")
