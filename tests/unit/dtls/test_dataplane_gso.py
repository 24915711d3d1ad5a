"""The data-path thread's UDP GSO (``send_records`` in src/ocgate/_dataplane.c).

A run of equal-sized records goes down the stack as one ``UDP_SEGMENT`` message; the kernel cuts it
into one datagram per record, so the client must receive exactly what one ``sendmmsg`` datagram per
record would have given it. On anything but a UDP socket (the AF_UNIX stand-ins of the unit tests
and fuzz targets) the thread must not use GSO at all: such a socket ignores the control message
and would deliver the merged datagram (found by ``fuzz/targets/fuzz_dtls_thread.py``:
``tests/vectors/fuzz/dtls-thread-gso-records-merged.bin``).
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator

import pytest

from ocgate.dtls import DTLS_CIPHERSUITES
from ocgate.dtls._epoch import IMPLEMENTATIONS, PyEpochState
from ocgate.dtls._suites import derive_key_block

_fastpath = pytest.importorskip("ocgate._fastpath")
pytestmark = pytest.mark.skipif(
    not hasattr(_fastpath, "Engine") or "c" not in IMPLEMENTATIONS, reason="no data-path thread"
)

SUITE = DTLS_CIPHERSUITES["OC-DTLS1_2-AES256-GCM"][0]
KEYS = derive_key_block(SUITE, bytes(range(48)), bytes(32), bytes(range(32, 64)))


def _udp_pair() -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on loopback, connected to each other (server side, client side)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client.bind(("127.0.0.1", 0))
    server.connect(client.getsockname())
    client.connect(server.getsockname())
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return server, client


@pytest.fixture
def engine() -> Iterator[object]:
    e = _fastpath.Engine()
    yield e
    e.close()


def _through_thread(
    engine: object, udp: socket.socket, client: socket.socket, packets: list[bytes]
) -> list[bytes]:
    """Write ``packets`` to the thread's TUN stand-in; return the datagrams the client got."""
    tun, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    state = IMPLEMENTATIONS["c"](SUITE, KEYS, os.urandom)
    pipe = engine.attach(udp.fileno(), tun.fileno(), b"", bytes(17), state, True, 1400, 0.0)  # type: ignore[attr-defined]
    try:
        for packet in packets:
            kernel.send(packet)
        got: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(got) < len(packets) and time.monotonic() < deadline:
            if select.select([client], [], [], 0.05)[0]:
                got.append(client.recv(65536))
        time.sleep(0.05)
        while select.select([client], [], [], 0)[0]:
            got.append(client.recv(65536))
        assert pipe.take_stats()[4] == 0  # Nothing dropped.
        return got
    finally:
        pipe.close()
        tun.close()
        kernel.close()


def _opened(datagrams: list[bytes]) -> list[bytes]:
    reader = PyEpochState(SUITE, KEYS.swapped(), os.urandom)
    out = []
    for d in datagrams:
        plain = reader.open(int.from_bytes(d[3:11]), d[0], d[13:])
        assert plain is not None
        out.append(plain)
    return out


@pytest.mark.parametrize("gso", ["on", "off"])
def test_runs_of_equal_records_arrive_as_separate_datagrams_over_udp(
    engine: object, gso: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if gso == "off":
        monkeypatch.setenv("OCGATE_UDP_GSO", "off")  # Read at attach.
    udp, client = _udp_pair()
    # Runs of one size (a GSO message each, the last one shorter), sizes changing between them.
    packets = [bytes([i]) * 1200 for i in range(40)] + [b"\x45" * 100] + [bytes(900)] * 20
    try:
        got = _through_thread(engine, udp, client, packets)
    finally:
        udp.close()
        client.close()
    assert len(got) == len(packets)
    assert _opened(got) == [b"\x00" + p for p in packets]


def test_no_gso_on_a_socket_that_is_not_udp(engine: object) -> None:
    udp, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    packets = [b"\x45" * 100] * 2  # The fuzzer's input: two TUN packets of one length.
    try:
        got = _through_thread(engine, udp, client, packets)
    finally:
        udp.close()
        client.close()
    assert [len(d) for d in got] == [len(got[0])] * 2
    assert _opened(got) == [b"\x00" + p for p in packets]
