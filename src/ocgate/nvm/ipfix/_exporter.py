"""Who sent a message: the exporter side of a transport session (RFC 7011 §8.4)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TRANSPORTS", "ExporterKey"]

TRANSPORTS = frozenset({"udp", "tcp", "dtls"})
"""Transport kinds; ``udp`` and ``dtls`` are datagram transports (withdrawals ignored)."""


@dataclass(frozen=True, slots=True)
class ExporterKey:
    """The exporter side of a transport session.

    Template scope is ``(ExporterKey, observation domain ID, template ID)``; the collector address
    and port are implied by the listener the message came in on (one core per listener set).

    :param transport: ``"udp"``, ``"tcp"`` or ``"dtls"``.
    :param address: the exporter IP address, as text.
    :param port: the exporter source port.
    """

    transport: str
    address: str
    port: int

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {sorted(TRANSPORTS)}: {self.transport!r}")

    @property
    def datagram(self) -> bool:
        """Whether the transport is datagram based (UDP or DTLS over UDP)."""
        return self.transport != "tcp"
