"""Events a :class:`~ocgate.dtls.DtlsAssociation` hands to its adapter (STYLE rule 3).

After :class:`AssociationClosed` or :class:`HandshakeFailed` the association is finished: the
adapter flushes ``datagrams_to_send()`` (it may hold a final alert) and drops it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AssociationClosed",
    "DataReceived",
    "DtlsEvent",
    "HandshakeCompleted",
    "HandshakeFailed",
]


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """The handshake finished; application data may flow both ways.

    :param cipher_description: openconnect's spelling, e.g. ``(DTLS1.2)-(PSK)-(AES-256-GCM)``.
    """

    cipher_description: str


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Every application-data record of one ``receive_datagram`` call, in order (one event).

    :param payloads: record plaintexts, each an AnyConnect type byte + body (§9.5).
    """

    payloads: list[bytes]


@dataclass(frozen=True, slots=True)
class AssociationClosed:
    """The client closed the established association (``close_notify`` or a fatal alert).

    :param reason: for the log.
    """

    reason: str


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """The handshake did not complete (timeout, fatal alert sent or received).

    :param reason: for the log.
    """

    reason: str


DtlsEvent = HandshakeCompleted | DataReceived | AssociationClosed | HandshakeFailed
