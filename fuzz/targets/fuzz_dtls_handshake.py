"""The DTLS server handshake: ``DtlsAssociation.receive_datagram`` never raises, in every state.

Input: a case byte (which real GnuTLS 3.7.9 transcript of tests/vectors/dtls: DTLS 0.9 and 1.2
legacy resumption with each suite, and PSK-NEGOTIATE), then operations. Tag % 4: 0 = a fuzzed
datagram, 1 = the client's next real datagram, 2 = that datagram with the payload XORed into it
(a corrupted but well-framed record), 3 = the clock moves on by the payload (ms) and the timers
run. The server draws its randomness as when the transcript was recorded, so the real datagrams
(the client's Finished and its encrypted records) still verify after fuzzed ones.

Oracle: no exception; the state is one of ``DtlsState``; every datagram the server sends splits
into well-formed records; a handshake completes at most once, and only when the client's real
(encrypted) Finished arrived; a terminal association has no timer.
"""

from __future__ import annotations

import json
import random

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.dtls import (
        DTLS12_CIPHERSUITES,
        DTLS_CIPHERSUITES,
        DtlsAssociation,
        DtlsState,
        HandshakeCompleted,
        LegacyMode,
        PskMode,
    )
    from ocgate.dtls._record import records_untrusted

TRANSCRIPTS = json.loads((_harness.VECTORS / "dtls" / "gnutls_transcripts.json").read_text())
CASES = sorted(TRANSCRIPTS["cases"])
_TERMINAL = (DtlsState.CLOSED, DtlsState.FAILED)


def mode_of(case: dict[str, object]) -> LegacyMode | PskMode:
    """The server mode a transcript was recorded with (tests/unit/dtls/test_dtls_vectors.py)."""
    if "suite" not in case:
        return PskMode(
            app_id=bytes.fromhex(TRANSCRIPTS["app_id"]), psk=bytes.fromhex(TRANSCRIPTS["psk"])
        )
    table = DTLS12_CIPHERSUITES if case["table"] == "dtls12" else DTLS_CIPHERSUITES
    return LegacyMode(
        session_id=bytes.fromhex(TRANSCRIPTS["session_id"]),
        master_secret=bytes.fromhex(TRANSCRIPTS["master_secret"]),
        suite=table[str(case["suite"])][0],
    )


MODES = {name: mode_of(TRANSCRIPTS["cases"][name]) for name in CASES}


def test_one_input(data: bytes) -> None:
    if not data:
        return
    name = CASES[data[0] % len(CASES)]
    real = [bytes.fromhex(d) for d in TRANSCRIPTS["cases"][name]["client_datagrams"]]
    seed = TRANSCRIPTS["server_random_seed"]
    server = DtlsAssociation(mode=MODES[name], now=0.0, random_bytes=random.Random(seed).randbytes)
    # The client's encrypted Finished: the last record of the last handshake datagram.
    finished = list(records_untrusted(real[-2]))[-1].fragment
    now = 0.0
    completed = 0
    delivered: set[bytes] = set()
    for tag, payload in _harness.ops(data[1:]):
        kind = tag % 4
        if kind == 3:
            now += _harness.number(payload[:3]) / 1000.0
            server.handle_timer(now)
        elif kind == 0:
            delivered.add(payload)
            server.receive_datagram(payload, now)
        elif real:
            datagram = real.pop(0)
            if kind == 2 and payload:
                mixed = bytearray(datagram)
                for i, byte in enumerate(payload[: len(mixed)]):
                    mixed[-1 - i] ^= byte
                datagram = bytes(mixed)
            delivered.add(datagram)
            server.receive_datagram(datagram, now)
        assert server.state in DtlsState
        for out in server.datagrams_to_send():
            assert list(records_untrusted(out)), "an empty datagram was sent"
        while (event := server.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                completed += 1
        if server.state in _TERMINAL:
            assert server.get_timer() is None
    assert completed <= 1, "the handshake completed twice"
    assert not completed or any(finished in d for d in delivered), "completed without Finished"


def seeds() -> list[bytes]:
    """Each transcript replayed in full, with timer steps, a corruption and a fuzzed datagram."""
    out = []
    for index, name in enumerate(CASES):
        real = TRANSCRIPTS["cases"][name]["client_datagrams"]
        tick = _harness.op(3, (500).to_bytes(3, "big"))
        out.append(bytes((index,)) + b"".join(_harness.op(1) + tick for _ in real))
        first = bytes.fromhex(real[0])
        out.append(
            bytes((index,)) + _harness.op(0, first) + _harness.op(1) + _harness.op(2, b"\x01")
        )
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
