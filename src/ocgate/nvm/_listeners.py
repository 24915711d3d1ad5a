"""Collector sockets: UDP, TCP and DTLS 1.2 (pyOpenSSL) adapters feeding a :class:`Collector`.

Theory of operation
-------------------
Every adapter does the same three things: ask :meth:`Collector.admit` whether the source is on
the allow-list (before any state is kept for it), turn bytes into whole IPFIX messages, and hand
each to :meth:`Collector.receive_message` with the :class:`ExporterKey` of its transport session
(:meth:`ExporterKey.for_peer`: datagram exporters are keyed by source address alone, so a new
source port keeps the templates and a spray from many ports is one exporter; a TCP connection is
its own session).

* **UDP**: one datagram is one message. The socket is read from an ``add_reader`` callback
  that drains up to ``_UDP_BURST`` datagrams per wake-up (no per-datagram loop iteration or
  transport overhead, as a ``DatagramProtocol`` would have). The socket asks for a 16 MiB
  receive buffer (``SO_RCVBUFFORCE`` as root, else ``SO_RCVBUF`` up to ``net.core.rmem_max``);
  kernel drops show in :func:`udp_receive_errors` (``/proc/net/snmp`` ``RcvbufErrors``).
  Admitted sources are remembered by address (at most ``_MAX_KEYS``, then forgotten all at once).
* **TCP**: a stream is cut with :func:`split_stream_untrusted`; a malformed stream closes the
  connection. Connections are bounded (``max_connections``, and ``max_connections_per_address``
  from one address); a closed session's templates are forgotten (RFC 7011 §8: TCP templates live
  as long as the session).
* **DTLS** (:class:`DtlsDemux`, RFC 7011 §11, RFC 6347): one UDP socket, one pyOpenSSL
  ``Connection`` with memory BIOs per peer. A datagram from an unknown peer goes through a
  throw-away ``Connection`` and ``DTLSv1_listen``: without a valid cookie OpenSSL answers with a
  HelloVerifyRequest and the object is discarded, so **no state is kept for a peer until it has
  proved its address** (RFC 6347 §4.2.1; no amplification of the certificate chain towards a
  spoofed source). Cookies are an HMAC of the peer address and port under a secret that rotates
  every ``cookie_lifetime`` seconds (the previous secret is still accepted). Only datagrams that
  look like a DTLS handshake record reach OpenSSL, and new handshakes are rate limited. With a CA
  configured the exporter must present a certificate it issued (mutual DTLS); a failed handshake
  drops the peer. Peers are bounded (``max_peers``, least recently heard from evicted; at most
  ``max_peers_per_address`` per source address, that address's oldest evicted) and idle ones
  expire.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 -- this module is the I/O adapter.
import hashlib
import hmac
import logging
import secrets
import socket  # noqa: TID251 -- socket options (receive buffer, address family).
import time  # noqa: TID251 -- the adapters stamp messages with the wall clock.
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, cast

from OpenSSL import SSL

from ocgate.errors import BadIpfix
from ocgate.nvm._collector import Collector
from ocgate.nvm._config import ListenAddress, NvmSettings
from ocgate.nvm._credentials import load_dtls_credentials
from ocgate.nvm.ipfix import ExporterKey, split_stream_untrusted

__all__ = [
    "RCVBUF_BYTES",
    "DtlsDemux",
    "DtlsStats",
    "Listeners",
    "make_dtls_context",
    "start_listeners",
    "udp_receive_errors",
]

log = logging.getLogger("ocgate.nvm.listen")

RCVBUF_BYTES: Final = 16 * 1024 * 1024
_DTLS1_2: Final = 0xFEFD
_HANDSHAKE: Final = 22
_MAX_DATAGRAM: Final = 65535
_COOKIE_LEN: Final = 16
_UDP_BURST: Final = 256
"""Datagrams read per event-loop wake-up before other tasks get a turn."""
_MAX_KEYS: Final = 65536
"""Admitted UDP source addresses remembered (then the memo is cleared and rebuilt)."""

Address = tuple[str, int]


def udp_receive_errors() -> int | None:
    """The kernel's ``Udp: RcvbufErrors`` counter (datagrams dropped for a full buffer)."""
    try:
        with open("/proc/net/snmp", encoding="ascii") as stream:
            lines = [line.split() for line in stream if line.startswith("Udp:")]
    except OSError:
        return None
    if len(lines) < 2 or "RcvbufErrors" not in lines[0]:
        return None
    return int(lines[1][lines[0].index("RcvbufErrors")])


def _bind_udp(address: ListenAddress) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, RCVBUF_BYTES)
                break
            except OSError:
                continue
        sock.bind((address.host, address.port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _port(value: object) -> int:
    assert isinstance(value, int)  # IP socket addresses carry an int port.
    return value


# --- UDP -----------------------------------------------------------------------------------------


class _UdpReader:
    """Plain IPFIX over UDP: drains the socket from an ``add_reader`` callback.

    One wake-up of the event loop reads up to ``_UDP_BURST`` datagrams (a ``DatagramProtocol``
    reads one per loop iteration, paying the selector and handle overhead each time), and they
    share one wall clock reading.
    """

    def __init__(self, collector: Collector, sock: socket.socket) -> None:
        self.collector = collector
        self.sock = sock
        self.keys: dict[str, ExporterKey] = {}
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        recvfrom = self.sock.recvfrom
        receive = self.collector.receive_message
        keys = self.keys
        now = time.time()
        for _ in range(_UDP_BURST):
            try:
                data, addr = recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # E.g. ICMP errors reported on the socket; keep reading.
                log.debug("nvm: UDP receive error: %s", exc)
                return
            key = keys.get(addr[0])
            if key is None:
                key = self._admit(str(addr[0]))
                if key is None:
                    continue
            receive(data, key, now)

    def _admit(self, host: str) -> ExporterKey | None:
        if not self.collector.admit(host):
            return None
        if len(self.keys) >= _MAX_KEYS:
            self.keys.clear()
        key = self.keys[host] = ExporterKey.for_peer("udp", host, 0)
        return key

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()


# --- TCP -----------------------------------------------------------------------------------------


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, owner: Listeners) -> None:
        self.owner = owner
        self.collector = owner.collector
        self.buffer = b""
        self.key: ExporterKey | None = None
        self.host = ""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # A stream server hands out these.
        peer = transport.get_extra_info("peername")
        host, port = str(peer[0]), int(peer[1])
        owner = self.owner
        if (
            not self.collector.admit(host)
            or owner.tcp_sessions >= owner.max_connections
            or owner.tcp_by_address.get(host, 0) >= owner.max_connections_per_address
        ):
            transport.abort()
            return
        owner.tcp_sessions += 1
        owner.tcp_by_address[host] = owner.tcp_by_address.get(host, 0) + 1
        self.host = host
        self.transport = transport
        self.key = ExporterKey.for_peer("tcp", host, port)

    def data_received(self, data: bytes) -> None:
        if self.key is None or self.transport is None:
            return
        try:
            messages, self.buffer = split_stream_untrusted(self.buffer + data)
        except BadIpfix as exc:
            log.info("nvm: closing TCP exporter %s:%d: %s", self.key.address, self.key.port, exc)
            self.owner.tcp_malformed += 1
            self.transport.abort()
            return
        now = time.time()
        for message in messages:
            self.collector.receive_message(message, self.key, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.key is not None:
            owner = self.owner
            owner.tcp_sessions -= 1
            left = owner.tcp_by_address.get(self.host, 1) - 1
            if left > 0:
                owner.tcp_by_address[self.host] = left
            else:
                owner.tcp_by_address.pop(self.host, None)
            self.collector.forget_exporter(self.key)
            self.key = None


# --- DTLS ----------------------------------------------------------------------------------------


def make_dtls_context(
    cert: str, key: str, ca: str | None, cookie_secret: Callable[[], tuple[bytes, ...]]
) -> SSL.Context:
    """A DTLS ≥ 1.2 server context; mutual when ``ca`` is set.

    :param cookie_secret: returns the secrets cookies are made with (first) and checked against.
    :raises ConfigError: unreadable certificate, key or CA (``key`` names which).
    """
    ctx = SSL.Context(SSL.DTLS_SERVER_METHOD)
    ctx.set_min_proto_version(_DTLS1_2)
    ctx.set_options(SSL.OP_NO_TICKET)
    load_dtls_credentials(ctx, cert, key, ca)
    if ca is not None:
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)

    def cookie(conn: SSL.Connection, secret: bytes) -> bytes:
        host, port = conn.get_app_data()
        mac = hmac.new(secret, f"{host}|{port}".encode(), hashlib.sha256)
        return mac.digest()[:_COOKIE_LEN]

    def generate(conn: SSL.Connection) -> bytes:
        return cookie(conn, cookie_secret()[0])

    def verify(conn: SSL.Connection, value: bytes) -> bool:
        return any(hmac.compare_digest(cookie(conn, s), value) for s in cookie_secret())

    ctx.set_cookie_generate_callback(generate)
    ctx.set_cookie_verify_callback(verify)
    return ctx


@dataclass(slots=True)
class _Peer:
    conn: SSL.Connection
    addr: Address
    key: ExporterKey
    started: float
    last_seen: float
    established: bool = False
    identity: str | None = None


@dataclass(slots=True)
class DtlsStats:
    """DTLS counters."""

    cookies_sent: int = 0
    handshakes: int = 0
    handshake_failures: int = 0
    rate_limited: int = 0
    not_handshake: int = 0
    evicted: int = 0
    closed: int = 0
    messages: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class DtlsDemux:
    """DTLS server side for many exporters over one UDP socket (no socket inside).

    Feed :meth:`receive_datagram`, send what :meth:`datagrams_to_send` returns, and call
    :meth:`handle_timer` when :meth:`get_timer` says (retransmissions, expiry).

    :param context: from :func:`make_dtls_context` (its cookie callbacks use :attr:`secrets`).
    :param deliver: called with each decrypted IPFIX message.
    :param admit: allow-list check of a source address.
    """

    def __init__(
        self,
        context_factory: Callable[[Callable[[], tuple[bytes, ...]]], SSL.Context],
        deliver: Callable[[bytes, ExporterKey, float], None],
        admit: Callable[[str], bool],
        *,
        max_peers: int = 10000,
        max_peers_per_address: int = 4,
        handshake_timeout: float = 30.0,
        idle_timeout: float = 86400.0,
        handshakes_per_second: float = 200.0,
        cookie_lifetime: float = 300.0,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._random = random_bytes
        self._secrets: tuple[bytes, ...] = (random_bytes(32),)
        self._secret_rotated: float | None = None
        self.context = context_factory(lambda: self._secrets)
        self._deliver = deliver
        self._admit = admit
        self._peers: OrderedDict[Address, _Peer] = OrderedDict()
        self._per_host: dict[str, int] = {}
        self._out: list[tuple[bytes, Address]] = []
        self.max_peers = max_peers
        self.max_peers_per_address = max_peers_per_address
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.cookie_lifetime = cookie_lifetime
        self._rate = handshakes_per_second
        self._tokens = handshakes_per_second
        self._tokens_at: float | None = None
        self.stats = DtlsStats()

    @property
    def peers(self) -> int:
        """Peers holding state (cookie verified)."""
        return len(self._peers)

    def identity(self, addr: Address) -> str | None:
        """The client certificate subject of an established peer, if any."""
        peer = self._peers.get(addr)
        return None if peer is None else peer.identity

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """Datagrams to send (and forget)."""
        out, self._out = self._out, []
        return out

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Process one datagram from ``addr``."""
        peer = self._peers.get(addr)
        if peer is None:
            self._new_peer_untrusted(data, addr, now)
            return
        self._peers.move_to_end(addr)
        peer.last_seen = now
        try:
            peer.conn.bio_write(data)
            if not peer.established:
                self._handshake(peer, addr)
            if peer.established:
                self._read(peer, now)
        except SSL.Error as exc:
            self._fail(peer, addr, exc)
        self._flush(peer.conn, addr)

    def _new_peer_untrusted(self, data: bytes, addr: Address, now: float) -> None:
        if len(data) < 13 or data[0] != _HANDSHAKE or data[1] != 0xFE:
            self.stats.not_handshake += 1
            return
        if not self._admit(addr[0]):
            return
        if not self._take_token(now):
            self.stats.rate_limited += 1
            return
        self._rotate(now)
        conn = SSL.Connection(self.context, None)
        conn.set_app_data(addr)
        conn.set_accept_state()
        conn.bio_write(data)
        try:
            conn.DTLSv1_listen()
        except SSL.WantReadError:
            self.stats.cookies_sent += 1
            self._flush(conn, addr)
            return
        except SSL.Error as exc:
            self._count_error(exc)
            return
        self._make_room(addr[0])
        peer = _Peer(conn, addr, ExporterKey.for_peer("dtls", addr[0], addr[1]), now, now)
        self._peers[addr] = peer
        self._per_host[addr[0]] = self._per_host.get(addr[0], 0) + 1
        try:
            self._handshake(peer, addr)
        except SSL.Error as exc:
            self._fail(peer, addr, exc)
        self._flush(conn, addr)

    def _handshake(self, peer: _Peer, addr: Address) -> None:
        try:
            peer.conn.do_handshake()
        except SSL.WantReadError:
            return
        peer.established = True
        self.stats.handshakes += 1
        cert = peer.conn.get_peer_certificate(as_cryptography=True)
        if cert is not None:
            peer.identity = cert.subject.rfc4514_string()
        log.info(
            "nvm: DTLS exporter %s:%d connected%s",
            addr[0],
            addr[1],
            f" as {peer.identity}" if peer.identity else "",
        )

    def _read(self, peer: _Peer, now: float) -> None:
        while True:
            try:
                message = peer.conn.recv(_MAX_DATAGRAM)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                self.stats.closed += 1
                self._drop(peer.addr)
                return
            self.stats.messages += 1
            self._deliver(message, peer.key, now)

    def _fail(self, peer: _Peer, addr: Address, exc: SSL.Error) -> None:
        if not peer.established:
            self.stats.handshake_failures += 1
            log.info("nvm: DTLS handshake with %s:%d failed: %s", addr[0], addr[1], exc)
        self._count_error(exc)
        self._drop(addr)

    def _drop(self, addr: Address) -> None:
        """Forget a peer (if still held)."""
        if self._peers.pop(addr, None) is None:
            return
        left = self._per_host[addr[0]] - 1
        if left:
            self._per_host[addr[0]] = left
        else:
            del self._per_host[addr[0]]

    def _make_room(self, host: str) -> None:
        """Evict for a new peer: ``host``'s oldest beyond its share, the oldest beyond the total."""
        if self._per_host.get(host, 0) >= max(self.max_peers_per_address, 1):
            oldest = next(a for a in self._peers if a[0] == host)
            self._drop(oldest)
            self.stats.evicted += 1
        while len(self._peers) >= self.max_peers:
            self._drop(next(iter(self._peers)))
            self.stats.evicted += 1

    def _count_error(self, exc: Exception) -> None:
        name = type(exc).__name__
        self.stats.errors[name] = self.stats.errors.get(name, 0) + 1

    def _flush(self, conn: SSL.Connection, addr: Address) -> None:
        while True:
            try:
                data = conn.bio_read(_MAX_DATAGRAM)
            except SSL.WantReadError:
                return
            if not data:
                return
            self._out.append((data, addr))

    def _take_token(self, now: float) -> bool:
        if self._tokens_at is not None:
            self._tokens = min(self._rate, self._tokens + (now - self._tokens_at) * self._rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _rotate(self, now: float) -> None:
        if self._secret_rotated is None:
            self._secret_rotated = now
        elif now - self._secret_rotated >= self.cookie_lifetime:
            self._secrets = (self._random(32), self._secrets[0])
            self._secret_rotated = now

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should run next."""
        deadlines = []
        for peer in self._peers.values():
            if not peer.established:
                timeout = peer.conn.DTLSv1_get_timeout()
                if timeout is not None:
                    deadlines.append(peer.last_seen + timeout)
                deadlines.append(peer.started + self.handshake_timeout)
        if self._peers:
            deadlines.append(min(p.last_seen for p in self._peers.values()) + self.idle_timeout)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Retransmit handshake flights, expire stuck handshakes and idle peers."""
        for addr, peer in list(self._peers.items()):
            if not peer.established:
                if now - peer.started > self.handshake_timeout:
                    self.stats.handshake_failures += 1
                    self._drop(addr)
                    continue
                timeout = peer.conn.DTLSv1_get_timeout()
                if timeout is not None and timeout <= 0:
                    try:
                        peer.conn.DTLSv1_handle_timeout()
                    except SSL.Error as exc:
                        self._fail(peer, addr, exc)
                        continue
                    self._flush(peer.conn, addr)
            elif now - peer.last_seen > self.idle_timeout:
                self._drop(addr)


class _DtlsProtocol(asyncio.DatagramProtocol):
    def __init__(self, demux: DtlsDemux) -> None:
        self.demux = demux
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.demux.receive_datagram(data, (str(addr[0]), _port(addr[1])), time.time())
        self._transmit()

    def _transmit(self) -> None:
        if self.transport is not None:
            for data, addr in self.demux.datagrams_to_send():
                self.transport.sendto(data, addr)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.demux.get_timer()
        if deadline is not None:
            delay = max(0.0, deadline - time.time())
            self._timer = asyncio.get_running_loop().call_later(delay + 0.001, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.demux.handle_timer(time.time())
        self._transmit()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


# --- All listeners -------------------------------------------------------------------------------


class Listeners:
    """The collector's open sockets.

    :ivar bound: the addresses actually bound (port 0 resolved), in configuration order.
    """

    def __init__(
        self,
        collector: Collector,
        *,
        max_connections: int = 4096,
        max_connections_per_address: int = 16,
    ) -> None:
        self.collector = collector
        self.max_connections = max_connections
        self.max_connections_per_address = max_connections_per_address
        self.tcp_sessions = 0
        self.tcp_by_address: dict[str, int] = {}
        self.tcp_malformed = 0
        self.bound: list[ListenAddress] = []
        self.dtls: list[DtlsDemux] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._udp: list[_UdpReader] = []
        self._servers: list[asyncio.Server] = []

    async def add_udp(self, address: ListenAddress) -> ListenAddress:
        """Listen for plain IPFIX datagrams."""
        sock = _bind_udp(address)
        self._udp.append(_UdpReader(self.collector, sock))
        return self._note(None, address, sock)

    async def add_tcp(self, address: ListenAddress) -> ListenAddress:
        """Listen for IPFIX over TCP."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _TcpProtocol(self), address.host, address.port, reuse_address=True
        )
        self._servers.append(server)
        port = int(server.sockets[0].getsockname()[1])
        bound = ListenAddress(address.transport, address.host, port)
        self.bound.append(bound)
        log.info("nvm: listening on %s", bound)
        return bound

    async def add_dtls(
        self, address: ListenAddress, cert: str, key: str, ca: str | None, **options: float
    ) -> ListenAddress:
        """Listen for IPFIX over DTLS (mutual when ``ca`` is set)."""
        demux = DtlsDemux(
            lambda secret: make_dtls_context(cert, key, ca, secret),
            self.collector.receive_message,
            self.collector.admit,
            **options,  # type: ignore[arg-type]
        )
        sock = _bind_udp(address)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _DtlsProtocol(demux), sock=sock)
        self.dtls.append(demux)
        return self._note(transport, address, sock)

    def _note(
        self, transport: asyncio.BaseTransport | None, address: ListenAddress, sock: socket.socket
    ) -> ListenAddress:
        if transport is not None:
            self._transports.append(transport)
        bound = ListenAddress(address.transport, address.host, int(sock.getsockname()[1]))
        self.bound.append(bound)
        log.info("nvm: listening on %s", bound)
        return bound

    async def close(self) -> None:
        """Close every socket."""
        for reader in self._udp:
            reader.close()
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        self._udp.clear()
        self._transports.clear()
        self._servers.clear()

    def receive_buffer_sizes(self) -> list[int]:
        """SO_RCVBUF of each UDP/DTLS socket (the kernel doubles the requested value)."""
        sizes = [
            int(reader.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)) for reader in self._udp
        ]
        for transport in self._transports:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sizes.append(int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)))
        return sizes


async def start_listeners(collector: Collector, settings: NvmSettings) -> Listeners:
    """Open every listener the settings name.

    :raises OSError: a socket could not be bound.
    :raises ConfigError: unusable DTLS certificate or key.
    """
    listeners = Listeners(collector)
    try:
        for address in settings.listen:
            if address.transport == "udp":
                await listeners.add_udp(address)
            else:
                await listeners.add_tcp(address)
        for address in settings.dtls_listen:
            assert settings.dtls_cert is not None  # NvmSettings checks both.
            assert settings.dtls_key is not None
            await listeners.add_dtls(
                address, settings.dtls_cert, settings.dtls_key, settings.dtls_ca
            )
    except BaseException:
        await listeners.close()
        raise
    log.debug("nvm: receive buffers %s", listeners.receive_buffer_sizes())
    return listeners
