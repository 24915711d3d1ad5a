"""PROXY protocol version 2 headers (proxy-protocol.txt §2.2).

Provenance: the headers are built byte by byte from the layout of haproxy
``doc/proxy-protocol.txt`` (revision 2020/03/05), §2.2: the 12-byte signature
``0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A``, the version/command byte (``\\x21`` PROXY,
``\\x20`` LOCAL), the family/transport bytes of its "In practice" list (``\\x11`` TCP over IPv4:
12 address bytes; ``\\x21`` TCP over IPv6: 36; ``\\x31`` UNIX stream: 216; ``\\x00`` UNSPEC), the
16-bit length, then ``struct proxy_addr`` and TLVs (``struct pp2_tlv``: type, length_hi,
length_lo, value; types ``PP2_TYPE_NOOP`` 0x04 and ``PP2_TYPE_UNIQUE_ID`` 0x05). Headers captured
from a real HAProxy are in ``tests/vectors/proxyproto`` (``test_proxyproto_vectors.py``).
"""

from __future__ import annotations

import ipaddress
import struct

import pytest

from ocgate.errors import BadProxyHeader
from ocgate.proxyproto import (
    MAX_HEADER,
    V2_MAX_PAYLOAD,
    V2_SIGNATURE,
    Command,
    Family,
    ProxyHeader,
    Transport,
    pull_proxy_header_untrusted,
)

CLIENT_HELLO = b"\x16\x03\x01\x00\x05hello"


def v2(ver_cmd: int, fam: int, payload: bytes, *, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return V2_SIGNATURE + bytes([ver_cmd, fam]) + struct.pack("!H", size) + payload


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.ip_address(src).packed
        + ipaddress.ip_address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


TCP4 = v2(0x21, 0x11, inet("198.18.0.2", "198.18.0.1", 40000, 443))
TCP6 = v2(0x21, 0x21, inet("2001:db8::7", "2001:db8::1", 50000, 8443))
LOCAL = v2(0x20, 0x00, b"")


def test_the_signature_is_the_specifications() -> None:
    assert bytes.fromhex("0D0A0D0A000D0A515549540A") == V2_SIGNATURE
    assert MAX_HEADER == 16 + V2_MAX_PAYLOAD == 536


def test_tcp_over_ipv4_and_the_bytes_after_it() -> None:
    header = pull_proxy_header_untrusted(TCP4 + CLIENT_HELLO)
    assert header == ProxyHeader(
        version=2,
        command=Command.PROXY,
        family=Family.INET,
        transport=Transport.STREAM,
        source="198.18.0.2",
        destination="198.18.0.1",
        source_port=40000,
        destination_port=443,
        length=28,
    )
    assert (TCP4 + CLIENT_HELLO)[header.length :] == CLIENT_HELLO


def test_tcp_over_ipv6() -> None:
    header = pull_proxy_header_untrusted(TCP6)
    assert header is not None
    assert (header.family, header.source, header.destination) == (
        Family.INET6,
        "2001:db8::7",
        "2001:db8::1",
    )
    assert (header.source_port, header.destination_port, header.length) == (50000, 8443, 52)


def test_an_ipv4_mapped_source_is_the_ipv4_client() -> None:
    header = pull_proxy_header_untrusted(v2(0x21, 0x21, inet("::ffff:192.0.2.9", "::1", 1, 2)))
    assert header is not None
    assert header.source == "192.0.2.9"


def test_local_skips_whatever_follows_even_a_bogus_family() -> None:
    header = pull_proxy_header_untrusted(LOCAL + CLIENT_HELLO)
    assert header is not None
    assert (header.command, header.source, header.length) == (Command.LOCAL, None, 16)
    junk = v2(0x20, 0xFF, b"\x01\x02\x03")  # §2.2: the receiver must skip `length` bytes.
    skipped = pull_proxy_header_untrusted(junk)
    assert skipped is not None
    assert (skipped.command, skipped.length) == (Command.LOCAL, 19)


@pytest.mark.parametrize(
    ("fam", "payload", "family", "transport"),
    [
        (0x00, b"", Family.UNSPEC, Transport.UNSPEC),
        (0x00, b"\x01" * 12, Family.UNSPEC, Transport.UNSPEC),
        (0x10, inet("192.0.2.1", "192.0.2.2", 1, 2), Family.INET, Transport.UNSPEC),
        (0x12, inet("192.0.2.1", "192.0.2.2", 1, 2), Family.INET, Transport.DGRAM),
        (0x22, inet("2001:db8::1", "2001:db8::2", 1, 2), Family.INET6, Transport.DGRAM),
        (0x31, b"/a".ljust(108, b"\0") + b"/b".ljust(108, b"\0"), Family.UNIX, Transport.STREAM),
        (0x32, bytes(216), Family.UNIX, Transport.DGRAM),
    ],
)
def test_valid_headers_without_a_tcp_address_keep_the_peer(
    fam: int, payload: bytes, family: Family, transport: Transport
) -> None:
    header = pull_proxy_header_untrusted(v2(0x21, fam, payload))
    assert header is not None
    assert (header.command, header.family, header.transport) == (Command.PROXY, family, transport)
    assert (header.source, header.destination, header.source_port) == (None, None, None)


def test_tlvs_after_the_addresses_are_skipped() -> None:
    payload = inet("198.18.0.2", "198.18.0.1", 1, 2) + tlv(0x05, b"id-1") + tlv(0x04, b"")
    header = pull_proxy_header_untrusted(v2(0x21, 0x11, payload) + CLIENT_HELLO)
    assert header is not None
    assert (header.source, header.length) == ("198.18.0.2", 16 + len(payload))


def test_the_largest_header_is_taken() -> None:
    payload = inet("198.18.0.2", "198.18.0.1", 1, 2) + tlv(0x04, bytes(V2_MAX_PAYLOAD - 15))
    assert len(payload) == V2_MAX_PAYLOAD
    header = pull_proxy_header_untrusted(v2(0x21, 0x11, payload))
    assert header is not None
    assert header.length == MAX_HEADER


@pytest.mark.parametrize("cut", range(len(TCP4)))
def test_every_prefix_asks_for_more(cut: int) -> None:
    assert pull_proxy_header_untrusted(TCP4[:cut]) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (V2_SIGNATURE[:5] + b"\x01", "v2 signature does not match"),
        (b"\r\n\r\n\x00\r\nQUIT\r", "v2 signature does not match"),
        (v2(0x11, 0x11, inet("1.2.3.4", "1.2.3.5", 1, 2)), "version 1, not 2"),
        (v2(0x31, 0x11, inet("1.2.3.4", "1.2.3.5", 1, 2)), "version 3, not 2"),
        (v2(0x22, 0x11, inet("1.2.3.4", "1.2.3.5", 1, 2)), "unassigned command 2"),
        (v2(0x2F, 0x00, b""), "unassigned command 15"),
        (v2(0x21, 0x41, bytes(12)), "unknown family/transport 0x41"),
        (v2(0x21, 0x13, bytes(12)), "unknown family/transport 0x13"),
        (v2(0x21, 0x11, bytes(11)), "11 address bytes, the family needs 12"),
        (v2(0x21, 0x21, bytes(12)), "12 address bytes, the family needs 36"),
        (v2(0x21, 0x31, bytes(215)), "215 address bytes, the family needs 216"),
        (v2(0x21, 0x11, bytes(12) + b"\x04\x00"), "truncated TLV"),
        (v2(0x21, 0x11, bytes(12) + tlv(0x04, b"ab")[:-1]), "TLV longer than the header"),
        (v2(0x21, 0x11, bytes(12) + b"\x20\xff\xff" + bytes(20)), "TLV longer than the header"),
    ],
)
def test_hostile_headers_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(BadProxyHeader, match=reason):
        pull_proxy_header_untrusted(data)


@pytest.mark.parametrize("length", [V2_MAX_PAYLOAD + 1, 0xFFFF])
def test_an_oversize_length_is_refused_before_its_bytes_arrive(length: int) -> None:
    fixed = V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", length)
    with pytest.raises(BadProxyHeader, match=f"{length} bytes after the header"):
        pull_proxy_header_untrusted(fixed)
