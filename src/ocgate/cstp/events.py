"""Events a :class:`~ocgate.cstp.CstpConnection` hands to its adapter (STYLE rule 3).

After :class:`ByeReceived`, :class:`PeerDead`, :class:`IdleTimeout`, :class:`SessionTimeout` or
:class:`ProtocolFailed` the connection is finished: the adapter flushes ``frames_to_send()`` (for
the two timeouts it holds the server's DISCONNECT frame, as ocserv sends one) and closes the TLS
connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "ByeReceived",
    "CstpEvent",
    "DisconnectCode",
    "IdleTimeout",
    "PacketsReceived",
    "PeerDead",
    "ProtocolFailed",
    "SessionTimeout",
]


class DisconnectCode(IntEnum):
    """First payload byte of a client DISCONNECT (anyconnect-protocol.md §7; ocserv #281, #732)."""

    RECONNECTING = 0x91
    """AnyConnect is about to reconnect (network change): keep the session and its cookie."""
    USER_LOGOUT = 0xB0
    """The user ended the session (openconnect sends ``0xb0`` + e.g. ``Aborted by caller``)."""


@dataclass(frozen=True, slots=True)
class PacketsReceived:
    """Every DATA packet completed by one ``receive_data`` call, in order (one event per call).

    :param packets: raw IP packets for the tun device.
    """

    packets: list[bytes]


@dataclass(frozen=True, slots=True)
class ByeReceived:
    """The client sent DISCONNECT.

    :param code: the first payload byte (see :class:`DisconnectCode`), ``None`` for an empty payload
        (a temporary disconnect).
    :param message: the rest of the payload as text (UTF-8, undecodable bytes replaced).
    """

    code: int | None
    message: str

    @property
    def is_user_logout(self) -> bool:
        """``True`` for code ``0xb0``: the user logged out (ocserv ``REASON_USER_DISCONNECT``)."""
        return self.code == DisconnectCode.USER_LOGOUT


@dataclass(frozen=True, slots=True)
class PeerDead:
    """No frame of any kind for 3 × dpd despite DPD requests (ocserv ``DPD_MAX_TRIES``)."""


@dataclass(frozen=True, slots=True)
class IdleTimeout:
    """``idle-timeout`` seconds without non-ICMP/IGMP/ICMPv6 DATA in either direction."""


@dataclass(frozen=True, slots=True)
class SessionTimeout:
    """The absolute session deadline passed."""


@dataclass(frozen=True, slots=True)
class ProtocolFailed:
    """The client broke CSTP framing (or sent COMPRESSED without negotiated compression).

    :param message: for the log.
    """

    message: str


CstpEvent = PacketsReceived | ByeReceived | PeerDead | IdleTimeout | SessionTimeout | ProtocolFailed
