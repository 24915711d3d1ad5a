"""The CSTP connection core over time: ``CstpConnection`` never raises on peer bytes.

Input: operations. Tag % 4: 0 = bytes from the client's TLS stream, 1 = the clock moves on by
the payload (milliseconds) and the timers run, 2 = the server sends the payload split into IP
packets, 3 = the tunnel's other channel (DTLS) reports activity. The first operation's tag also
picks the DPD and idle settings.

Oracle: ``receive_data`` and ``handle_timer`` raise nothing; every element of ``frames_to_send``
is exactly one well-formed frame; each DPD-REQ the client sent (as an independent decoder sees
the same stream) is answered by a DPD-RESP with the same payload while the connection is open; a
closed connection emits nothing more and has no timer.
"""

from __future__ import annotations

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.cstp import (
        CstpConnection,
        CstpState,
        FrameDecoder,
        PacketType,
        ProtocolFailed,
    )
    from ocgate.cstp.events import CstpEvent
    from ocgate.errors import BadFrame

_SETTINGS = ((30, 0, None), (2, 20, 60), (0, 0, 5), (1, 0, None))


def _one_frame(record: bytes) -> tuple[int, bytes]:
    decoder = FrameDecoder(65535)
    frames = decoder.feed_untrusted(record)
    assert len(frames) == 1, "a queued record is not exactly one frame"
    assert decoder.buffered == 0
    return frames[0].type, frames[0].payload


def test_one_input(data: bytes) -> None:
    operations = list(_harness.ops(data))
    if not operations:
        return
    dpd, keepalive, idle = _SETTINGS[operations[0][0] >> 4 & 3]
    conn = CstpConnection(
        now=0.0, dpd=dpd, keepalive=keepalive, idle_timeout=idle, session_deadline=3600.0
    )
    watcher = FrameDecoder(conn.max_payload)
    watcher_failed = False
    expected_echoes: list[bytes] = []
    echoes: list[bytes] = []
    events: list[CstpEvent] = []
    now = 0.0
    for tag, payload in operations:
        was_open = conn.state is CstpState.OPEN
        kind = tag % 4
        if kind == 0:
            conn.receive_data(payload, now)
            if was_open and not watcher_failed:
                types: list[int] = []
                payloads: list[bytes] = []
                try:
                    watcher.decode_into_untrusted(payload, types, payloads)
                except BadFrame:
                    watcher_failed = True
                for ptype, body in zip(types, payloads, strict=True):
                    if ptype in (PacketType.DISCONNECT, PacketType.COMPRESSED):
                        watcher_failed = True  # The connection stops reading here.
                        break
                    if ptype == PacketType.DPD_REQ:
                        expected_echoes.append(body)
        elif kind == 1:
            now += _harness.number(payload[:3]) / 1000.0
            conn.handle_timer(now)
        elif kind == 2:
            conn.send_packets([payload[i : i + 1500] for i in range(0, len(payload), 1500)], now)
        else:
            conn.note_activity(now)
        while (event := conn.next_event()) is not None:
            assert was_open, f"{event!r} after the connection closed"
            events.append(event)
        for record in conn.frames_to_send():
            ptype, body = _one_frame(record)
            if ptype == PacketType.DPD_RESP:
                echoes.append(body)
        if conn.state is CstpState.CLOSED:
            assert conn.get_timer() is None
    if not any(isinstance(e, ProtocolFailed) for e in events):
        assert echoes == expected_echoes, "DPD requests not echoed exactly"


def seeds() -> list[bytes]:
    """openconnect 9.01's frames (tests/vectors/cstp) with timer steps between them."""
    directory = _harness.VECTORS / "cstp"
    names = ["oc_data_ipv4_udp", "oc_dpd_req", "oc_dpd_resp_to_16", "oc_bye_sigint"]
    frames = {n: _harness.hex_vector(directory / f"{n}.hex") for n in names}
    tick = _harness.op(1, (1500).to_bytes(3, "big"))
    packet = frames["oc_data_ipv4_udp"][8:]
    out = [
        b"".join(_harness.op(0x10, f) + tick for f in frames.values()),
        _harness.op(0x20, b"".join(frames.values())),
        _harness.op(0x00, frames["oc_dpd_req"][:5])
        + _harness.op(0, frames["oc_dpd_req"][5:])
        + _harness.op(2, packet)
        + tick * 4,
        _harness.op(0x30, frames["oc_data_ipv4_udp"]) + _harness.op(3) + tick * 8,
    ]
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
