"""IPFIX message and set headers (RFC 7011 §3.1, §3.3.2) and TCP stream splitting.

Theory of operation:

* A message is one UDP/DTLS datagram, or one length-delimited unit of a TCP stream. Its header
  says version 10 and a length that must equal the bytes we hold (§10.3.2: the collector must not
  guess); anything else rejects the whole message (§9.1).
* Sets are walked in order. Each set header gives an ID and a length (≥ 4, header included) that
  must stay inside the message. IDs 2 and 3 are (options) template sets, ≥ 256 are data sets, and
  0, 1 and 4-255 are reserved: such sets are skipped, not fatal (§3.3.2).
* Only :class:`~ocgate.errors.BadIpfix` leaves the ``*_untrusted`` functions here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from ocgate.errors import BadIpfix

__all__ = [
    "IPFIX_VERSION",
    "MESSAGE_HEADER",
    "SET_HEADER",
    "MessageHeader",
    "RawSet",
    "SetId",
    "pull_message_untrusted",
    "split_stream_untrusted",
]

IPFIX_VERSION = 10
"""RFC 7011 §3.1: the version of the IPFIX message format (NetFlow v9 is 9)."""

# Message header, 16 bytes (RFC 7011 §3.1):
#
#   0                   1                   2                   3
#   +-------------------+-------------------+---------------------------------------+
#   | Version Number    | Length            | Export Time (s since the epoch)       |
#   +-------------------+-------------------+---------------------------------------+
#   | Sequence Number                       | Observation Domain ID                 |
#   +---------------------------------------+---------------------------------------+
MESSAGE_HEADER = struct.Struct("!HHIII")

# Set header, 4 bytes (RFC 7011 §3.3.2): Set ID (16 bits), Length (16 bits, header included).
SET_HEADER = struct.Struct("!HH")

_MESSAGE_HEADER_SIZE = MESSAGE_HEADER.size
_SET_HEADER_SIZE = SET_HEADER.size


class SetId(IntEnum):
    """Set IDs with a meaning of their own (RFC 7011 §3.3.2); data sets use IDs ≥ 256."""

    TEMPLATE = 2
    OPTIONS_TEMPLATE = 3
    MIN_DATA = 256


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """The 16-byte IPFIX message header.

    :param length: the total message length, header included.
    :param export_time: seconds since 1970-01-01 UTC.
    :param sequence: data records sent before this message in this stream and domain, mod 2**32.
    :param observation_domain_id: scopes the templates of the message.
    """

    length: int
    export_time: int
    sequence: int
    observation_domain_id: int


@dataclass(frozen=True, slots=True)
class RawSet:
    """One set of a message, undecoded.

    :param set_id: 2, 3, or the template ID of a data set.
    :param body: the set content after its 4-byte header (padding included).
    """

    set_id: int
    body: bytes


def pull_message_untrusted(data: bytes) -> tuple[MessageHeader, list[RawSet]]:
    """Parse one whole IPFIX message into its header and sets.

    Reserved sets (IDs 0, 1, 4-255) are returned too; the caller skips them.

    :param data: exactly one message (a datagram, or one message cut from a TCP stream).
    :raises BadIpfix: wrong version, a length that disagrees with ``data``, or a bad set length.
    """
    if len(data) < _MESSAGE_HEADER_SIZE:
        raise BadIpfix(f"message of {len(data)} bytes is shorter than the 16-byte header")
    version, length, export_time, sequence, odid = MESSAGE_HEADER.unpack_from(data, 0)
    if version != IPFIX_VERSION:
        raise BadIpfix(f"version {version} is not IPFIX (10)")
    if length != len(data):
        raise BadIpfix(f"header length {length} differs from the {len(data)} bytes received")
    sets: list[RawSet] = []
    pos = _MESSAGE_HEADER_SIZE
    while pos < length:
        if length - pos < _SET_HEADER_SIZE:
            raise BadIpfix(f"{length - pos} trailing bytes cannot hold a set header")
        set_id, set_length = SET_HEADER.unpack_from(data, pos)
        if set_length < _SET_HEADER_SIZE:
            raise BadIpfix(f"set {set_id} has length {set_length} < 4")
        end = pos + set_length
        if end > length:
            raise BadIpfix(f"set {set_id} of {set_length} bytes runs past the message end")
        sets.append(RawSet(set_id, data[pos + _SET_HEADER_SIZE : end]))
        pos = end
    return MessageHeader(length, export_time, sequence, odid), sets


def split_stream_untrusted(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Cut the complete IPFIX messages off the front of a TCP stream buffer (RFC 7011 §10.4).

    :param buffer: the bytes received so far and not yet consumed.
    :returns: the complete messages, and the incomplete rest to keep for the next call.
    :raises BadIpfix: a header that is not IPFIX or has a length < 16; the stream cannot be
        resynchronised and the connection should be closed.
    """
    messages: list[bytes] = []
    pos = 0
    total = len(buffer)
    while total - pos >= 4:
        version, length = SET_HEADER.unpack_from(buffer, pos)
        if version != IPFIX_VERSION:
            raise BadIpfix(f"stream desynchronised: version {version} is not IPFIX (10)")
        if length < _MESSAGE_HEADER_SIZE:
            raise BadIpfix(f"stream desynchronised: message length {length} < 16")
        if total - pos < length:
            break
        messages.append(bytes(buffer[pos : pos + length]))
        pos += length
    return messages, bytes(buffer[pos:])
