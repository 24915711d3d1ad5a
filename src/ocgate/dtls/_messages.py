"""DTLS handshake messages and alerts: a dataclass per message, ``pull_*_untrusted``/``encode_*``.

Only what the two AnyConnect handshakes need (RFC 5246 §7.4, RFC 6347 §4.2, RFC 4279 §2).
Handshake messages travel as fragments behind a 12-byte header (RFC 6347 §4.2.2); the
``encode_handshake`` output is always a single whole fragment (our messages are small).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ocgate.dtls._record import RECORD_HEADER, ContentType
from ocgate.errors import BadRecord

__all__ = [
    "HANDSHAKE_HEADER_SIZE",
    "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    "AlertDescription",
    "AlertLevel",
    "ClientHello",
    "ClientHelloInfo",
    "ExtensionType",
    "HandshakeFragment",
    "HandshakeType",
    "ServerHello",
    "encode_alert",
    "encode_client_hello",
    "encode_handshake",
    "encode_hello_verify_request",
    "encode_psk_client_key_exchange",
    "encode_server_hello",
    "handshake_fragments_untrusted",
    "peek_client_hello_untrusted",
    "pull_alert_untrusted",
    "pull_client_hello_untrusted",
    "pull_hello_verify_request_untrusted",
    "pull_psk_client_key_exchange_untrusted",
    "pull_server_hello_untrusted",
]


class HandshakeType(IntEnum):
    """RFC 5246 §7.4 / RFC 6347 §4.2.2 ``HandshakeType``."""

    hello_request = 0
    client_hello = 1
    server_hello = 2
    hello_verify_request = 3
    server_key_exchange = 12
    server_hello_done = 14
    client_key_exchange = 16
    finished = 20


class ExtensionType(IntEnum):
    """IANA TLS ExtensionType values we look at (and openconnect's private ApplicationID)."""

    encrypt_then_mac = 22
    extended_master_secret = 23
    record_size_limit = 28
    session_ticket = 35
    renegotiation_info = 0xFF01
    application_id = 48018
    """openconnect ``DTLS_APP_ID_EXT``: 1-byte length + App-ID (anyconnect-protocol.md §9.3)."""


TLS_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF
"""RFC 5746 §3.3: signals renegotiation_info support in the suite list."""


class AlertLevel(IntEnum):
    warning = 1
    fatal = 2


class AlertDescription(IntEnum):
    """RFC 5246 §7.2 ``AlertDescription`` (the ones we send or name)."""

    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    handshake_failure = 40
    illegal_parameter = 47
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    internal_error = 80
    no_renegotiation = 100


class _Reader:
    """A bounds-checked cursor over peer bytes; every shortfall is a :class:`BadRecord`."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, size: int) -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise BadRecord("truncated handshake message")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int, *, maximum: int = 0xFFFFFF) -> bytes:
        size = self.uint(length_size)
        if size > maximum:
            raise BadRecord("vector too long")
        return self.take(size)

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def finish(self) -> None:
        if self.remaining:
            raise BadRecord("trailing bytes in handshake message")


def _vector(length_size: int, data: bytes) -> bytes:
    return len(data).to_bytes(length_size, "big") + data


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


Extensions = tuple[tuple[int, bytes], ...]


def _pull_extensions(reader: _Reader) -> Extensions:
    if not reader.remaining:
        return ()  # The extensions block is optional (RFC 5246 §7.4.1.2).
    block = _Reader(reader.vector(2))
    reader.finish()
    found: list[tuple[int, bytes]] = []
    while block.remaining:
        found.append((block.uint(2), block.vector(2)))
    if len({ext_type for ext_type, _ in found}) != len(found):
        raise BadRecord("duplicate extension")
    return tuple(found)


def _encode_extensions(extensions: Extensions) -> bytes:
    if not extensions:
        return b""
    return _vector(2, b"".join(_u16(t) + _vector(2, v) for t, v in extensions))


# Handshake fragment header, 12 bytes (RFC 6347 §4.2.2):
#   msg_type (1) | length (3) | message_seq (2) | fragment_offset (3) | fragment_length (3)
HANDSHAKE_HEADER_SIZE = 12
MAX_HANDSHAKE_MESSAGE = 8192
"""Longest handshake message we reassemble; AnyConnect ClientHellos are a few hundred bytes."""


@dataclass(frozen=True, slots=True)
class HandshakeFragment:
    msg_type: int
    length: int
    message_seq: int
    frag_offset: int
    body: bytes

    @property
    def is_whole(self) -> bool:
        return self.frag_offset == 0 and len(self.body) == self.length


def handshake_fragments_untrusted(data: bytes) -> list[HandshakeFragment]:
    """Split a handshake record's plaintext into its fragments (several may share a record)."""
    reader = _Reader(data)
    fragments: list[HandshakeFragment] = []
    while reader.remaining:
        msg_type, length = reader.uint(1), reader.uint(3)
        message_seq, offset = reader.uint(2), reader.uint(3)
        body = reader.vector(3)
        if length > MAX_HANDSHAKE_MESSAGE or offset + len(body) > length:
            raise BadRecord("handshake fragment out of bounds")
        fragments.append(HandshakeFragment(msg_type, length, message_seq, offset, body))
    return fragments


def encode_handshake(msg_type: int, message_seq: int, body: bytes) -> bytes:
    """Return one whole-message fragment (header + body)."""
    length = len(body).to_bytes(3, "big")
    return bytes([msg_type]) + length + _u16(message_seq) + b"\0\0\0" + length + body


@dataclass(frozen=True, slots=True)
class ClientHello:
    """RFC 6347 §4.2.1 ``ClientHello`` (with the DTLS ``cookie``)."""

    client_version: int
    random: bytes
    session_id: bytes
    cookie: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: bytes
    extensions: Extensions = ()

    def extension(self, ext_type: int) -> bytes | None:
        for found, value in self.extensions:
            if found == ext_type:
                return value
        return None

    @property
    def app_id(self) -> bytes | None:
        """The ApplicationID extension (48018) value without its length byte, if sent."""
        value = self.extension(ExtensionType.application_id)
        if value is None or not value or value[0] != len(value) - 1:
            return None
        return value[1:]

    @property
    def offers_renegotiation_info(self) -> bool:
        return (
            TLS_EMPTY_RENEGOTIATION_INFO_SCSV in self.cipher_suites
            or self.extension(ExtensionType.renegotiation_info) is not None
        )


def pull_client_hello_untrusted(body: bytes) -> ClientHello:
    """Decode a whole ClientHello body (no handshake header)."""
    reader = _Reader(body)
    version, random = reader.uint(2), reader.take(32)
    session_id = reader.vector(1, maximum=32)
    cookie = reader.vector(1)
    suites = reader.vector(2)
    if not suites or len(suites) % 2:
        raise BadRecord("bad cipher suite list")
    compressions = reader.vector(1)
    if not compressions:
        raise BadRecord("no compression methods")
    extensions = _pull_extensions(reader)
    pairs = tuple(int.from_bytes(suites[i : i + 2], "big") for i in range(0, len(suites), 2))
    return ClientHello(version, random, session_id, cookie, pairs, compressions, extensions)


def encode_client_hello(hello: ClientHello) -> bytes:
    return (
        _u16(hello.client_version)
        + hello.random
        + _vector(1, hello.session_id)
        + _vector(1, hello.cookie)
        + _vector(2, b"".join(_u16(s) for s in hello.cipher_suites))
        + _vector(1, hello.compression_methods)
        + _encode_extensions(hello.extensions)
    )


@dataclass(frozen=True, slots=True)
class ServerHello:
    """RFC 5246 §7.4.1.3 ``ServerHello`` (null compression only)."""

    server_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    extensions: Extensions = ()


def encode_server_hello(hello: ServerHello) -> bytes:
    return (
        _u16(hello.server_version)
        + hello.random
        + _vector(1, hello.session_id)
        + _u16(hello.cipher_suite)
        + b"\0"
        + _encode_extensions(hello.extensions)
    )


def pull_server_hello_untrusted(body: bytes) -> ServerHello:
    reader = _Reader(body)
    version, random = reader.uint(2), reader.take(32)
    session_id = reader.vector(1, maximum=32)
    suite, compression = reader.uint(2), reader.uint(1)
    if compression:
        raise BadRecord("compression not supported")
    return ServerHello(version, random, session_id, suite, _pull_extensions(reader))


def encode_hello_verify_request(version: int, cookie: bytes) -> bytes:
    return _u16(version) + _vector(1, cookie)


def pull_hello_verify_request_untrusted(body: bytes) -> tuple[int, bytes]:
    """Return ``(server_version, cookie)``."""
    reader = _Reader(body)
    version, cookie = reader.uint(2), reader.vector(1)
    reader.finish()
    return version, cookie


def encode_psk_client_key_exchange(identity: bytes) -> bytes:
    return _vector(2, identity)


def pull_psk_client_key_exchange_untrusted(body: bytes) -> bytes:
    """RFC 4279 §2: return the ``psk_identity`` (which AnyConnect sets to ``psk``)."""
    reader = _Reader(body)
    identity = reader.vector(2)
    reader.finish()
    return identity


def encode_alert(level: int, description: int) -> bytes:
    return bytes((level, description))


def pull_alert_untrusted(data: bytes) -> tuple[int, int]:
    """Return ``(level, description)``."""
    if len(data) != 2:
        raise BadRecord("bad alert length")
    return data[0], data[1]


@dataclass(frozen=True, slots=True)
class ClientHelloInfo:
    """What the UDP demultiplexer needs from a datagram starting with a ClientHello (§9.4).

    :param record_version: the record layer version (``0x0100``, ``0xFEFF`` or ``0xFEFD``).
    :param epoch_seq: the record's ``epoch << 48 | sequence_number``.
    """

    record_version: int
    epoch_seq: int
    message_seq: int
    hello: ClientHello

    @property
    def session_id(self) -> bytes:
        return self.hello.session_id

    @property
    def cookie(self) -> bytes:
        return self.hello.cookie

    @property
    def random(self) -> bytes:
        return self.hello.random

    @property
    def client_version(self) -> int:
        return self.hello.client_version

    @property
    def cipher_suites(self) -> tuple[int, ...]:
        return self.hello.cipher_suites

    @property
    def app_id(self) -> bytes | None:
        return self.hello.app_id

    @property
    def lookup_id(self) -> bytes:
        """The session key as ocserv looks it up: ApplicationID extension first, then session_id."""
        app_id = self.hello.app_id
        return app_id if app_id else self.hello.session_id


_CLIENT_HELLO_TYPE = bytes([HandshakeType.client_hello])


def peek_client_hello_untrusted(datagram: bytes) -> ClientHelloInfo | None:
    """Decode the ClientHello a datagram starts with; ``None`` if it starts with something else.

    The ClientHello must be a whole, unfragmented message in the first record (true of every
    AnyConnect client). A ClientHello with an all-zero random is refused (ocserv #277).
    """
    if len(datagram) < RECORD_HEADER.size + HANDSHAKE_HEADER_SIZE:
        return None
    ctype, version, epoch_seq, length = RECORD_HEADER.unpack_from(datagram)
    body = datagram[RECORD_HEADER.size : RECORD_HEADER.size + length]
    if ctype != ContentType.handshake or epoch_seq >> 48 or body[:1] != _CLIENT_HELLO_TYPE:
        return None
    if version not in (0x0100, 0xFEFF, 0xFEFD) or len(body) != length:
        raise BadRecord("bad ClientHello record")
    fragment = handshake_fragments_untrusted(body)[0]
    if not fragment.is_whole:
        raise BadRecord("fragmented ClientHello")
    hello = pull_client_hello_untrusted(fragment.body)
    if not any(hello.random):
        raise BadRecord("all-zero ClientHello random")
    return ClientHelloInfo(version, epoch_seq, fragment.message_seq, hello)
