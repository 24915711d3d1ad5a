"""Fuzzing: ``*_untrusted`` raise only BadRecord, ``receive_datagram`` never raises (rule 5)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocgate.dtls import DtlsAssociation, DtlsState, LegacyMode, PskMode
from ocgate.dtls._messages import (
    handshake_fragments_untrusted,
    peek_client_hello_untrusted,
    pull_alert_untrusted,
    pull_client_hello_untrusted,
    pull_hello_verify_request_untrusted,
    pull_psk_client_key_exchange_untrusted,
    pull_server_hello_untrusted,
)
from ocgate.dtls._record import records_untrusted
from ocgate.errors import BadRecord
from tests.unit.dtls._pair import DtlsPair, legacy_client, psk_client
from tests.unit.dtls.test_dtls_association import legacy_mode, psk_mode

TRANSCRIPTS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "dtls" / "gnutls_transcripts.json").read_text()
)
SAMPLES = [
    bytes.fromhex(d) for case in TRANSCRIPTS["cases"].values() for d in case["client_datagrams"]
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real datagram with a few bytes changed, cut or extended, or plain random bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=20))


def _body(data: bytes) -> bytes:
    return data[25:] if len(data) > 25 else data  # Past the record and handshake headers.


UNTRUSTED: list[Callable[[bytes], object]] = [
    peek_client_hello_untrusted,
    lambda d: list(records_untrusted(d)),
    lambda d: handshake_fragments_untrusted(d[13:]),
    lambda d: pull_client_hello_untrusted(_body(d)),
    lambda d: pull_server_hello_untrusted(_body(d)),
    lambda d: pull_hello_verify_request_untrusted(_body(d)),
    lambda d: pull_psk_client_key_exchange_untrusted(_body(d)),
    lambda d: pull_alert_untrusted(d[-2:]),
]


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(UNTRUSTED) - 1), data=mutated())
def test_untrusted_parsers_raise_only_bad_record(index: int, data: bytes) -> None:
    with contextlib.suppress(BadRecord):
        UNTRUSTED[index](data)


def _association(stage: str) -> tuple[DtlsAssociation, list[bytes]]:
    """A server association in the named state, and datagrams its client would send next."""
    mode: LegacyMode | PskMode = psk_mode() if stage.startswith("psk") else legacy_mode()
    client = legacy_client(mode) if isinstance(mode, LegacyMode) else psk_client(mode)
    pair = DtlsPair(mode, client)
    pair.start()
    target = {
        "legacy-hello": DtlsState.SERVER_EXPECT_CLIENT_HELLO,
        "legacy-finished": DtlsState.SERVER_EXPECT_FINISHED,
        "legacy-established": DtlsState.ESTABLISHED,
        "psk-cke": DtlsState.SERVER_EXPECT_CLIENT_KEY_EXCHANGE,
        "psk-established": DtlsState.ESTABLISHED,
    }[stage]
    if target is DtlsState.SERVER_EXPECT_CLIENT_HELLO:
        return DtlsAssociation(mode=mode, now=0.0), client.datagrams_to_send()
    while pair.server is None or pair.server.state is not target:
        assert pair.step() or pair.advance()
    assert pair.server is not None
    if target is DtlsState.ESTABLISHED:
        client.send([b"\x00data", b"\x03dpd"])
    return pair.server, client.datagrams_to_send() + pair.to_client


STAGES = ["legacy-hello", "legacy-finished", "legacy-established", "psk-cke", "psk-established"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stage=st.sampled_from(STAGES), data=st.lists(mutated(), min_size=1, max_size=3))
def test_receive_datagram_never_raises(stage: str, data: list[bytes]) -> None:
    server, upcoming = _association(stage)
    for i, datagram in enumerate(data):
        server.receive_datagram(datagram, 1.0 + i)
        for extra in upcoming:  # Genuine traffic interleaved with the garbage.
            mangled = bytearray(extra)
            mangled[min(i * 7, len(mangled) - 1)] ^= i
            server.receive_datagram(bytes(mangled), 1.0 + i)
    list(iter(server.next_event, None))
    server.datagrams_to_send()
    server.handle_timer(100.0)
    assert server.state in DtlsState
