"""CSTP framing: the 8-byte ``STF`` header and a bounded stream reassembler.

Theory of operation (anyconnect-protocol.md §7):

* Every CSTP frame is ``STF\\x01`` + 16-bit big-endian payload length (header excluded) + packet
  type + a reserved byte that must be ``0x00``. Anything else is a fatal framing error
  (:class:`BadFrame`).
* Towards the client each frame must travel in its own TLS record; :func:`encode_frame` returns
  exactly the bytes of one record. From the client we do not rely on record boundaries and
  reassemble the byte stream.
* The decoder validates a header as soon as its 8 bytes are in, so a bad magic, a bad reserved byte
  or an oversize length is refused before any payload is buffered. It never holds more than one
  incomplete frame (at most ``8 + max_payload - 1`` bytes); complete frames are sliced out of the
  caller's buffer without an intermediate copy of the whole chunk.
* Unknown packet types are returned as they are: what to do with them is the connection's decision.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from ocgate.errors import BadFrame, LocalProtocolError

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "FRAME_HEADER",
    "FRAME_MAGIC",
    "Frame",
    "FrameDecoder",
    "PacketType",
    "encode_frame",
]


class PacketType(IntEnum):
    """CSTP packet types (anyconnect-protocol.md §7; ocserv ``src/vpn.h`` ``AC_PKT_*``)."""

    DATA = 0x00
    DPD_REQ = 0x03
    DPD_RESP = 0x04
    DISCONNECT = 0x05
    KEEPALIVE = 0x07
    COMPRESSED = 0x08
    TERMINATE = 0x09


# CSTP frame header, 8 bytes (anyconnect-protocol.md §7):
#
#   0      1      2      3      4      5      6      7
#   +------+------+------+------+------+------+------+------+
#   | 'S'  | 'T'  | 'F'  | 0x01 |  payload length  | type | 0x00 |
#   +------+------+------+------+------+------+------+------+
#
# The length counts the payload only, big-endian; byte 7 is reserved and must be zero.
FRAME_HEADER = struct.Struct("!4sHBB")
FRAME_MAGIC = b"STF\x01"
_HEADER_SIZE = FRAME_HEADER.size
_MAX_WIRE_PAYLOAD = 0xFFFF

DEFAULT_MAX_PAYLOAD = 16384
"""openconnect accepts payloads up to max(16384, MTU) (§7); longer client frames are refused."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded CSTP frame.

    :param type: the packet type byte; a :class:`PacketType` value or an unknown ``int``.
    :param payload: the bytes after the header.
    """

    type: int
    payload: bytes


def encode_frame(ptype: int, payload: bytes = b"") -> bytes:
    """Return one whole CSTP frame (header + payload), to be sent as exactly one TLS record.

    :param ptype: the packet type (0-255).
    :param payload: at most 65535 bytes.
    :raises LocalProtocolError: the payload does not fit the 16-bit length or the type is not a
                                byte.
    """
    if len(payload) > _MAX_WIRE_PAYLOAD:
        raise LocalProtocolError(f"CSTP payload of {len(payload)} bytes exceeds 65535")
    if not 0 <= ptype <= 0xFF:
        raise LocalProtocolError(f"CSTP packet type {ptype} is not a byte")
    return FRAME_HEADER.pack(FRAME_MAGIC, len(payload), ptype, 0) + payload


def _check_magic_prefix(prefix: bytes | bytearray | memoryview) -> None:
    """Refuse a partial header early when its first bytes already differ from ``STF\\x01``."""
    size = min(len(prefix), len(FRAME_MAGIC))
    if bytes(prefix[:size]) != FRAME_MAGIC[:size]:
        raise BadFrame("bad CSTP magic", reason="bad magic")


class FrameDecoder:
    """Reassembles CSTP frames from a byte stream (client → server direction).

    :param max_payload: the longest payload accepted (1-65535); set it to at least the tunnel MTU.
    """

    __slots__ = ("_buf", "_failed", "_max_payload")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        if not 1 <= max_payload <= _MAX_WIRE_PAYLOAD:
            raise LocalProtocolError(f"max_payload {max_payload} outside 1..65535")
        self._max_payload = max_payload
        self._buf = bytearray()
        self._failed = False

    @property
    def max_payload(self) -> int:
        """The longest payload this decoder accepts."""
        return self._max_payload

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back (always below ``8 + max_payload``)."""
        return len(self._buf)

    def feed_untrusted(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add stream bytes and return every frame they complete, in order.

        :raises BadFrame: bad magic, reserved byte ≠ 0 or length above ``max_payload``. The decoder
                          is
            then unusable: every later call raises again.
        """
        types: list[int] = []
        payloads: list[bytes] = []
        self.decode_into_untrusted(data, types, payloads)
        return [Frame(t, p) for t, p in zip(types, payloads, strict=True)]

    def decode_into_untrusted(
        self, data: bytes | bytearray | memoryview, types: list[int], payloads: list[bytes]
    ) -> None:
        """Like :meth:`feed_untrusted` but append to two parallel lists (no object per frame).

        Frames completed before an error are already appended when :class:`BadFrame` is raised.
        """
        if self._failed:
            raise BadFrame("CSTP stream already failed", reason="bad frame")
        try:
            with memoryview(data) as view:
                pos = self._complete_pending(view, types, payloads) if self._buf else 0
                if not self._buf:
                    self._decode_view(view, pos, types, payloads)
        except BadFrame:
            self._failed = True
            self._buf.clear()
            raise

    def _check_header(self, magic: bytes, length: int, reserved: int) -> None:
        if magic != FRAME_MAGIC:
            raise BadFrame("bad CSTP magic", reason="bad magic")
        if reserved != 0:
            raise BadFrame(f"CSTP reserved byte is {reserved:#04x}", reason="bad header")
        if length > self._max_payload:
            raise BadFrame(
                f"CSTP length {length} exceeds {self._max_payload}", reason="frame too long"
            )

    def _complete_pending(self, view: memoryview, types: list[int], payloads: list[bytes]) -> int:
        """Finish the buffered partial frame from the head of ``view``; return bytes consumed."""
        buf = self._buf
        pos = 0
        if len(buf) < _HEADER_SIZE:
            pos = min(_HEADER_SIZE - len(buf), len(view))
            buf += view[:pos]
            if len(buf) < _HEADER_SIZE:
                _check_magic_prefix(buf)
                return pos
        magic, length, ptype, reserved = FRAME_HEADER.unpack_from(buf)
        self._check_header(magic, length, reserved)
        take: int = min(_HEADER_SIZE + length - len(buf), len(view) - pos)
        buf += view[pos : pos + take]
        pos += take
        if len(buf) == _HEADER_SIZE + length:
            types.append(ptype)
            payloads.append(bytes(buf[_HEADER_SIZE:]))
            buf.clear()
        return pos

    def _decode_view(
        self, view: memoryview, pos: int, types: list[int], payloads: list[bytes]
    ) -> None:
        """Slice whole frames out of ``view`` from ``pos``; keep a trailing partial frame."""
        end = len(view)
        unpack_from = FRAME_HEADER.unpack_from
        while end - pos >= _HEADER_SIZE:
            magic, length, ptype, reserved = unpack_from(view, pos)
            if magic != FRAME_MAGIC or reserved or length > self._max_payload:
                self._check_header(magic, length, reserved)
            frame_end = pos + _HEADER_SIZE + length
            if frame_end > end:
                break
            types.append(ptype)
            payloads.append(view[pos + _HEADER_SIZE : frame_end].tobytes())
            pos = frame_end
        if pos < end:
            rest = view[pos:]
            if len(rest) < _HEADER_SIZE:
                _check_magic_prefix(rest)
            self._buf += rest
