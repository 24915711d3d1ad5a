"""PROXY protocol version 1 lines (proxy-protocol.txt §2.1).

Provenance: the valid lines are the specification's own, from haproxy ``doc/proxy-protocol.txt``
(revision 2020/03/05), §2.1: the example "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\\r\\n",
the three longest lines it lists (56 chars for TCP4, 104 for TCP6, 107 for the UNKNOWN worst
case) and the 15-char short UNKNOWN form. The hostile lines break one rule of §2.1 each.
"""

from __future__ import annotations

import pytest

from ocgate.errors import BadProxyHeader
from ocgate.proxyproto import (
    V1_MAX_LINE,
    Command,
    Family,
    ProxyHeader,
    Transport,
    pull_proxy_header_untrusted,
)

SPEC_EXAMPLE = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
HTTP_AFTER = b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
MAX_TCP4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
FULL6 = b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
MAX_TCP6 = b"PROXY TCP6 " + FULL6 + b" " + FULL6 + b" 65535 65535\r\n"
SHORT_UNKNOWN = b"PROXY UNKNOWN\r\n"
WORST_UNKNOWN = b"PROXY UNKNOWN " + FULL6 + b" " + FULL6 + b" 65535 65535\r\n"


def test_the_specification_example_and_the_bytes_after_it() -> None:
    header = pull_proxy_header_untrusted(SPEC_EXAMPLE + HTTP_AFTER)
    assert header == ProxyHeader(
        version=1,
        command=Command.PROXY,
        family=Family.INET,
        transport=Transport.STREAM,
        source="192.168.0.1",
        destination="192.168.0.11",
        source_port=56324,
        destination_port=443,
        length=len(SPEC_EXAMPLE),
    )
    assert (SPEC_EXAMPLE + HTTP_AFTER)[header.length :] == HTTP_AFTER


def test_the_longest_lines_of_the_specification() -> None:
    assert (len(MAX_TCP4), len(MAX_TCP6), len(SHORT_UNKNOWN), len(WORST_UNKNOWN)) == (
        56,
        104,
        15,
        107,
    )
    tcp4 = pull_proxy_header_untrusted(MAX_TCP4)
    assert tcp4 is not None
    assert (tcp4.source, tcp4.source_port, tcp4.length) == ("255.255.255.255", 65535, 56)
    tcp6 = pull_proxy_header_untrusted(MAX_TCP6)
    assert tcp6 is not None
    assert tcp6.family is Family.INET6
    assert tcp6.source == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    for line in (SHORT_UNKNOWN, WORST_UNKNOWN):
        unknown = pull_proxy_header_untrusted(line + b"\x16\x03\x01")
        assert unknown is not None
        assert (unknown.family, unknown.source, unknown.length) == (Family.UNSPEC, None, len(line))


def test_tcp6_compressed_and_upper_case_forms_are_canonicalised() -> None:
    header = pull_proxy_header_untrusted(b"PROXY TCP6 2001:DB8::1 2001:db8:0:0::2 1 65535\r\n")
    assert header is not None
    assert (header.source, header.destination) == ("2001:db8::1", "2001:db8::2")
    assert (header.source_port, header.destination_port) == (1, 65535)


def test_an_ipv4_mapped_source_is_the_ipv4_client() -> None:
    header = pull_proxy_header_untrusted(b"PROXY TCP6 ::ffff:198.18.0.2 ::1 40000 443\r\n")
    assert header is not None
    assert header.source == "198.18.0.2"


@pytest.mark.parametrize("cut", range(len(SPEC_EXAMPLE)))
def test_every_prefix_asks_for_more(cut: int) -> None:
    assert pull_proxy_header_untrusted(SPEC_EXAMPLE[:cut]) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x16\x03\x01\x02\x00", "neither the v1 nor the v2 signature"),  # A TLS ClientHello.
        (b"GET / HTTP/1.1\r\n", "neither the v1 nor the v2 signature"),
        (b"PROXZ", "does not start 'PROXY '"),
        (b"PROXY\tTCP4", "does not start 'PROXY '"),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n", "LF without CR"),
        (b"PROXY TCP4 192.168.0.1\r192.168.0.11 56324 443\r\n", "CR inside the line"),
        (b"PROXY \r\n", "not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY tcp4 1.2.3.4 1.2.3.5 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n", "not 4 fields"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n", "not 4 fields"),
        (b"PROXY TCP4  1.2.3.4 1.2.3.5 1 2\r\n", "not 4 fields"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 \r\n", "not 4 fields"),
        (b"PROXY TCP4 1.2.3.256 1.2.3.5 1 2\r\n", "not an IPv4 address"),
        (b"PROXY TCP4 01.2.3.4 1.2.3.5 1 2\r\n", "not an IPv4 address"),
        (b"PROXY TCP4 1.2.3 1.2.3.5 1 2\r\n", "not an IPv4 address"),
        (b"PROXY TCP4 ::1 1.2.3.5 1 2\r\n", "not an IPv4 address"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n", "not a port number"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 080 2\r\n", "not a port number"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n", "not a port number"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 +2\r\n", "not a port number"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 \xd9\xa1\r\n", "not a port number"),  # Arabic-Indic 1.
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "not an IPv6 address"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "not an IPv6 address"),
        (b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", "not an IPv6 address"),
        (b"PROXY TCP6 ::1::2 ::1 1 2\r\n", "not an IPv6 address"),
        (b"PROXY UNKNOWN" + b" " * 100, f"no CRLF within the first {V1_MAX_LINE} bytes"),
        (b"PROXY TCP4 " + b"1" * 200 + b"\r\n", f"no CRLF within the first {V1_MAX_LINE} bytes"),
    ],
)
def test_hostile_lines_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(BadProxyHeader, match=reason):
        pull_proxy_header_untrusted(data)


def test_a_line_one_byte_over_the_limit_is_refused_and_the_limit_itself_is_not() -> None:
    at_limit = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LINE - 16) + b"\r\n"
    assert len(at_limit) == V1_MAX_LINE
    assert pull_proxy_header_untrusted(at_limit) is not None
    over = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LINE - 15) + b"\r\n"
    with pytest.raises(BadProxyHeader, match="no CRLF"):
        pull_proxy_header_untrusted(over)
