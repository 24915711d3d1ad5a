"""DTLS for AnyConnect: a sans-IO server for the legacy resumed and the PSK-NEGOTIATE handshakes.

Reference: anyconnect-protocol.md §9 (modes, suites, demultiplexing, payload framing), RFC 6347
(DTLS 1.2), OpenSSL ``DTLS1_BAD_VER`` / GnuTLS ``DTLS0.9`` (Cisco's pre-RFC DTLS).

Gateway flow: :func:`negotiate_dtls` at CONNECT time gives the mode and the response headers. For
each datagram, :func:`peek_client_hello_untrusted` finds the session of a ClientHello; in PSK mode
a :class:`CookieJar` answers cookieless hellos statelessly and checks the cookie before a
:class:`DtlsAssociation` is created; then the association is fed datagrams and drained.
"""

from __future__ import annotations

from ocgate.dtls._association import (
    HANDSHAKE_TIMEOUT,
    INITIAL_RETRANSMIT,
    PSK_SUITES,
    DtlsAssociation,
    LegacyMode,
    PskMode,
)
from ocgate.dtls._cookie import Address, CookieJar
from ocgate.dtls._handshake import TRANSITIONS, DtlsState
from ocgate.dtls._messages import (
    AlertDescription,
    ClientHello,
    ClientHelloInfo,
    HandshakeType,
    peek_client_hello_untrusted,
)
from ocgate.dtls._negotiate import (
    DTLS12_CIPHERSUITES,
    DTLS_CIPHERSUITES,
    PSK_NEGOTIATE,
    DtlsOffer,
    negotiate_dtls,
)
from ocgate.dtls._record import ContentType, ReplayWindow
from ocgate.dtls._suites import CipherSuite, DtlsSuite, ProtocolVersion
from ocgate.dtls.events import (
    AssociationClosed,
    DataReceived,
    DtlsEvent,
    HandshakeCompleted,
    HandshakeFailed,
)

__all__ = [
    "DTLS12_CIPHERSUITES",
    "DTLS_CIPHERSUITES",
    "HANDSHAKE_TIMEOUT",
    "INITIAL_RETRANSMIT",
    "PSK_NEGOTIATE",
    "PSK_SUITES",
    "TRANSITIONS",
    "Address",
    "AlertDescription",
    "AssociationClosed",
    "CipherSuite",
    "ClientHello",
    "ClientHelloInfo",
    "ContentType",
    "CookieJar",
    "DataReceived",
    "DtlsAssociation",
    "DtlsEvent",
    "DtlsOffer",
    "DtlsState",
    "DtlsSuite",
    "HandshakeCompleted",
    "HandshakeFailed",
    "HandshakeType",
    "LegacyMode",
    "ProtocolVersion",
    "PskMode",
    "ReplayWindow",
    "negotiate_dtls",
    "peek_client_hello_untrusted",
]
