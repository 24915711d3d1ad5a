"""Who sent a message: the exporter side of a transport session (RFC 7011 §8.4, §9.3)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TRANSPORTS", "ExporterKey"]

TRANSPORTS = frozenset({"udp", "tcp", "dtls"})
"""Transport kinds; ``udp`` and ``dtls`` are datagram transports (withdrawals ignored)."""


@dataclass(frozen=True, slots=True)
class ExporterKey:
    """The exporter side of a transport session: the scope of templates and sequence numbers.

    Template scope is ``(ExporterKey, observation domain ID, template ID)``; the collector address
    and port are implied by the listener the message came in on (one core per listener set).

    **Datagram exporters are keyed by source address, not address and port** (build keys with
    :meth:`for_peer`; their ``port`` is 0). RFC 7011 §8.4 suggests keeping UDP templates under
    ⟨exporter address, exporter source port, collector address and port, ODID, template ID⟩, a
    SHOULD; §9.3 defines the UDP transport session from the exporting process's point of view, as
    the time during which it sends to this collector, and admits that the collector cannot see
    it. The source port is a poor proxy for it, and we deviate on purpose:

    * an exporter that re-binds its socket (an NVM agent after a network change, sleep or
      restart; NVM refreshes templates rarely) comes back from a new port and would lose its
      templates, buffering or dropping data for as long as a template refresh interval;
    * a spray of datagrams from many source ports of one address would multiply templates,
      buffers and counters per port; keyed by address, it is one exporter, held to the
      per-exporter caps of :class:`~ocgate.nvm.ipfix.IpfixCollectorCore`;
    * VPN attribution is decided by the exporter's address alone (``ocgate.nvm._collector``).

    What separates two exporting processes on one host is then the Observation Domain ID, the
    other half of the scope: exporters that share an address and an ODID share templates (a
    redefinition replaces, as for UDP template ID reuse, §8.1) and a sequence (a jump counts as
    a reset). DTLS is keyed the same way: a re-handshake from a new port keeps the templates.
    A **TCP** connection, by contrast, *is* the transport session (§8: its templates die with it,
    withdrawals apply in order), so TCP keys keep the port; the per-address caps still hold across
    all of an address's connections.

    :param transport: ``"udp"``, ``"tcp"`` or ``"dtls"``.
    :param address: the exporter IP address, as text.
    :param port: the exporter source port (TCP), or 0 (datagram transports, see above).
    """

    transport: str
    address: str
    port: int

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {sorted(TRANSPORTS)}: {self.transport!r}")

    @classmethod
    def for_peer(cls, transport: str, address: str, port: int) -> ExporterKey:
        """The key of messages from ``address:port`` over ``transport`` (port kept for TCP only).

        An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) is keyed as the
        IPv4 address, so the same exporter never has two keys.
        """
        if address.startswith("::ffff:") and "." in address:
            address = address.removeprefix("::ffff:")
        return cls(transport, address, port if transport == "tcp" else 0)

    @property
    def datagram(self) -> bool:
        """Whether the transport is datagram based (UDP or DTLS over UDP)."""
        return self.transport != "tcp"
