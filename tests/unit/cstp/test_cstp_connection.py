"""CstpConnection against a tiny in-memory test client (STYLE rule 13), with a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.cstp import (
    ByeReceived,
    CstpConnection,
    CstpEvent,
    CstpState,
    DisconnectCode,
    Frame,
    FrameDecoder,
    IdleTimeout,
    PacketsReceived,
    PacketType,
    PeerDead,
    ProtocolFailed,
    SessionTimeout,
    encode_frame,
)
from ocgate.errors import LocalProtocolError

VECTORS = Path(__file__).parents[2] / "vectors" / "cstp"

TCP4 = bytes([0x45]) + bytes(8) + bytes([6]) + bytes(30)  # 40-byte IPv4/TCP
ICMP4 = bytes([0x45]) + bytes(8) + bytes([1]) + bytes(74)  # 84-byte ping


def vector(name: str) -> bytes:
    return bytes.fromhex((VECTORS / name).read_text().strip())


@dataclass
class FakeClock:
    now: float = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class CstpPair:
    """A server core plus a test client that encodes frames and decodes what the server sends."""

    clock: FakeClock = field(default_factory=FakeClock)
    dpd: int = 90
    idle_timeout: int | None = None
    session_timeout: float | None = None
    server: CstpConnection = field(init=False)
    client_decoder: FrameDecoder = field(default_factory=lambda: FrameDecoder(65535))

    def __post_init__(self) -> None:
        deadline = None if self.session_timeout is None else self.clock.now + self.session_timeout
        self.server = CstpConnection(
            now=self.clock.now,
            dpd=self.dpd,
            keepalive=32400,
            idle_timeout=self.idle_timeout,
            session_deadline=deadline,
        )

    def client_sends(self, *frames: tuple[int, bytes]) -> list[CstpEvent]:
        data = b"".join(encode_frame(t, p) for t, p in frames)
        self.server.receive_data(data, self.clock.now)
        return self.events()

    def events(self) -> list[CstpEvent]:
        out: list[CstpEvent] = []
        while (event := self.server.next_event()) is not None:
            out.append(event)
        return out

    def client_receives(self) -> list[Frame]:
        """Decode each record separately: exactly one frame per record, as openconnect demands."""
        frames: list[Frame] = []
        for record in self.server.frames_to_send():
            decoded = FrameDecoder(65535).feed_untrusted(record)
            assert len(decoded) == 1
            assert len(record) == 8 + len(decoded[0].payload)
            frames += decoded
        return frames

    def run_timers_until(self, until: float) -> list[CstpEvent]:
        """Fire timers as an adapter would, up to ``until``; return the events."""
        events: list[CstpEvent] = []
        while (when := self.server.get_timer()) is not None and when <= until:
            self.clock.now = max(self.clock.now, when)
            self.server.handle_timer(self.clock.now)
            events += self.events()
        self.clock.now = max(self.clock.now, until)
        return events


def test_data_is_batched_into_one_event() -> None:
    pair = CstpPair()
    events = pair.client_sends(*[(PacketType.DATA, TCP4)] * 5)
    assert events == [PacketsReceived([TCP4] * 5)]
    assert (pair.server.rx_packets, pair.server.rx_bytes) == (5, 5 * len(TCP4))


def test_openconnect_data_vector() -> None:
    pair = CstpPair()
    pair.server.receive_data(vector("oc_data_ipv4_udp.hex"), pair.clock.now)
    (event,) = pair.events()
    assert isinstance(event, PacketsReceived)
    assert event.packets[0].endswith(b"ocgate")


def test_partial_frames_across_calls() -> None:
    pair = CstpPair()
    raw = encode_frame(PacketType.DATA, TCP4) * 2
    pair.server.receive_data(raw[:50], pair.clock.now)
    assert pair.events() == [PacketsReceived([TCP4])]
    pair.server.receive_data(raw[50:], pair.clock.now)
    assert pair.events() == [PacketsReceived([TCP4])]
    pair.server.receive_data(b"", pair.clock.now)
    assert pair.events() == []


def test_dpd_request_echo_is_byte_exact() -> None:
    pair = CstpPair()
    request = vector("server_dpd_req_16.hex")  # a padded DPD-REQ, as Cisco MTU probes send
    pair.server.receive_data(request, pair.clock.now)
    assert pair.events() == []
    (reply,) = pair.server.frames_to_send()
    assert reply == request[:6] + bytes([PacketType.DPD_RESP]) + request[7:]
    pair.server.receive_data(vector("oc_dpd_req.hex"), pair.clock.now)
    assert pair.server.frames_to_send() == [b"STF\x01\x00\x00\x04\x00"]


def test_dpd_echoes_are_dropped_while_the_transport_is_full() -> None:
    # Hostile peers §4: a client that floods DPD-REQs and never reads must not grow our buffers.
    pair = CstpPair()
    request = vector("oc_dpd_req.hex")
    pair.server.writable = False
    pair.server.receive_data(request * 1000, pair.clock.now)
    assert pair.server.frames_to_send() == []
    assert pair.server.dpd_echoes_dropped == 1000
    pair.server.writable = True
    pair.server.receive_data(request, pair.clock.now)
    assert pair.server.frames_to_send() == [b"STF\x01\x00\x00\x04\x00"]


def test_control_frames_follow_the_data_batch() -> None:
    pair = CstpPair()
    events = pair.client_sends(
        (PacketType.DATA, TCP4),
        (PacketType.KEEPALIVE, b""),
        (PacketType.DPD_RESP, b""),
        (PacketType.TERMINATE, b""),
        (0x42, b"unknown"),
        (PacketType.DPD_REQ, b"x"),
        (PacketType.DATA, ICMP4),
    )
    assert events == [PacketsReceived([TCP4, ICMP4])]
    assert pair.server.rx_unknown_frames == 1
    assert pair.client_receives() == [Frame(PacketType.DPD_RESP, b"x")]


def test_bye_from_openconnect() -> None:
    pair = CstpPair()
    pair.server.receive_data(
        encode_frame(PacketType.DATA, TCP4) + vector("oc_bye_sigint.hex"), pair.clock.now
    )
    events = pair.events()
    assert events == [
        PacketsReceived([TCP4]),
        ByeReceived(code=DisconnectCode.USER_LOGOUT, message="Aborted by caller"),
    ]
    bye = events[1]
    assert isinstance(bye, ByeReceived)
    assert bye.is_user_logout
    assert pair.server.state is CstpState.CLOSED
    assert pair.server.get_timer() is None
    # Anything after the BYE is ignored.
    assert pair.client_sends((PacketType.DATA, TCP4)) == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", ByeReceived(code=None, message="")),
        (b"\x91", ByeReceived(code=0x91, message="")),
        (b"\xb0bad \xff utf8\x00", ByeReceived(code=0xB0, message="bad \ufffd utf8")),
    ],
)
def test_bye_decoding(payload: bytes, expected: ByeReceived) -> None:
    pair = CstpPair()
    events = pair.client_sends((PacketType.DISCONNECT, payload), (PacketType.DATA, TCP4))
    assert events == [expected]
    assert not expected.is_user_logout or expected.code == 0xB0


@pytest.mark.parametrize(
    "data",
    [
        b"XTF\x01\x00\x00\x00\x00",
        b"STF\x01\x00\x00\x00\x01",
        b"STF\x01\x40\x01\x00\x00",
    ],
)
def test_bad_frames_fail_the_connection(data: bytes) -> None:
    pair = CstpPair()
    pair.server.receive_data(encode_frame(PacketType.DATA, TCP4) + data, pair.clock.now)
    events = pair.events()
    assert events[0] == PacketsReceived([TCP4])
    assert isinstance(events[1], ProtocolFailed)
    assert pair.server.state is CstpState.CLOSED
    assert pair.server.frames_to_send() == []


def test_compressed_without_negotiation_fails() -> None:
    pair = CstpPair()
    events = pair.client_sends((PacketType.COMPRESSED, b"\x00\x01"))
    assert len(events) == 1
    assert isinstance(events[0], ProtocolFailed)
    assert "compression" in events[0].message


def test_send_packets_one_frame_per_record() -> None:
    pair = CstpPair()
    pair.server.send_packets([TCP4, ICMP4, b""])
    assert pair.client_receives() == [Frame(0, TCP4), Frame(0, ICMP4), Frame(0, b"")]
    assert (pair.server.tx_packets, pair.server.tx_bytes) == (3, len(TCP4) + len(ICMP4))
    assert pair.server.frames_to_send() == []


def test_oversize_outbound_packets_are_dropped() -> None:
    pair = CstpPair()
    pair.server.send_packets(p for p in [bytes(16385), TCP4])
    assert pair.client_receives() == [Frame(0, TCP4)]
    assert pair.server.tx_dropped == 1
    assert pair.server.tx_packets == 1


def test_send_disconnect_empty_like_ocserv() -> None:
    pair = CstpPair()
    pair.server.send_disconnect()
    assert pair.server.frames_to_send() == [b"STF\x01\x00\x00\x05\x00"]
    assert pair.server.state is CstpState.CLOSED
    pair.server.send_disconnect("again")
    pair.server.send_terminate()
    pair.server.send_packets([TCP4])
    assert pair.server.frames_to_send() == []


def test_send_disconnect_with_reason() -> None:
    pair = CstpPair()
    pair.server.send_disconnect("Admin kick é")
    assert pair.client_receives() == [Frame(PacketType.DISCONNECT, b"\xb0Admin kick ?")]
    other = CstpPair()
    other.server.send_disconnect("x" * 1000, code=0x91)
    (frame,) = other.client_receives()
    assert frame.payload[0] == 0x91
    assert len(frame.payload) == 256
    with pytest.raises(LocalProtocolError):
        CstpPair().server.send_disconnect("x", code=300)


def test_send_terminate() -> None:
    pair = CstpPair()
    pair.server.send_terminate()
    assert pair.server.frames_to_send() == [b"STF\x01\x00\x00\x09\x00"]
    assert pair.server.state is CstpState.CLOSED


def test_dead_peer_after_three_dpd() -> None:
    pair = CstpPair(dpd=10)
    start = pair.clock.now
    assert pair.server.get_timer() == start + 20
    assert pair.run_timers_until(start + 19.9) == []
    assert pair.run_timers_until(start + 20) == []
    assert pair.client_receives() == [Frame(PacketType.DPD_REQ, b"")]
    assert pair.server.get_timer() == start + 30
    events = pair.run_timers_until(start + 30)
    assert events == [PeerDead()]
    assert pair.server.dpd_requests_sent == 1
    assert pair.server.frames_to_send() == []  # no BYE to a dead peer
    assert pair.server.get_timer() is None


def test_dpd_requests_repeat_every_30s_for_long_dpd() -> None:
    pair = CstpPair(dpd=90)
    start = pair.clock.now
    events = pair.run_timers_until(start + 270)
    assert events == [PeerDead()]
    assert pair.server.dpd_requests_sent == 3  # at 180, 210, 240 (ocserv checks every 30 s)


def test_any_frame_resets_dpd() -> None:
    pair = CstpPair(dpd=10)
    start = pair.clock.now
    pair.run_timers_until(start + 25)
    assert pair.server.dpd_requests_sent == 1
    pair.client_sends((PacketType.DPD_RESP, b""))
    assert pair.server.get_timer() == start + 45
    assert pair.run_timers_until(start + 44) == []
    assert pair.run_timers_until(start + 55) == [PeerDead()]


def test_keepalive_is_not_sent_and_dpd_zero_disables() -> None:
    pair = CstpPair(dpd=0)
    assert pair.server.get_timer() is None
    pair.server.handle_timer(pair.clock.advance(10**6))
    assert pair.events() == []
    assert pair.server.frames_to_send() == []


def test_handle_timer_early_is_harmless() -> None:
    pair = CstpPair(dpd=10)
    pair.server.handle_timer(pair.clock.advance(1))
    assert pair.events() == []
    assert pair.server.frames_to_send() == []


def test_idle_timeout_ignores_icmp() -> None:
    pair = CstpPair(dpd=0, idle_timeout=60)
    start = pair.clock.now
    assert pair.server.get_timer() == start + 60
    pair.clock.advance(30)
    pair.client_sends((PacketType.DATA, ICMP4))
    pair.server.send_packets([ICMP4], now=pair.clock.now)
    assert pair.server.get_timer() == start + 60
    events = pair.run_timers_until(start + 60)
    assert events == [IdleTimeout()]
    assert pair.client_receives() == [Frame(0, ICMP4), Frame(PacketType.DISCONNECT, b"")]


def test_idle_refreshed_by_inbound_traffic() -> None:
    pair = CstpPair(dpd=0, idle_timeout=60)
    start = pair.clock.now
    pair.clock.advance(50)
    pair.client_sends((PacketType.DATA, TCP4))
    assert pair.server.get_timer() == start + 110
    assert pair.run_timers_until(start + 109) == []
    assert pair.run_timers_until(start + 110) == [IdleTimeout()]


def test_idle_refreshed_by_outbound_traffic() -> None:
    pair = CstpPair(dpd=0, idle_timeout=60)
    start = pair.clock.now
    pair.server.send_packets([TCP4], now=start + 40)
    assert pair.server.get_timer() == start + 100
    # Without ``now`` the activity is credited at the next call that brings the time.
    pair.server.send_packets([TCP4])
    assert pair.run_timers_until(start + 100) == []
    assert pair.server.get_timer() == start + 160
    assert pair.run_timers_until(start + 160) == [IdleTimeout()]


def test_session_deadline() -> None:
    pair = CstpPair(dpd=1000, idle_timeout=10_000, session_timeout=300)
    start = pair.clock.now
    assert pair.server.get_timer() == start + 300
    pair.client_sends((PacketType.DATA, TCP4))
    assert pair.run_timers_until(start + 300) == [SessionTimeout()]
    assert pair.client_receives() == [Frame(PacketType.DISCONNECT, b"")]
    assert pair.server.state is CstpState.CLOSED


def test_earliest_timer_wins() -> None:
    pair = CstpPair(dpd=10, idle_timeout=15, session_timeout=100)
    assert pair.server.get_timer() == pair.clock.now + 15


def test_negative_timers_rejected() -> None:
    with pytest.raises(LocalProtocolError):
        CstpConnection(now=0, dpd=-1, keepalive=0, idle_timeout=None, session_deadline=None)


@settings(max_examples=200)
@given(chunks=st.lists(st.binary(max_size=40), max_size=6), dpd=st.integers(0, 5))
def test_fuzz_receive_data_never_raises(chunks: list[bytes], dpd: int) -> None:
    conn = CstpConnection(now=0.0, dpd=dpd, keepalive=0, idle_timeout=3, session_deadline=None)
    now = 0.0
    for chunk in chunks:
        now += 1.0
        conn.receive_data(b"STF\x01" + chunk if chunk[:1] == b"S" else chunk, now)
        conn.handle_timer(now)
        for record in conn.frames_to_send():
            assert len(FrameDecoder(65535).feed_untrusted(record)) == 1
    while conn.next_event() is not None:
        pass
