"""CSTP: the AnyConnect TLS tunnel after ``CONNECT /CSCOSSLC/tunnel`` (sans-IO).

Reference: anyconnect-protocol.md §6 (MTU), §7 (framing), §8 (DPD).
"""

from __future__ import annotations

from ocgate.cstp._connection import CstpConnection, CstpState
from ocgate.cstp._frame import (
    DEFAULT_MAX_PAYLOAD,
    FRAME_HEADER,
    FRAME_MAGIC,
    Frame,
    FrameDecoder,
    PacketType,
    encode_frame,
)
from ocgate.cstp._ip import counts_for_idle_untrusted
from ocgate.cstp._mtu import (
    DTLS12_AES_GCM_RECORD_OVERHEAD,
    DTLS12_CHACHA20_RECORD_OVERHEAD,
    DTLS_CBC_SHA1_RECORD_OVERHEAD,
    TLS12_AES_GCM_RECORD_OVERHEAD,
    TLS13_AEAD_RECORD_OVERHEAD,
    TLS_CBC_SHA1_RECORD_OVERHEAD,
    MtuResult,
    compute_mtu,
    cstp_packet_overhead,
    dtls_packet_overhead,
    parse_mtu_headers_untrusted,
)
from ocgate.cstp.events import (
    ByeReceived,
    CstpEvent,
    DisconnectCode,
    IdleTimeout,
    PacketsReceived,
    PeerDead,
    ProtocolFailed,
    SessionTimeout,
)

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "DTLS12_AES_GCM_RECORD_OVERHEAD",
    "DTLS12_CHACHA20_RECORD_OVERHEAD",
    "DTLS_CBC_SHA1_RECORD_OVERHEAD",
    "FRAME_HEADER",
    "FRAME_MAGIC",
    "TLS12_AES_GCM_RECORD_OVERHEAD",
    "TLS13_AEAD_RECORD_OVERHEAD",
    "TLS_CBC_SHA1_RECORD_OVERHEAD",
    "ByeReceived",
    "CstpConnection",
    "CstpEvent",
    "CstpState",
    "DisconnectCode",
    "Frame",
    "FrameDecoder",
    "IdleTimeout",
    "MtuResult",
    "PacketType",
    "PacketsReceived",
    "PeerDead",
    "ProtocolFailed",
    "SessionTimeout",
    "compute_mtu",
    "counts_for_idle_untrusted",
    "cstp_packet_overhead",
    "dtls_packet_overhead",
    "encode_frame",
    "parse_mtu_headers_untrusted",
]
