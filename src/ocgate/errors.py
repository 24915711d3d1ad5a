"""The one error tree of ocgate.

::

    OcgateError
    ├── ConfigError                 a config file is wrong: file, line, key, expected form
    ├── AuthError
    │   ├── AuthFailed              credentials refused (unknown, locked and wrong look the same)
    │   ├── SsoError                single sign-on refused; the message is safe to show the client
    │   └── InvalidCookie           a session cookie names no live session
    ├── ResourceError               a pool or limit is exhausted (no address left, too many clients)
    └── ProtocolError
        ├── LocalProtocolError      we were asked to do something the protocol forbids
        └── RemoteProtocolError     the peer sent something malformed
            ├── BadHttpRequest      HTTP front door; carries ``status_hint``
            ├── BadAuthXml          AggAuth XML body
            ├── BadCompressedData   a COMPRESSED CSTP/DTLS payload that does not decompress
            ├── BadControlMessage   control-socket (occtl) request or response line
            ├── BadFrame            CSTP framing; carries the disconnect reason
            ├── BadIpfix            IPFIX / nvzFlow message from a flow exporter
            ├── BadProxyHeader      PROXY protocol v1/v2 header from a balancer
            └── BadRecord           DTLS record, handshake message or HelloVerify cookie;
                │                   carries the alert ``description``
                └── BadRecordMac    a DTLS record failed its MAC / AEAD tag check

Parsers of peer bytes (functions ending in ``_untrusted``) raise only their subsystem's decode
error, never ``IndexError`` or ``struct.error``. The adapters map these errors to an HTTP status,
a BYE frame or a closed connection at a single place each.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "AuthFailed",
    "BadAuthXml",
    "BadCompressedData",
    "BadControlMessage",
    "BadFrame",
    "BadHttpRequest",
    "BadIpfix",
    "BadProxyHeader",
    "BadRecord",
    "BadRecordMac",
    "BadStrap",
    "ConfigError",
    "InvalidCookie",
    "LocalProtocolError",
    "OcgateError",
    "ProtocolError",
    "RemoteProtocolError",
    "ResourceError",
    "SsoError",
]


class OcgateError(Exception):
    """Root of every error ocgate raises on purpose."""


class ConfigError(OcgateError):
    """A configuration file (or a value in it) is invalid.

    ``str()`` gives ``FILE:LINE: KEY: message (expected: FORM)``, the form an administrator needs to
    fix it.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        self.expected = expected
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        what = f"{self.key}: " if self.key else ""
        form = f" (expected: {self.expected})" if self.expected else ""
        return f"{where}{what}{self.message}{form}"


class AuthError(OcgateError):
    """Authentication did not succeed."""


class AuthFailed(AuthError):
    """Credentials were refused. The message is for the log, never for the client."""


class SsoError(AuthError):
    """A single sign-on login was refused (bad, expired, replayed or foreign assertion or token).

    Unlike :class:`AuthFailed`, the message is written for the user: the gateway shows it as an
    AggAuth message. It never contains a token, an assertion or a secret.
    """


class InvalidCookie(AuthError):
    """A session cookie is malformed, unknown or expired."""


class ResourceError(OcgateError):
    """A pool or a configured limit is exhausted."""


class ProtocolError(OcgateError):
    """A protocol rule was broken."""


class LocalProtocolError(ProtocolError):
    """This side was asked to break the protocol (a bug in the caller)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol."""


class BadHttpRequest(RemoteProtocolError):
    """A malformed or over-limit HTTP request; ``status_hint`` is the status to answer with."""

    def __init__(self, message: str, *, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class BadAuthXml(RemoteProtocolError):
    """An AggAuth XML body that cannot be accepted (malformed, entities, too deep, too large)."""


class BadCompressedData(RemoteProtocolError):
    """A COMPRESSED (0x08) payload that is corrupt, too large or fails its check."""


class BadControlMessage(RemoteProtocolError):
    """A malformed, over-long or unknown control-socket (occtl) request or response line."""


class BadFrame(RemoteProtocolError):
    """A CSTP frame with a bad magic, length or reserved byte; ``reason`` goes into the log."""

    def __init__(self, message: str, *, reason: str = "bad frame") -> None:
        super().__init__(message)
        self.reason = reason


class BadIpfix(RemoteProtocolError):
    """A malformed IPFIX message, set, template or record (RFC 7011 §9.1): discard the message."""


class BadProxyHeader(RemoteProtocolError):
    """A PROXY protocol header (``listen-proxy-proto``) that is missing, malformed or too long:
    the connection is closed before TLS."""


class BadRecord(RemoteProtocolError):
    """A DTLS datagram, record, handshake message or cookie that cannot be accepted.

    ``description`` is the TLS alert description (RFC 5246 §7.2) a handshake in progress
    answers with (``decode_error`` = 50 unless told otherwise); after the handshake such records
    are dropped.
    """

    def __init__(self, message: str, *, description: int = 50) -> None:
        super().__init__(message)
        self.description = description


class BadRecordMac(BadRecord):
    """A DTLS record failed its MAC or AEAD tag check (alert ``bad_record_mac`` = 20)."""

    def __init__(self, message: str = "bad record MAC") -> None:
        super().__init__(message, description=20)


class BadStrap(RemoteProtocolError):
    """An ``X-AnyConnect-STRAP-*`` header that is not a P-256 key or a DER ECDSA signature."""
