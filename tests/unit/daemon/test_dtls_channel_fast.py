"""The worker's DTLS channel on the fast path against the same channel on the reference path.

Two channels complete the same handshake with the test client of tests/unit/dtls; then the same
client datagrams reach one through ``datagram_received`` one by one and the other in batches
through ``receive_fast`` (what the steered socket does, the reference path taking the datagrams it
leaves). Packets to the tunnel, DPD answers, counters and what is sent back must be the same, for
each implementation of the epoch state (``python``, and ``c`` when compiled).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.daemon import _dtls as channel_module
from ocgate.daemon._dtls import DtlsChannel
from ocgate.daemon._offload import TunnelSide
from ocgate.dtls import DTLS_CIPHERSUITES, DtlsAssociation, LegacyMode, PskMode, _epoch
from tests.unit.dtls._client import ClientConfig, DtlsTestClient
from tests.unit.dtls.test_dtls_fastpath import IMPLS, using

ADDR = ("192.0.2.7", 40000)
MODES = {
    "psk": PskMode(app_id=bytes((0, 2)) + bytes(30), psk=bytes(range(32))),
    "oc-dtls12-aes256-gcm": LegacyMode(
        session_id=bytes((0, 1)) + bytes(30),
        master_secret=bytes(range(48)),
        suite=DTLS_CIPHERSUITES["OC-DTLS1_2-AES256-GCM"][0],
    ),
    "aes256-sha": LegacyMode(
        session_id=bytes((0, 1)) + bytes(30),
        master_secret=bytes(range(48)),
        suite=DTLS_CIPHERSUITES["AES256-SHA"][0],
    ),
}


class Sender:
    """The steered socket's sending side: a transport with ``send_many``."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.sent.append(data)

    def send_many(self, datagrams: list[bytes]) -> None:
        self.sent += datagrams


class Rig:
    def __init__(self, mode: LegacyMode | PskMode, offload: TunnelSide | None = None) -> None:
        self.packets: list[bytes] = []
        self.activity = 0
        self.sender = Sender()
        self.channel = DtlsChannel(
            mode=mode,
            session_sid="t",
            dpd=30,
            switch_to_tcp_timeout=25,
            mtu=1400,
            on_packets=self.packets.extend,
            on_established=lambda _: None,
            on_activity=self._active,
            on_timer_change=lambda: None,
            offload=offload,
        )
        if isinstance(mode, LegacyMode):
            config = ClientConfig(
                suite=mode.suite, session_id=mode.session_id, master_secret=mode.master_secret
            )
        else:
            config = ClientConfig(psk=mode.psk, session_id=mode.app_id, seed=1)
        self.client = DtlsTestClient(config)

    def _active(self, now: float) -> None:
        self.activity += 1

    def handshake(self, mode: LegacyMode | PskMode) -> None:
        from ocgate.dtls import CookieJar, peek_client_hello_untrusted

        jar = CookieJar(random_bytes=lambda n: bytes(n))
        self.client.start(0.0)
        for _ in range(10):
            for datagram in self.client.datagrams_to_send():
                info = peek_client_hello_untrusted(datagram)
                if info is None:
                    self.channel.datagram_received(datagram, ADDR)
                    continue
                if isinstance(mode, PskMode) and not info.cookie:
                    self.sender.sent.append(jar.hello_verify_request(info, ADDR, 0.0))
                    continue
                self.channel.client_hello(datagram, info, ADDR, self.sender, lambda a, c: None)  # type: ignore[arg-type]
            sent, self.sender.sent = self.sender.sent, []
            for datagram in sent:
                self.client.receive_datagram(datagram, 0.0)
            if self.client.established and self.channel.usable(0.0):
                return
        raise AssertionError("no handshake")


def _pair(mode_name: str, impl: str) -> tuple[Rig, Rig]:
    """Two channels with the same keys: the server randomness is seeded for both."""
    mode = MODES[mode_name]
    rigs = []
    for name in ("python", impl):
        rng = random.Random(3)

        def seeded(rng: random.Random = rng, **kwargs: object) -> DtlsAssociation:
            return DtlsAssociation(random_bytes=rng.randbytes, **kwargs)  # type: ignore[arg-type]

        saved = channel_module.DtlsAssociation
        channel_module.DtlsAssociation = seeded  # type: ignore[assignment,misc]
        try:
            with using(name):
                rig = Rig(mode)
                rig.handshake(mode)
        finally:
            channel_module.DtlsAssociation = saved  # type: ignore[misc]
        rigs.append(rig)
    return rigs[0], rigs[1]


OPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([0, 0, 0, 3, 4, 7, 9]), st.binary(max_size=40)),
        st.tuples(st.just(-1), st.integers(0, 40)),  # replay an earlier datagram
        st.tuples(st.just(-2), st.integers(0, 255)),  # flip a byte of a DATA record
        st.tuples(st.just(-3), st.binary(max_size=30)),  # garbage
    ),
    max_size=30,
)


def client_datagrams(
    client: DtlsTestClient,
    ops: list[tuple[int, object]],
    packet: Callable[[int], bytes] | None = None,
) -> list[bytes]:
    """The datagrams :data:`OPS` describe: records of a payload type, replays of an earlier
    datagram, DATA records with a flipped byte, garbage, and (``packet``, kind -4) DATA records
    carrying ``packet(arg)``."""
    datagrams: list[bytes] = []
    for kind, arg in ops:
        if kind >= 0:
            datagrams.append(client.raw_record(23, 1, bytes((kind,)) + arg))  # type: ignore[operator]
        elif kind == -1 and datagrams:
            datagrams.append(datagrams[arg % len(datagrams)])  # type: ignore[operator]
        elif kind == -2:
            record = bytearray(client.raw_record(23, 1, b"\x00" + bytes(30)))
            record[(arg * 7) % len(record)] ^= arg | 1  # type: ignore[operator]
            datagrams.append(bytes(record))
        elif kind == -3:
            datagrams.append(arg)  # type: ignore[arg-type]
        elif kind == -4 and packet is not None:
            datagrams.append(client.raw_record(23, 1, b"\x00" + packet(arg)))  # type: ignore[arg-type]
    return datagrams


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", list(MODES))
@settings(max_examples=30, deadline=None)
@given(ops=OPS, cuts=st.lists(st.integers(1, 8), max_size=8))
def test_receive_fast_matches_datagram_received(
    mode: str, impl: str, ops: list[tuple[int, object]], cuts: list[int]
) -> None:
    reference, fast = _pair(mode, impl)
    datagrams = client_datagrams(reference.client, ops)
    for datagram in datagrams:
        reference.channel.datagram_received(datagram, ADDR)
    # Batches of the sizes hypothesis drew, as the socket would deliver them.
    start = 0
    sizes = iter(cuts)
    while start < len(datagrams):
        batch = datagrams[start : start + next(sizes, 64)]
        start += len(batch)
        index = fast.channel.receive_fast(batch, 0, ADDR)
        while index < len(batch):
            fast.channel.datagram_received(batch[index], ADDR)
            index = fast.channel.receive_fast(batch, index + 1, ADDR)
    assert fast.packets == reference.packets
    assert fast.channel.rx_packets == reference.channel.rx_packets
    assert fast.channel.rx_bytes == reference.channel.rx_bytes
    assert fast.channel.dropped == reference.channel.dropped
    assert bool(fast.activity) == bool(reference.activity)
    # DPD answers went back the same (AEAD: byte for byte; CBC: the same once decrypted).
    for rig in (reference, fast):
        for datagram in rig.sender.sent:
            rig.client.receive_datagram(datagram, 0.0)
    assert fast.client.received == reference.client.received


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", list(MODES))
def test_send_packets_reach_the_client(mode: str, impl: str) -> None:
    _, rig = _pair(mode, impl)
    packets = [bytes([i]) * (i * 21 % 1400) for i in range(70)] + [bytes(1401)]
    assert rig.channel.send_packets(packets, 0.0) == [bytes(1401)]  # Too big: over CSTP.
    assert rig.channel.tx_packets == 70
    for datagram in rig.sender.sent:
        rig.client.receive_datagram(datagram, 0.0)
    assert rig.client.received == [b"\x00" + p for p in packets[:70]]


def test_the_fast_path_is_the_compiled_one_when_built() -> None:
    expected = "c" if "c" in _epoch.IMPLEMENTATIONS and not _epoch.FORCE_PYTHON else "python"
    assert expected == _epoch.IMPLEMENTATION
