"""Authenticated DTLS records: what a logged-in client can send once its association is up.

Each input first completes a real handshake between the test client of tests/unit/dtls (which
holds the session keys: the "test key") and the gateway's :class:`DtlsChannel` (two association
slots, the batch fast path, payload types, DPD, MTU discovery), in the mode the first byte picks
(legacy DTLS 0.9 CBC, DTLS 1.2 AES-GCM and ChaCha20, PSK-NEGOTIATE). Then operations, tag % 8:

0. an authenticated record: content type picked by the first payload byte, plaintext the rest;
1. the client's next sequence number jumps to the payload (48 bits: far ahead, or back);
2. an earlier datagram again (a replay);
3. an authenticated DATA record with one byte changed on the way (a forgery);
4. several authenticated DATA records, as one read of several datagrams (the channel's fast
   path) or, with tag bit 3, in one datagram;
5. an unauthenticated datagram (hellos go to the handshake slot, like the steered socket does);
6. the clock moves on by the payload (ms) and the channel's timers run;
7. the gateway sends the payload as a packet towards the client.

Oracle: nothing raises; no packet reaches the tunnel that the client did not send in an
authenticated DATA record, and none more often than it was sent (forgeries and replays never
pass); while nothing has disturbed the sequence (no jump, alert or timer), every DATA packet
arrives once and in order, and every DPD-REQ is answered by a DPD-RESP echoing its payload.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from tests.unit.dtls._client import ClientConfig, DtlsTestClient

    from ocgate.daemon import _dtls as channel_module
    from ocgate.daemon._dtls import DtlsChannel
    from ocgate.dtls import (
        DTLS12_CIPHERSUITES,
        DTLS_CIPHERSUITES,
        CookieJar,
        DtlsAssociation,
        LegacyMode,
        PskMode,
        peek_client_hello_untrusted,
    )
    from ocgate.dtls._record import MAX_PLAINTEXT, SEQ_MASK
    from ocgate.errors import BadRecord

ADDR = ("192.0.2.7", 40000)
MASTER = bytes(range(48))
SESSION_ID = bytes((3, 1)) + bytes(range(30))
MODES: list[LegacyMode | PskMode] = [
    LegacyMode(session_id=SESSION_ID, master_secret=MASTER, suite=table[name][0])
    for table, name in (
        (DTLS_CIPHERSUITES, "AES256-SHA"),
        (DTLS_CIPHERSUITES, "OC-DTLS1_2-AES256-GCM"),
        (DTLS_CIPHERSUITES, "OC2-DTLS1_2-CHACHA20-POLY1305"),
        (DTLS12_CIPHERSUITES, "AES128-SHA"),
    )
]
MODES.append(PskMode(app_id=bytes((3, 2)) + bytes(range(30)), psk=bytes(range(200, 232))))
_CONTENT = (23, 21, 22, 20)

_rng = random.Random(0)


def _association(**kwargs: object) -> DtlsAssociation:
    """The channel's associations draw from a per-input seeded RNG (reproducible inputs)."""
    return DtlsAssociation(random_bytes=_rng.randbytes, **kwargs)  # type: ignore[arg-type]


channel_module.DtlsAssociation = _association  # type: ignore[assignment,misc]


class _Transport:
    """Stands in for the steered UDP socket: keeps what the channel sends."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.sent.append(data)


class _Rig:
    """The channel, the client with the keys, and what went through."""

    def __init__(self, mode: LegacyMode | PskMode, mtu_discovery: bool) -> None:
        if isinstance(mode, LegacyMode):
            config = ClientConfig(
                suite=mode.suite, session_id=mode.session_id, master_secret=mode.master_secret
            )
        else:
            config = ClientConfig(psk=mode.psk, session_id=mode.app_id)
        self.client = DtlsTestClient(config)
        self.transport = _Transport()
        self.jar = CookieJar(random_bytes=lambda n: bytes(n))
        self.packets: list[bytes] = []
        self.established = 0
        self.channel = DtlsChannel(
            mode=mode,
            session_sid="fuzz",
            dpd=30,
            switch_to_tcp_timeout=25,
            mtu=1400,
            mtu_discovery=mtu_discovery,
            on_packets=self.packets.extend,
            on_established=self._up,
            on_activity=lambda now: None,
            on_timer_change=lambda: None,
        )

    def _up(self, channel: DtlsChannel) -> None:
        self.established += 1

    def deliver_batch(self, datagrams: list[bytes]) -> None:
        """A read of the steered socket: the fast path first, the reference path for the rest
        (``SteeredSocket._on_readable`` in ocgate/daemon/_udp.py)."""
        count = len(datagrams)
        index = self.channel.receive_fast(datagrams, 0, ADDR)
        while index < count:
            self.deliver(datagrams[index])
            index = self.channel.receive_fast(datagrams, index + 1, ADDR)

    def deliver(self, datagram: bytes) -> None:
        """Route one datagram on the reference path, as DtlsPort and SteeredSocket do."""
        try:
            info = peek_client_hello_untrusted(datagram)
        except BadRecord:
            info = None
        if info is None:
            self.channel.datagram_received(datagram, ADDR)
            return
        if isinstance(self.channel.mode, PskMode):
            try:
                self.jar.check(info, ADDR, 0.0)
            except BadRecord:
                self.transport.sent.append(self.jar.hello_verify_request(info, ADDR, 0.0))
                return
        self.channel.client_hello(datagram, info, ADDR, self.transport, lambda a, c: None)  # type: ignore[arg-type]

    def to_client(self) -> None:
        sent, self.transport.sent = self.transport.sent, []
        for datagram in sent:
            self.client.receive_datagram(datagram, 0.0)

    def handshake(self) -> None:
        self.client.start(0.0)
        for _ in range(10):
            for datagram in self.client.datagrams_to_send():
                self.deliver(datagram)
            self.to_client()
            if self.client.established and self.established:
                return
        raise AssertionError("the handshake with the test client did not complete")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    _rng.seed(0)
    rig = _Rig(MODES[data[0] % len(MODES)], mtu_discovery=bool(data[0] & 0x80))
    rig.handshake()
    client = rig.client
    sent: list[bytes] = []
    dpd_requests: list[bytes] = []
    history: list[bytes] = []
    pristine = True
    for tag, payload in _harness.ops(data[1:]):
        kind = tag % 8
        datagram = b""
        if kind == 0:
            content = _CONTENT[payload[0] % 4] if payload else 23
            plaintext = payload[1 : 1 + MAX_PLAINTEXT]
            datagram = client.raw_record(content, 1, plaintext)
            if content == 23 and plaintext[:1] == b"\x00":
                sent.append(plaintext[1:])
            elif content == 23 and plaintext[:1] == b"\x03":
                dpd_requests.append(plaintext[1:])
            elif content == 21:
                pristine = False  # An authenticated alert may close the channel.
        elif kind == 1:
            client.write_seq[1] = _harness.number(payload) & SEQ_MASK
            pristine = False
        elif kind == 2 and history:
            datagram = history[_harness.number(payload[:2]) % len(history)]
        elif kind == 3:
            record = bytearray(client.raw_record(23, 1, b"\x00" + payload[1:MAX_PLAINTEXT]))
            position = _harness.number(payload[1:3]) % len(record)
            record[position] ^= payload[0] | 1 if payload else 1
            datagram = bytes(record)
        elif kind == 4:
            pieces = [payload[i : i + 64] for i in range(0, len(payload), 64)] or [b""]
            records = [client.raw_record(23, 1, b"\x00" + p) for p in pieces]
            sent += pieces
            if tag & 8:  # Several records in one datagram (the reference path only).
                datagram = b"".join(records)
            else:  # One read of several datagrams (the fast path's batch).
                history += records
                rig.deliver_batch(records)
        elif kind == 5:
            rig.deliver(payload)
        elif kind == 6:
            rig.channel.handle_timer(time.monotonic() + _harness.number(payload[:3]) / 1000.0)
            pristine = False
        elif kind == 7:
            back = rig.channel.send_packets([payload], time.monotonic())
            assert back == ([payload] if len(payload) > rig.channel.mtu else []) or not pristine
        if datagram:
            history.append(datagram)
            rig.deliver_batch([datagram])
        rig.to_client()
    over = Counter(rig.packets) - Counter(sent)
    assert not over, f"packets the client never sent, or replayed: {list(over)[:3]!r}"
    if pristine:
        assert rig.packets == sent, "authenticated DATA records lost or reordered"
        echoes = [p[1:] for p in client.received if p[:1] == b"\x04"]
        assert echoes == dpd_requests, "DPD requests not echoed"


def seeds() -> list[bytes]:
    """Traffic like openconnect's: an IPv4/UDP packet (tests/vectors/cstp), DPD, keepalive."""
    packet = _harness.hex_vector(_harness.VECTORS / "cstp" / "oc_data_ipv4_udp.hex")[8:]
    traffic = (
        _harness.op(0, b"\x00\x00" + packet)
        + _harness.op(0, b"\x00\x03" + bytes(range(16)))
        + _harness.op(0, b"\x00\x07")
        + _harness.op(7, packet)
        + _harness.op(4, packet * 3)
    )
    out = [bytes((index,)) + traffic for index in range(len(MODES))]
    out.append(b"\x81" + _harness.op(0, b"\x00\x03" + bytes(1500)) + _harness.op(7, bytes(1450)))
    out.append(b"\x01" + _harness.op(0, b"\x00\x00" + packet) + _harness.op(2) + _harness.op(3))
    out.append(b"\x02" + _harness.op(1, (1 << 40).to_bytes(6, "big")) + traffic)
    out.append(b"\x00" + _harness.op(0, b"\x01\x01\x00") + traffic)
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
