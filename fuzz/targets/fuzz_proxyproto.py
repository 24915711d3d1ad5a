"""The PROXY protocol header (``listen-proxy-proto``): the parser and the per-connection reader.

Only ``BadProxyHeader`` may escape the parser; the reader (``receive_data``, ``handle_timer``) may
raise nothing. Input: byte 0 picks the mode.

* Raw (even): the rest is a connection's first bytes. A header never claims more bytes than were
  given or than 536, and names a source exactly when it names a destination. The same bytes fed
  to a :class:`ProxyHeaderReader` in pieces (their sizes drawn from the input) give the same
  verdict and header as the whole, and the bytes after the header start what followed it.
* Built (odd): the rest picks a version, two addresses of one family, two ports and TLVs; the
  target encodes the header itself (an independent encoder, from the layout of
  proxy-protocol.txt §2.1/§2.2) and checks the parser gives those addresses and ports back and
  leaves the trailing bytes alone.

Seeds: the specification's v1 example and longest lines, v2 TCP4/TCP6/LOCAL/UNSPEC headers, and
built inputs of both versions.
"""

from __future__ import annotations

import ipaddress
import struct

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.errors import BadProxyHeader
    from ocgate.proxyproto import (
        MAX_HEADER,
        V2_SIGNATURE,
        HeaderReceived,
        ProxyHeader,
        ProxyHeaderReader,
        pull_proxy_header_untrusted,
    )

_TAIL = b"\x16\x03\x01\x00\x04tail"


def _parse(data: bytes) -> ProxyHeader | None:
    try:
        header = pull_proxy_header_untrusted(data)
    except BadProxyHeader:
        return None
    if header is not None:
        assert 0 < header.length <= min(len(data), MAX_HEADER), "header longer than its bytes"
        assert (header.source is None) == (header.destination is None)
        assert (header.source_port is None) == (header.source is None)
    return header


def _raw(data: bytes) -> None:
    sizes, stream = data[:4], data[4:]
    whole = _parse(stream)
    reader = ProxyHeaderReader(now=0.0)
    offset = 0
    for size in [*(s + 1 for s in sizes), len(stream)]:
        reader.receive_data(stream[offset : offset + size], 0.0)
        offset += size
        if reader.done:
            break
    reader.handle_timer(1e9)
    event = reader.next_event()
    assert event is not None, "the reader gave no verdict on a whole stream"
    if isinstance(event, HeaderReceived):
        assert event.header == whole, "split and whole disagree"
        assert stream[event.header.length :].startswith(event.data)
    else:
        assert whole is None, "the reader refused a header the parser took"


def _built(data: bytes) -> None:
    v6 = len(data) > 0 and data[0] & 1 == 1
    version = 1 if len(data) > 0 and data[0] & 2 else 2
    size = 16 if v6 else 4
    raw = data[1:].ljust(2 * size + 4, b"\0")
    source = ipaddress.ip_address(raw[:size])
    destination = ipaddress.ip_address(raw[size : 2 * size])
    sport, dport = struct.unpack_from("!HH", raw, 2 * size)
    if version == 1:
        proto = b"TCP6" if v6 else b"TCP4"
        header = b"PROXY %s %s %s %d %d\r\n" % (
            proto,
            str(source).encode(),
            str(destination).encode(),
            sport,
            dport,
        )
    else:
        tlvs = data[1 + 2 * size + 4 : 1 + 2 * size + 4 + 64]
        tlv = b"\x04" + struct.pack("!H", len(tlvs)) + tlvs
        payload = source.packed + destination.packed + struct.pack("!HH", sport, dport) + tlv
        header = V2_SIGNATURE + bytes([0x21, 0x21 if v6 else 0x11])
        header += struct.pack("!H", len(payload)) + payload
    parsed = pull_proxy_header_untrusted(header + _TAIL)
    assert parsed is not None, "a built header was not whole"
    assert parsed.length == len(header), "wrong header length"
    mapped = getattr(source, "ipv4_mapped", None)
    assert parsed.source == str(mapped if mapped is not None else source), "source changed"
    assert ipaddress.ip_address(parsed.destination or "") in (
        destination,
        getattr(destination, "ipv4_mapped", None),
    ), "destination changed"
    assert (parsed.source_port, parsed.destination_port) == (sport, dport), "ports changed"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] % 2 == 0:
        _raw(data[1:])
    else:
        _built(data[1:])


def seeds() -> list[bytes]:
    """The specification's lines and headers (raw mode) and built headers of both versions."""
    full6 = b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    raw = [
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n\r\n",
        b"PROXY TCP6 " + full6 + b" " + full6 + b" 65535 65535\r\n",
        b"PROXY UNKNOWN\r\n",
        V2_SIGNATURE + bytes.fromhex("2111000CC6120002C61200019C4001BB") + _TAIL,
        V2_SIGNATURE
        + b"\x21\x21\x00\x24"
        + bytes(15)
        + b"\x01"
        + bytes(15)
        + b"\x02\x00\x01\x00\x02",
        V2_SIGNATURE + b"\x20\x00\x00\x00" + _TAIL,
        V2_SIGNATURE + b"\x21\x00\x00\x03\x04\x00\x00",
        _TAIL,
    ]
    out = [b"\x00" + b"\x03\x07\x00\x10" + r for r in raw]
    out += [b"\x01" + bytes([mode]) + bytes(range(1, 60)) for mode in range(4)]
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
