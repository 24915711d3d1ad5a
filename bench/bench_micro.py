"""Per-packet micro-benchmarks of the data path: packets per second on one core (no root needed).

    .venv/bin/python bench/bench_micro.py              # every section
    .venv/bin/python bench/bench_micro.py dtls udp     # only sections whose name contains a word

Sections (1,400-byte IP packets, the size a full-MTU tunnel carries):

* ``cstp``: CSTP framing of a 64-packet batch (``send_packets`` + ``frames_to_send``) and
  parsing of the same frames back (``receive_data`` + ``next_event``);
* ``dtls``: record protection per suite — the reference ``RecordProtection`` (``seal`` / ``open``
  with the pseudo-header), and, where present, the association's epoch state as the fast path
  uses it (``seal_data`` and ``open_batch_untrusted`` of a 64-record batch) for every
  implementation available (pure Python, and the compiled ``ocgate._fastpath``);
* ``replay``: the anti-replay window, check + mark of consecutive sequence numbers;
* ``tls``: the CSTP channel's TLS records through ``TlsEndpoint`` (TLS 1.3 and 1.2 AES-GCM, after
  a real handshake with a pyOpenSSL client in memory): one 1,400-byte frame decrypted per
  ``receive_data``, and one encrypted per ``send`` + ``data_to_send``;
* ``udp->tun``: the worker's receive path end to end on one event loop: a real DTLS handshake over
  loopback UDP between the test client of tests/unit/dtls and a ``DtlsPort`` steered socket, then
  bursts of 64 DATA records sent by the client (not timed) and read, decrypted, filtered and
  written by the gateway (timed) — the TUN device is ``/dev/null`` (a ``write(2)`` that costs
  almost nothing, so the figure is the gateway's own cost per packet);
* ``tun->udp``: the send path: 64 packets queued on a datagram socket pair standing in for the TUN
  device (not timed), then read, encrypted and sent over the steered UDP socket (timed);
* ``thread udp->tun`` and ``thread tun->udp``: the same two paths on the worker's data-path thread
  (``ocgate._fastpath.Engine``, src/ocgate/_dataplane.c), which moves established DATA records with
  no Python at all. One pipe is attached to AF_UNIX ``SOCK_SEQPACKET`` socket pairs standing in for
  the connected UDP socket and the TUN device; a forked process feeds one end as fast as the thread
  takes it (for ``udp->tun``, 1,400-byte packets sealed by a client-side compiled epoch state with
  fresh sequence numbers, 64 per ``sendmmsg``; for ``tun->udp``, the plain packets) and this
  process counts what arrives at the other end (TUN writes; records, which it opens once to check
  them) over 5 windows of 0.3 s, after 0.2 s of warm-up. The figure is the median of what
  *arrived*; when the thread itself moved clearly more (``take_stats``: the reader dropped some at
  a full queue), a note under the line says so. The indented line under it divides what the
  thread moved by the CPU time the thread itself used (``/proc/self/task/<tid>/stat``), with how
  busy it was: its cost per packet on one core, whatever the feeder and the reader cost.
* ``thread tls->tun`` and ``thread tun->tls``: the same for the CSTP channel's TLS connection on
  the thread (a TLS pipe, ``Engine.attach_tls``), per suite (TLS 1.3 and 1.2 ECDHE-RSA, AES-256-GCM
  and ChaCha20-Poly1305): a real server ``TlsEndpoint`` after a handshake in memory with a
  pyOpenSSL client, an AF_UNIX ``SOCK_STREAM`` pair standing in for the TCP connection and a
  ``SOCK_SEQPACKET`` pair for the TUN device. For ``tls->tun`` the feeder is the client itself
  (fork copied its SSL object, which this process does not use again): it encrypts fresh records
  of one 1,400-byte DATA frame each, 64 at a time, as it writes them — in Python, a few µs a
  record, so the first line is often the feeder's limit (the thread is far from 100% busy) and
  the per-CPU-second line is the one to read; for ``tun->tls`` it writes plain packets, and this
  process counts the records arriving at the client's end, opening the first to check that it
  holds exactly one DATA frame of the packet. Nothing may come back to the event loop (the lane
  stays empty).

How to read the thread's figures: per pipe; the first line is what one pipe delivered with the
feeder and the reader sharing this machine's cores with the thread (three busy parties: on a
2-core machine that line is a floor, and noisier than the others; a thread well below 100% busy
was waiting for them), the second is the thread's own capacity per core. Socket pairs are not a
veth pair, a UDP socket or a TUN device: no IP/UDP stack, no checksums, no device queue, and a
UDP GSO send the thread may use costs nothing here. The event-loop lines above time only the
gateway's side (the client's sends are not timed, the TUN device is ``/dev/null``), so compare
them with the per-CPU-second line, on the same machine in the same run, not across machines;
``bench_datapath.py`` measures the real thing end to end.

Each figure is the median of several repetitions; the machine's other work shows up as spread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sized
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.unit.dtls._client import ClientConfig, DtlsTestClient  # noqa: E402

from ocgate.cstp import CstpConnection  # noqa: E402
from ocgate.dtls import (  # noqa: E402
    DTLS12_CIPHERSUITES,
    DTLS_CIPHERSUITES,
    CipherSuite,
    CookieJar,
    DtlsSuite,
    LegacyMode,
    ProtocolVersion,
    PskMode,
    ReplayWindow,
    peek_client_hello_untrusted,
)
from ocgate.dtls._suites import derive_protections  # noqa: E402
from ocgate.ipfilter import PacketFilter  # noqa: E402
from ocgate.tls import TlsEndpoint, build_server_context, translate_priorities  # noqa: E402
from ocgate.tun import TunDevice  # noqa: E402

SIZE = 1400
BATCH = 64
LEASE = IPv4Address("10.77.0.5")
# An IPv4/UDP packet from the client's lease (so the packet filter admits it), padded to SIZE.
PACKET = (
    bytes.fromhex("45000578000040004011") + b"\x00\x00" + LEASE.packed + bytes((10, 77, 0, 1))
) + bytes(SIZE - 20)
MASTER = bytes(range(48))
RANDOMS = (bytes(range(32)), bytes(range(32, 64)))
SUITES: dict[str, DtlsSuite] = {
    "PSK AES-256-GCM (1.2)": DtlsSuite(
        "PSK", ProtocolVersion.DTLS1_2, CipherSuite.TLS_PSK_WITH_AES_256_GCM_SHA384
    ),
    "OC-DTLS1_2-AES128-GCM": DTLS_CIPHERSUITES["OC-DTLS1_2-AES128-GCM"][0],
    "CHACHA20-POLY1305 (1.2)": DTLS_CIPHERSUITES["OC2-DTLS1_2-CHACHA20-POLY1305"][0],
    "AES256-SHA (0.9)": DTLS_CIPHERSUITES["AES256-SHA"][0],
    "AES128-SHA (1.2)": DTLS12_CIPHERSUITES["AES128-SHA"][0],
}


def rate(fn: Callable[[], int], *, repeat: int = 7, min_time: float = 0.2) -> float:
    """Packets per second: ``fn`` runs a unit of work and returns how many packets it moved."""
    results = []
    for _ in range(repeat):
        done = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < min_time:
            done += fn()
        results.append(done / elapsed)
    return statistics.median(results)


def show(name: str, pps: float) -> None:
    print(f"  {name:58} {pps / 1e3:9.1f} k packets/s  {1e6 / pps:7.2f} µs/packet", flush=True)


# CSTP -------------------------------------------------------------------------------------------


def bench_cstp() -> None:
    conn = CstpConnection(now=0.0, dpd=0, keepalive=0, idle_timeout=None, session_deadline=None)
    batch = [PACKET] * BATCH

    def encode() -> int:
        conn.send_packets(batch, 0.0)
        conn.frames_to_send()
        return BATCH

    conn.send_packets(batch, 0.0)
    stream = b"".join(conn.frames_to_send())

    def decode() -> int:
        conn.receive_data(stream, 0.0)
        while conn.next_event() is not None:
            pass
        return BATCH

    show("CSTP frame 64 packets (send_packets + frames_to_send)", rate(encode))
    show("CSTP parse 64 frames (receive_data + next_event)", rate(decode))


# TLS records (the CSTP channel) -----------------------------------------------------------------


def _tls_pair(
    tmp: Path, priorities: str, *, client_ctx: Any = None, rsa_key: bool = False
) -> tuple[TlsEndpoint, Any]:
    """A server endpoint and a pyOpenSSL client (of ``client_ctx``, else a default client
    context) that completed a handshake in memory; the server's key is RSA if ``rsa_key``."""
    from OpenSSL import SSL
    from tests.interop._certs import make_server_cert

    cert = make_server_cert(tmp, "127.0.0.1", rsa_key=rsa_key)
    policy = translate_priorities(priorities)
    server = TlsEndpoint(
        build_server_context(
            cert_files=(str(cert.cert_path),), key_files=(str(cert.key_path),), policy=policy
        )
    )
    client = SSL.Connection(client_ctx or SSL.Context(SSL.TLS_CLIENT_METHOD), None)
    client.set_connect_state()
    for _ in range(10):
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        with contextlib.suppress(SSL.WantReadError):
            server.receive_data(client.bio_read(65536))
        if out := server.data_to_send():
            client.bio_write(out)
    assert server.handshake_complete
    return server, client


def _bench_tls_records(label: str, server: TlsEndpoint, client: Any, frame: bytes) -> None:
    def receive() -> float:
        # Records are single-use (sequence numbers): make fresh ones, untimed.
        records = []
        for _ in range(4096):
            client.sendall(frame)
            records.append(client.bio_read(65536))
        started = time.perf_counter()
        for record in records:
            server.receive_data(record)
        return len(records) / (time.perf_counter() - started)

    def send() -> int:
        for _ in range(BATCH):
            server.send(frame)
            server.data_to_send()
        return BATCH

    show(f"{label}: receive one frame per record", statistics.median(receive() for _ in range(7)))
    show(f"{label}: send one frame per record", rate(send))


def bench_tls() -> None:
    frame = b"STF\x01" + SIZE.to_bytes(2, "big") + b"\x00\x00" + PACKET
    for label, priorities in (
        ("TLS 1.3 AES-256-GCM", "NORMAL:-VERS-ALL:+VERS-TLS1.3"),
        ("TLS 1.2 ECDHE AES-256-GCM", "NORMAL:-VERS-ALL:+VERS-TLS1.2"),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            server, client = _tls_pair(Path(tmp), priorities)
        _bench_tls_records(label, server, client, frame)


# DTLS record protection --------------------------------------------------------------------------


def _epoch_implementations() -> dict[str, Any]:
    """The fast-path epoch states this tree has (none before the fast path existed)."""
    try:
        from ocgate.dtls import _epoch
    except ImportError:
        return {}
    return dict(_epoch.IMPLEMENTATIONS)


def bench_dtls() -> None:
    plaintext = b"\x00" + PACKET
    for name, suite in SUITES.items():
        # One direction's protection both seals and opens (same key, salt and MAC key).
        _, server = derive_protections(suite, MASTER, *RANDOMS, os.urandom)
        version = int(suite.version)
        epoch_seq = 1 << 48

        def seal(server: Any = server, version: int = version, epoch_seq: int = epoch_seq) -> int:
            for i in range(BATCH):
                server.seal(epoch_seq | i, 23, version, plaintext)
            return BATCH

        sealed = server.seal(epoch_seq, 23, version, plaintext)

        def open_(
            client: Any = server,
            version: int = version,
            sealed: bytes = sealed,
            epoch_seq: int = epoch_seq,
        ) -> int:
            for _ in range(BATCH):
                client.open(epoch_seq, 23, version, sealed)
            return BATCH

        show(f"{name}: reference seal", rate(seal))
        show(f"{name}: reference open", rate(open_))
        for impl, factory in _epoch_implementations().items():
            _bench_epoch(name, impl, factory, suite)


def _bench_epoch(name: str, impl: str, factory: Any, suite: DtlsSuite) -> None:
    from ocgate.dtls._suites import derive_key_block

    keys = derive_key_block(suite, MASTER, *RANDOMS)
    # The gateway's state seals; a mirror with the directions swapped opens what it sealed.
    sender = factory(suite, keys, os.urandom)
    receiver = factory(suite, keys.swapped(), os.urandom)
    batch = [PACKET] * BATCH

    def seal() -> int:
        sender.seal_data(b"\x00", batch)
        return BATCH

    # 4,096 records sealed once, opened in batches of 64, oldest first as they arrive; a fresh
    # receiver (a new window) for each round through them.
    records = sender.seal_data(b"\x00", [PACKET] * 4096)
    batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
    cursor = [len(batches), receiver]

    def open_() -> int:
        if cursor[0] == len(batches):
            cursor[:] = [0, factory(suite, keys.swapped(), os.urandom)]
        _packets, stop, _ = cursor[1].open_batch_untrusted(batches[cursor[0]], 0, 0)
        cursor[0] += 1
        if stop != BATCH:
            raise AssertionError("fast path refused a good record")
        return BATCH

    show(f"{name}: {impl} seal_data (batch of 64)", rate(seal))
    show(f"{name}: {impl} open_batch_untrusted (batch of 64)", rate(open_))


def bench_replay() -> None:
    window = ReplayWindow()
    seq = [0]

    def run() -> int:
        base = seq[0]
        for s in range(base, base + BATCH):
            window.check(s)
            window.mark(s)
        seq[0] = base + BATCH
        return BATCH

    show("replay window check + mark", rate(run))


# The worker's UDP <-> TUN paths -----------------------------------------------------------------


class _Transport:
    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        pass


class _Session:
    sid = "bench"
    username = "bench"


def _tunnel(tun: TunDevice) -> Any:
    from ocgate.daemon._tunnel import Tunnel

    cstp = CstpConnection(now=0.0, dpd=0, keepalive=0, idle_timeout=None, session_deadline=None)
    return Tunnel(
        session=_Session(),  # type: ignore[arg-type]
        tun=tun,
        cstp=cstp,
        tls=None,  # type: ignore[arg-type]
        transport=_Transport(),  # type: ignore[arg-type]
        on_closed=lambda *_: None,
        plan=None,  # type: ignore[arg-type]
        meta=None,  # type: ignore[arg-type]
        packet_filter=PacketFilter(ipv4=LEASE, ipv6=None),
    )


async def _established(mode: LegacyMode | PskMode, tun: TunDevice) -> tuple[Any, ...]:
    """A worker's DTLS port, a tunnel and its channel, and a test client that completed a real
    handshake with them over loopback UDP."""
    from ocgate.daemon._dtls import DtlsChannel
    from ocgate.daemon._udp import DtlsPort

    server_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (server_sock, client_sock):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
    server_sock.connect(client_sock.getsockname())
    client_sock.connect(server_sock.getsockname())
    client_sock.setblocking(False)
    key = bytes(32)
    port = DtlsPort(worker=0, cookie_key=key, steer=lambda *_: None)
    tunnel = _tunnel(tun)
    channel = DtlsChannel(
        mode=mode,
        session_sid="bench",
        dpd=0,
        switch_to_tcp_timeout=0,
        mtu=1406,
        on_packets=tunnel.write_packets,
        on_established=lambda _: None,
        on_activity=tunnel.note_activity,
        on_timer_change=tunnel.rearm_timer,
    )
    tunnel.attach_dtls(channel)
    lookup = mode.app_id if isinstance(mode, PskMode) else mode.session_id
    port.offer(lookup, channel)
    if isinstance(mode, LegacyMode):
        config = ClientConfig(
            suite=mode.suite, session_id=mode.session_id, master_secret=mode.master_secret
        )
    else:
        config = ClientConfig(psk=mode.psk, session_id=mode.app_id)
    client = DtlsTestClient(config)
    client.start(0.0)
    addr = client_sock.getsockname()
    hello = client.datagrams_to_send()[0]
    if isinstance(mode, PskMode):  # The stateless cookie round of the shared socket.
        jar = CookieJar(random_bytes=lambda _n: key)
        info = peek_client_hello_untrusted(hello)
        assert info is not None
        client.receive_datagram(jar.hello_verify_request(info, addr, time.monotonic()), 0.0)
        hello = client.datagrams_to_send()[0]
    await port.steered(addr, hello, server_sock)
    for _ in range(200):
        await asyncio.sleep(0.005)
        while True:
            try:
                client.receive_datagram(client_sock.recv(65536), 0.0)
            except BlockingIOError:
                break
        for datagram in client.datagrams_to_send():
            client_sock.send(datagram)
        if client.established and channel.usable(time.monotonic()):
            break
    else:
        raise AssertionError("handshake did not complete")
    return port, tunnel, channel, client, client_sock


def _modes() -> dict[str, LegacyMode | PskMode]:
    sid = bytes((0, 1)) + bytes(range(30))
    return {
        "PSK AES-256-GCM": PskMode(app_id=bytes((0, 2)) + bytes(range(30)), psk=bytes(32)),
        "OC-DTLS1_2-AES256-GCM": LegacyMode(
            session_id=sid,
            master_secret=MASTER,
            suite=DTLS_CIPHERSUITES["OC-DTLS1_2-AES256-GCM"][0],
        ),
        "AES256-SHA (0.9)": LegacyMode(
            session_id=sid, master_secret=MASTER, suite=DTLS_CIPHERSUITES["AES256-SHA"][0]
        ),
    }


async def _udp_to_tun(mode: LegacyMode | PskMode) -> float:
    null = TunDevice(os.open(os.devnull, os.O_WRONLY), "null")
    port, _tunnel, channel, client, client_sock = await _established(mode, null)
    records: list[bytes] = []
    results = []
    for _ in range(7):
        done = 0
        spent = 0.0
        while spent < 0.2:
            if len(records) < BATCH:
                client.send([b"\x00" + PACKET] * 4096)
                records.extend(client.datagrams_to_send())
            burst, records[:BATCH] = records[:BATCH], []
            target = channel.rx_packets + BATCH
            for datagram in burst:
                client_sock.send(datagram)
            started = time.perf_counter()
            while channel.rx_packets < target:  # noqa: ASYNC110 (polls the loop, as a worker runs)
                await asyncio.sleep(0)
            spent += time.perf_counter() - started
            done += BATCH
        results.append(done / spent)
    port.close()
    client_sock.close()
    null.close()
    return statistics.median(results)


async def _tun_to_udp(mode: LegacyMode | PskMode) -> float:
    feed, tun_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    feed.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    tun_end.setblocking(False)
    tun = TunDevice(tun_end.detach(), "pair")
    port, tunnel, channel, _client, client_sock = await _established(mode, tun)
    results = []
    for _ in range(7):
        done = 0
        spent = 0.0
        while spent < 0.2:
            for _ in range(BATCH):
                feed.send(PACKET)
            target = channel.tx_packets + BATCH
            started = time.perf_counter()
            tunnel._on_tun_readable()
            spent += time.perf_counter() - started
            if channel.tx_packets != target:
                raise AssertionError("the tunnel did not send the batch over DTLS")
            done += BATCH
            while True:  # Drain the client's socket (not timed), so sends never meet a full one.
                try:
                    client_sock.recv(65536)
                except BlockingIOError:
                    break
        results.append(done / spent)
    port.close()
    client_sock.close()
    tun.close()
    feed.close()
    return statistics.median(results)


def bench_udp_to_tun() -> None:
    for name, mode in _modes().items():
        show(f"UDP -> TUN {name} (recv, decrypt, filter, write)", asyncio.run(_udp_to_tun(mode)))


def bench_tun_to_udp() -> None:
    for name, mode in _modes().items():
        show(f"TUN -> UDP {name} (read, encrypt, send)", asyncio.run(_tun_to_udp(mode)))


# The same paths on the data-path thread (ocgate._fastpath.Engine) ------------------------------

THREAD_SUITES = {
    "OC-DTLS1_2-AES256-GCM": DTLS_CIPHERSUITES["OC-DTLS1_2-AES256-GCM"][0],
    "AES256-SHA (0.9)": DTLS_CIPHERSUITES["AES256-SHA"][0],
}
THREAD_WINDOWS = 5
THREAD_WINDOW = 0.3
STAND_IN = socket.SOCK_SEQPACKET
"""The socket pairs standing in for the UDP socket and the TUN device: AF_UNIX, one packet per
message like both. Not ``SOCK_DGRAM``, whose queue holds only ``net.unix.max_dgram_qlen``
datagrams (often 10): the three parties would then take turns every ten packets and the figure
would measure the scheduler. A ``SOCK_SEQPACKET`` queue is bounded by bytes, as a UDP socket's."""
_Suite = TypeVar("_Suite")
"""A suite as a section on the thread names it (a ``DtlsSuite``, or a TLS client's choice)."""


def _fork_feeder(sock: socket.socket, step: Callable[[Callable[[], object]], None]) -> int:
    """A child process that calls ``step(wait)`` until it is killed, where ``wait()`` waits (a
    second at most) until ``sock`` has room for more; its pid."""
    pid = os.fork()
    if pid:
        return pid
    try:  # pragma: no cover - the child only writes until it is killed.
        import select

        poller = select.poll()
        poller.register(sock.fileno(), select.POLLOUT)

        def wait() -> object:
            return poller.poll(1000)

        while True:
            step(wait)
    finally:
        os._exit(0)


def _feeder(sock: socket.socket, make: Callable[[], list[bytes]]) -> int:
    """A child process that writes ``make()``'s datagrams into ``sock`` as fast as the other
    end takes them (it waits for room, then writes a batch with one ``sendmmsg``); its pid."""
    from ocgate import _fastpath  # type: ignore[attr-defined]

    def step(wait: Callable[[], object]) -> None:
        wait()
        _fastpath.write_many(sock.fileno(), make())

    return _fork_feeder(sock, step)


def _task_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _thread_rate(suite: DtlsSuite, to_tun: bool) -> tuple[float, float, float]:
    """Packets per second through one pipe: the median arriving at the far end over a few
    windows, what the thread itself counted (``take_stats``) over the same time, and that count
    per CPU second the thread used (its cost on one core, whatever else the machine does)."""
    import select

    from ocgate import _fastpath  # type: ignore[attr-defined]
    from ocgate.dtls._epoch import IMPLEMENTATIONS
    from ocgate.dtls._suites import derive_key_block

    keys = derive_key_block(suite, MASTER, *RANDOMS)
    compiled = IMPLEMENTATIONS["c"]
    client = compiled(suite, keys.swapped(), os.urandom)
    record_size = len(compiled(suite, keys, os.urandom).seal_data(b"\x00", [PACKET])[0])
    udp, client_end = socket.socketpair(socket.AF_UNIX, STAND_IN)
    tun, tun_end = socket.socketpair(socket.AF_UNIX, STAND_IN)
    for sock in (udp, client_end, tun, tun_end):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.setblocking(False)
    if to_tun:  # The client seals fresh records (unique sequence numbers) as it sends.
        feed, far = client_end, tun_end
        pid = _feeder(feed, lambda: client.seal_data(b"\x00", [PACKET] * BATCH))
    else:
        feed, far = tun_end, client_end
        pid = _feeder(feed, lambda: [PACKET] * BATCH)

    def attach(engine: Any) -> Any:
        server = compiled(suite, keys, os.urandom)
        return engine.attach(
            udp.fileno(), tun.fileno(), LEASE.packed, bytes(17), server, True, 1406, 0.0
        )

    poller = select.poll()
    poller.register(far.fileno(), select.POLLIN)
    unit = SIZE if to_tun else record_size
    checked: list[bool] = []

    def take(seconds: float) -> int:
        got, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            poller.poll(100)
            batch = _fastpath.read_many(far.fileno(), BATCH)
            if batch and not checked:  # The first arrival proves the path works.
                if to_tun:
                    assert batch[0] == PACKET, "the thread did not write the client's packet"
                else:
                    opened, _, _ = client.open_batch_untrusted([batch[0][:record_size]], 0, 0)
                    assert opened == [PACKET], "the client cannot open the thread's record"
                checked.append(True)
            got += sum(map(len, batch))
        return got // unit  # Packets (records: a GSO send to a socket pair arrives as one).

    return _measure_pipe(attach, take, checked, to_tun, pid, (udp, client_end, tun, tun_end))


def _measure_pipe(
    attach: Callable[[Any], Any],
    take: Callable[[float], int],
    checked: Sized,
    to_tun: bool,
    pid: int,
    socks: tuple[socket.socket, ...],
) -> tuple[float, float, float]:
    """The measurement of :func:`_thread_rate` and :func:`_tls_thread_rate`, once the feeder
    ``pid`` runs: start an engine, attach the pipe to it (``attach(engine)``), warm up, then count
    the packets arriving at the far end (``take(seconds)``; ``checked`` is filled once the first
    arrival proved the path works) over ``THREAD_WINDOWS`` windows. The three rates as
    :func:`_thread_rate` returns them; the feeder is killed and the pipe, the engine and ``socks``
    are closed whatever happens."""
    from ocgate import _fastpath  # type: ignore[attr-defined]

    # The engine starts after the fork: the child never inherits a lock its thread might hold.
    before = set(_task_cpu())
    engine = _fastpath.Engine()
    (engine_tid,) = set(_task_cpu()) - before
    pipe = attach(engine)
    try:
        take(0.2)  # Warm up.
        assert checked, "nothing arrived through the thread"
        pipe.take_stats()
        results = []
        cpu = _task_cpu()[engine_tid]
        started = time.perf_counter()
        for _ in range(THREAD_WINDOWS):
            results.append(take(THREAD_WINDOW) / THREAD_WINDOW)
        stats = pipe.take_stats()
        elapsed = time.perf_counter() - started
        cpu = _task_cpu()[engine_tid] - cpu
        count = stats[0] if to_tun else stats[2]
        back = engine.drain()
        assert not back, f"the thread handed {len(back)} items back to the event loop"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pipe.close()
        engine.close()
        for sock in socks:
            sock.close()
    return statistics.median(results), count / elapsed, count / max(cpu, 1e-3)


def _show_thread(
    name: str,
    suites: dict[str, _Suite],
    measure: Callable[[_Suite, bool], tuple[float, float, float]],
    to_tun: bool,
) -> None:
    """One section on the thread: for each of ``suites``, the three lines of what
    ``measure(suite, to_tun)`` (:func:`_thread_rate` or :func:`_tls_thread_rate`) found."""
    for label, suite in suites.items():
        arrived, moved, per_cpu = measure(suite, to_tun)
        show(f"{name} {label}", arrived)
        if arrived < 0.95 * moved:  # The far end's reader, not the thread, was the limit.
            print(f"  {'':58} (the thread moved {moved / 1e3:.1f} k/s; the reader took less)")
        show(f"  per CPU second of the thread ({moved / per_cpu:.0%} busy)", per_cpu)


def bench_thread_udp_to_tun() -> None:
    _show_thread("thread UDP -> TUN", THREAD_SUITES, _thread_rate, to_tun=True)


def bench_thread_tun_to_udp() -> None:
    _show_thread("thread TUN -> UDP", THREAD_SUITES, _thread_rate, to_tun=False)


# The CSTP channel's TLS connection on the thread (TLS pipes) ------------------------------------

TLS_THREAD_SUITES = {
    "TLS 1.3 AES-256-GCM": ("1.3", "", "TLS_AES_256_GCM_SHA384"),
    "TLS 1.2 ECDHE-RSA-AES256-GCM-SHA384": ("1.2", "ECDHE-RSA-AES256-GCM-SHA384", ""),
    "TLS 1.3 CHACHA20-POLY1305": ("1.3", "", "TLS_CHACHA20_POLY1305_SHA256"),
    "TLS 1.2 ECDHE-RSA-CHACHA20-POLY1305": ("1.2", "ECDHE-RSA-CHACHA20-POLY1305", ""),
}
"""Label: (protocol version, the client's only TLS 1.2 cipher, its only TLS 1.3 suite)."""
FRAME = b"STF\x01" + SIZE.to_bytes(2, "big") + b"\x00\x00" + PACKET
"""One CSTP DATA frame carrying ``PACKET``."""


def _stream_feeder(sock: socket.socket, make: Callable[[], bytes]) -> int:
    """As :func:`_feeder` for a byte stream: a child process that writes ``make()``'s bytes
    into ``sock`` as fast as the other end takes them, keeping what a short write left; its pid."""
    pending = memoryview(b"")

    def step(wait: Callable[[], object]) -> None:
        nonlocal pending
        if not pending:
            pending = memoryview(make())
        wait()
        with contextlib.suppress(BlockingIOError):
            pending = pending[sock.send(pending) :]

    return _fork_feeder(sock, step)


def _tls_client_pair(suite: tuple[str, str, str]) -> tuple[TlsEndpoint, Any]:
    """An established server endpoint and its client, which offered only ``suite``."""
    from OpenSSL import SSL

    version, tls12, tls13 = suite
    proto = SSL.TLS1_3_VERSION if version == "1.3" else SSL.TLS1_2_VERSION
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(proto)
    ctx.set_max_proto_version(proto)
    if tls12:
        ctx.set_cipher_list(tls12.encode())
    if tls13:
        ctx.set_tls13_ciphersuites(tls13.encode())
    with tempfile.TemporaryDirectory() as tmp:
        server, client = _tls_pair(
            Path(tmp), f"NORMAL:-VERS-ALL:+VERS-TLS{version}", client_ctx=ctx, rsa_key=True
        )
    assert client.get_cipher_name() == (tls12 or tls13), client.get_cipher_name()
    assert server.quiescent(), "the endpoint cannot go to the thread"
    return server, client


def _tls_thread_rate(suite: tuple[str, str, str], to_tun: bool) -> tuple[float, float, float]:
    """As :func:`_thread_rate`, for a TLS pipe: AF_UNIX ``SOCK_STREAM`` for the TCP connection,
    ``SOCK_SEQPACKET`` for the TUN device. For ``tls->tun`` the feeder is the client: fork copied
    its SSL object, whose sequence numbers this process never uses again, and the child encrypts
    fresh records with it (one DATA frame each, 64 at a time) as it writes them; for
    ``tun->tls`` it writes the plain packets and this process counts the records arriving at the
    client's end, opening the first to check it holds exactly one DATA frame of the packet."""
    import select

    from ocgate import _fastpath  # type: ignore[attr-defined]
    from ocgate.daemon._offload import _bind_tls

    server, client = _tls_client_pair(suite)
    tcp, client_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    tun, tun_end = socket.socketpair(socket.AF_UNIX, STAND_IN)
    for sock in (tcp, client_end, tun, tun_end):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.setblocking(False)

    def seal() -> bytes:  # In the child: BATCH fresh records, one frame each.
        for _ in range(BATCH):
            client.sendall(FRAME)
        return bytes(client.bio_read(1 << 20))

    if to_tun:
        feed, far = client_end, tun_end
        pid = _stream_feeder(feed, seal)
    else:
        feed, far = tun_end, client_end
        pid = _feeder(feed, lambda: [PACKET] * BATCH)
    assert _bind_tls(), "the thread cannot drive pyOpenSSL's OpenSSL"

    def attach(engine: Any) -> Any:
        return engine.attach_tls(
            tcp.fileno(), tun.fileno(), *server.handles(), LEASE.packed, bytes(17), 1406
        )

    poller = select.poll()
    poller.register(far.fileno(), select.POLLIN)
    buffer = bytearray(1 << 20)
    head = bytearray()  # The stream's first bytes, until they hold the first record.
    checked: list[int] = []  # Once the first arrival proves the path works: a packet's size.

    def take(seconds: float) -> int:
        got, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            poller.poll(100)
            if to_tun:
                batch = _fastpath.read_many(far.fileno(), BATCH)
                if batch and not checked:
                    assert batch[0] == PACKET, "the thread did not write the client's packet"
                    checked.append(SIZE)
                got += sum(map(len, batch))
                continue
            try:
                size = far.recv_into(buffer)
            except BlockingIOError:
                continue
            got += size
            if not checked:
                head.extend(buffer[:size])
                if len(head) >= 5 and len(head) >= (whole := 5 + int.from_bytes(head[3:5])):
                    client.bio_write(bytes(head[:whole]))
                    opened = client.recv(65536)  # (After any TLS 1.3 session ticket.)
                    assert opened == FRAME, "the record is not one DATA frame of the packet"
                    checked.append(whole)  # Records: every one as long as the first.
        return got // checked[0] if checked else 0

    return _measure_pipe(attach, take, checked, to_tun, pid, (tcp, client_end, tun, tun_end))


def bench_thread_tls_to_tun() -> None:
    _show_thread("thread TLS -> TUN", TLS_THREAD_SUITES, _tls_thread_rate, to_tun=True)


def bench_thread_tun_to_tls() -> None:
    _show_thread("thread TUN -> TLS", TLS_THREAD_SUITES, _tls_thread_rate, to_tun=False)


SECTIONS = {
    "cstp": bench_cstp,
    "dtls": bench_dtls,
    "replay": bench_replay,
    "tls": bench_tls,
    "udp->tun": bench_udp_to_tun,
    "tun->udp": bench_tun_to_udp,
    "thread udp->tun": bench_thread_udp_to_tun,
    "thread tun->udp": bench_thread_tun_to_udp,
    "thread tls->tun": bench_thread_tls_to_tun,
    "thread tun->tls": bench_thread_tun_to_tls,
}


def main() -> int:
    words = sys.argv[1:]
    try:
        from ocgate import _fastpath  # type: ignore[attr-defined]

        print(f"compiled fast path: {_fastpath.__file__}")
    except ImportError:
        print("compiled fast path: absent")
    for name, fn in SECTIONS.items():
        if words and not any(w in name for w in words):
            continue
        print(f"== {name}", flush=True)
        fn()
    return 0


if __name__ == "__main__":
    sys.exit(main())
