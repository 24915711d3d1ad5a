"""The PROXY protocol, versions 1 and 2, as a receiver (``listen-proxy-proto = true``).

Specification: haproxy ``doc/proxy-protocol.txt``, "The PROXY protocol, Versions 1 & 2"
(revision 2020/03/05). A TCP balancer (HAProxy ``send-proxy`` / ``send-proxy-v2``) prepends one
header to each connection it relays, naming the client it relays for; ocgate then treats that
client's address as the connection's remote address everywhere (accept gate, bans, logs, scripts,
occtl, RADIUS). The parser is sans-IO: :func:`pull_proxy_header_untrusted` over the bytes so far,
and :class:`ProxyHeaderReader` for one connection, with its time limit passed in.

Where this is read and how the address travels: a worker reads the header before TLS
(``daemon/_client.py``); the supervisor, which never parses network bytes, learns the address
from the worker (``RealAddress``) and applies the accept gate to it (``daemon/_accept.py``). See
docs/ARCHITECTURE.md.

Compared with ocserv (``src/worker-proxyproto.c``, ``src/worker-vpn.c``, ``src/main.c``,
``src/main-worker-cmd.c``), the same:

* every connection on the listener must start with a header; one without (a client connecting
  straight to the gateway), a malformed one, or one not complete within 10 s is closed with a log
  line, before TLS;
* a LOCAL command (a balancer's health check) is closed at once, logged at debug level;
* a header longer than 16 + 520 bytes is refused;
* a valid header without a usable address (UNSPEC, UNIX, UDP; v1 ``UNKNOWN``) keeps the TCP
  peer's address;
* the header's destination replaces the local address (ocserv's ``our_addr``);
* the UDP (DTLS) side is unchanged: the PROXY protocol is for TCP only, DTLS datagrams come
  straight from the client and are matched by session, not by address.

Where ocgate differs, and why:

* **Version 1 is accepted too** (ocserv reads only version 2, so a ``send-proxy`` balancer fails
  there): the specification recommends that version 2 receivers also take version 1, and only the
  trusted balancer can send either, since the listener takes no connection without a header.
* **A v2 header with a version other than 2 is refused**; ocserv skips it and keeps the TCP peer.
  The specification says "the receiver must only accept this value".
* **An address block shorter than its family needs is refused** (ocserv keeps the TCP peer and
  goes on): such a header is malformed, and guessing would let a broken balancer pass unnoticed.
* **INET/INET6 with an UNSPEC transport** (``\\x10``, ``\\x20``) keep the TCP peer (ocserv reads
  the addresses): the specification says the receiver should ignore them.
* **TLVs are checked to be well-formed, then skipped** (ocserv skips them unchecked on TCP, and
  reads the SSL TLVs only on its UNIX-socket listener, which ocgate does not have). The CRC32C TLV
  is not verified.
* **The accept gate sees the real address before TLS**: ocserv skips the ban check at accept and
  checks the real address after the TLS handshake (``CMD_SESSION_INFO``), killing the worker if it
  is banned; ocgate applies bans, the per-source cap, ``rate-limit-ms`` and the connection's ban
  points to the real address as soon as the header is read, so a banned client costs no TLS
  handshake.
* **IPv4-mapped IPv6 sources** (``::ffff:192.0.2.1``) are reported as the IPv4 address, so an
  IPv4 client is its own source and not part of one shared IPv6 /64.
"""

from __future__ import annotations

from ocgate.proxyproto._header import (
    MAX_HEADER,
    V1_MAX_LINE,
    V2_MAX_PAYLOAD,
    V2_SIGNATURE,
    Command,
    Family,
    ProxyHeader,
    Transport,
)
from ocgate.proxyproto._parse import pull_proxy_header_untrusted
from ocgate.proxyproto._reader import HEADER_TIMEOUT, ProxyHeaderReader
from ocgate.proxyproto.events import Event, HeaderReceived, HeaderRefused

__all__ = [
    "HEADER_TIMEOUT",
    "MAX_HEADER",
    "V1_MAX_LINE",
    "V2_MAX_PAYLOAD",
    "V2_SIGNATURE",
    "Command",
    "Event",
    "Family",
    "HeaderReceived",
    "HeaderRefused",
    "ProxyHeader",
    "ProxyHeaderReader",
    "Transport",
    "pull_proxy_header_untrusted",
]
