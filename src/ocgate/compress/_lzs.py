"""LZS (Stac), the stateless per-packet compression of AnyConnect's ``lzs`` encoding (pure).

Theory of operation (RFC 1974 §2.3 and ANSI X3.241-1994 as RFC 1974 cites it;
anyconnect-protocol.md §10; openconnect ``lzs.c`` was read for the wire details, this code is
written from the description):

* The output is an MSB-first bit stream of tokens: ``0`` + 8 bits is a literal byte; ``1 1`` +
  7 bits is a match with an offset of 1–127; ``1 0`` + 11 bits a match with an offset of
  1–2047. ``1 1 0000000`` (offset 0 in the short form) is the end marker, which every packet
  carries; the stream then pads to a byte with zero bits.
* A match length follows its offset: ``00``/``01``/``10`` are 2/3/4, ``1100``/``1101``/``1110``
  are 5/6/7 and ``1111`` starts 8 + a run of nibbles, where each ``1111`` adds 15 and the first
  other nibble adds its value and ends the length. A match may overlap its own output (offset <
  length repeats a pattern).
* Each packet is compressed on its own (history = the packet so far; window 2047 bytes), so a lost
  DTLS datagram never breaks the next one.
* The compressor is greedy: at each position it takes the longest earlier match within the window
  (the nearest one among equally long matches), as openconnect's does, so for the same input both
  produce the same bytes (the unit vectors check it) unless ``max_chain`` cut the search short.
* :func:`lzs_decompress_untrusted` parses peer bytes: any malformed stream, an offset pointing
  before the start, a missing end marker or output beyond ``limit`` raises
  :class:`~ocgate.errors.BadCompressedData` and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

from ocgate.errors import BadCompressedData, LocalProtocolError

__all__ = ["LZS_WINDOW", "lzs_compress", "lzs_decompress_untrusted"]

LZS_WINDOW = 2047
"""The largest offset an 11-bit match can name."""
_HISTORY = 2048
_MAX_INPUT = 0xFFFF
_END_MARKER = 0xC000
"""``1 1 0000000`` followed by seven zero bits, written as one 16-bit value (byte aligned)."""


def _put(out: bytearray, acc: int, bits: int, nbits: int, value: int) -> tuple[int, int]:
    """Append an MSB-first bit field; whole bytes go to ``out``, the rest stays in (acc, bits)."""
    acc = (acc << nbits) | value
    bits += nbits
    while bits >= 8:
        bits -= 8
        out.append((acc >> bits) & 0xFF)
    return acc & ((1 << bits) - 1), bits


def _put_match(out: bytearray, acc: int, bits: int, offset: int, length: int) -> tuple[int, int]:
    if offset < 0x80:
        acc, bits = _put(out, acc, bits, 9, 0x180 | offset)
    else:
        acc, bits = _put(out, acc, bits, 13, 0x1000 | offset)
    if length < 5:
        return _put(out, acc, bits, 2, length - 2)
    if length < 8:
        return _put(out, acc, bits, 4, length + 7)  # 1100, 1101, 1110
    # "1111" then nibbles: counted from 15 (the prefix) upward, 15 per all-ones nibble.
    rest = length + 7 - 15
    acc, bits = _put(out, acc, bits, 4, 0xF)
    while rest >= 15:
        acc, bits = _put(out, acc, bits, 4, 0xF)
        rest -= 15
    return _put(out, acc, bits, 4, rest)


def lzs_compress(data: bytes, *, max_chain: int | None = 16) -> bytes:
    """Compress one packet; the result ends with the end marker and is byte aligned.

    :param max_chain: how many earlier positions with the same two leading bytes are tried at
        most (it bounds the work per byte); ``None`` searches the whole window (the output is
        then openconnect's, byte for byte).
    :raises LocalProtocolError: ``data`` is longer than 65535 bytes.
    """
    n = len(data)
    if n > _MAX_INPUT:
        raise LocalProtocolError("LZS compresses at most 65535 bytes")
    out = bytearray()
    acc = bits = 0
    head: dict[int, int] = {}
    chain = [-1] * _HISTORY
    i = 0
    while i < n - 2:
        key = (data[i] << 8) | data[i + 1]
        candidate = head.get(key, -1)
        chain[i & (_HISTORY - 1)] = candidate
        head[key] = i
        if candidate < 0 or candidate + _HISTORY <= i:
            # A literal: 0 + the byte, inlined (the most frequent token).
            acc = (acc << 9) | data[i]
            bits += 1
            out.append((acc >> bits) & 0xFF)
            if bits == 8:
                bits = 0
                out.append(acc & 0xFF)
            acc &= (1 << bits) - 1
            i += 1
            continue
        best_len, best_pos = _longest_match(data, i, candidate, chain, max_chain)
        acc, bits = _put_match(out, acc, bits, i - best_pos, best_len)
        if i + best_len >= n - 2:
            i += best_len
            break
        # The first position is in the tables already; add the rest of the match.
        for pos in range(i + 1, i + best_len):
            key = (data[pos] << 8) | data[pos + 1]
            chain[pos & (_HISTORY - 1)] = head.get(key, -1)
            head[key] = pos
        i += best_len
    acc, bits = _finish(out, acc, bits, data, i, head)
    return bytes(out)


def _finish(
    out: bytearray, acc: int, bits: int, data: bytes, i: int, head: dict[int, int]
) -> tuple[int, int]:
    """The last one or two bytes (a 2-byte match if the pair was seen in the window), the end."""
    n = len(data)
    if i == n - 2:
        candidate = head.get((data[i] << 8) | data[i + 1], -1)
        if candidate >= 0 and candidate + _HISTORY > i:
            acc, bits = _put_match(out, acc, bits, i - candidate, 2)
        else:
            acc, bits = _put(out, acc, bits, 9, data[i])
            acc, bits = _put(out, acc, bits, 9, data[i + 1])
    elif i == n - 1:
        acc, bits = _put(out, acc, bits, 9, data[i])
    return _put(out, acc, bits, 16, _END_MARKER)


def _longest_match(
    data: bytes, i: int, candidate: int, chain: list[int], max_chain: int | None
) -> tuple[int, int]:
    """The longest match for position ``i`` (nearest wins ties): (length, earlier position)."""
    n = len(data)
    best_len, best_pos = 2, candidate
    tries = 0
    pos = candidate
    while pos >= 0 and pos + _HISTORY > i:
        if max_chain is not None:
            tries += 1
            if tries > max_chain:
                break
        # Both start with the same two bytes; worth a look only if it beats the best length.
        if data[pos + 2 : pos + best_len + 1] == data[i + 2 : i + best_len + 1]:
            best_pos = pos
            length = best_len + 1
            # Whole 8-byte steps compare as slices (C speed), then byte by byte.
            while (
                i + length + 8 <= n
                and data[i + length : i + length + 8] == data[pos + length : pos + length + 8]
            ):
                length += 8
            while i + length < n and data[i + length] == data[pos + length]:
                length += 1
            if i + length == n:
                return length, pos
            best_len = length
        pos = chain[pos & (_HISTORY - 1)]
    return best_len, best_pos


def lzs_decompress_untrusted(data: bytes, limit: int) -> bytes:
    """Decompress one LZS packet from the peer into at most ``limit`` bytes.

    :raises BadCompressedData: the stream is malformed, truncated, lacks its end marker, refers
        before the start of the output or would exceed ``limit``.
    """
    out = bytearray()
    end = len(data)
    pos = 0
    acc = 0
    bits = 0

    def take(count: int) -> int:
        nonlocal pos, acc, bits
        while bits < count:
            if pos >= end:
                raise BadCompressedData("LZS stream ends without its end marker")
            acc = (acc << 8) | data[pos]
            pos += 1
            bits += 8
        bits -= count
        value = acc >> bits
        acc &= (1 << bits) - 1
        return value

    while True:
        token = take(9)
        if token < 0x100:
            if len(out) >= limit:
                raise BadCompressedData("LZS output exceeds the packet limit")
            out.append(token)
            continue
        if token == 0x180:
            return bytes(out)
        offset = token & 0x7F
        if token < 0x180:
            offset = (offset << 4) | take(4)
        length = _take_length(take, limit)
        if offset == 0 or offset > len(out):
            raise BadCompressedData("LZS match points before the start of the packet")
        if len(out) + length > limit:
            raise BadCompressedData("LZS output exceeds the packet limit")
        start = len(out) - offset
        if offset >= length:
            out += out[start : start + length]
        else:
            pattern = bytes(out[start:])
            out += (pattern * (length // offset + 1))[:length]


def _take_length(take: Callable[[int], int], limit: int) -> int:
    code = take(2)
    if code != 3:
        return code + 2
    code = take(2)
    if code != 3:
        return code + 5
    length = 8
    while True:
        nibble = take(4)
        length += nibble
        if nibble != 15:
            return length
        if length > limit:
            raise BadCompressedData("LZS match length exceeds the packet limit")
