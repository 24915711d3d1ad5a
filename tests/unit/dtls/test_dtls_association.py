"""DtlsAssociation against the test client, in memory and over a hostile network (rule 13)."""

from __future__ import annotations

import random

import pytest

from ocgate.dtls import (
    DTLS12_CIPHERSUITES,
    DTLS_CIPHERSUITES,
    AssociationClosed,
    CipherSuite,
    ContentType,
    DataReceived,
    DtlsAssociation,
    DtlsState,
    HandshakeCompleted,
    HandshakeFailed,
    LegacyMode,
    PskMode,
)
from ocgate.errors import LocalProtocolError
from tests.unit.dtls._pair import DtlsPair, LossyNet, legacy_client, psk_client, seeded_random

MASTER = bytes(range(48))
SESSION_ID = bytes(range(100, 132))
PSK = bytes(range(200, 232))

LEGACY_SUITES = sorted(
    {s for s, _ in DTLS_CIPHERSUITES.values()} | {s for s, _ in DTLS12_CIPHERSUITES.values()},
    key=lambda s: (s.version, s.cipher_suite, s.name),
)


def legacy_mode(name: str = "AES256-SHA", *, dtls12: bool = False) -> LegacyMode:
    table = DTLS12_CIPHERSUITES if dtls12 else DTLS_CIPHERSUITES
    return LegacyMode(session_id=SESSION_ID, master_secret=MASTER, suite=table[name][0])


def psk_mode(**kw: object) -> PskMode:
    return PskMode(app_id=b"app-id", psk=PSK, **kw)  # type: ignore[arg-type]


def established_pair(mode: LegacyMode | PskMode, **kw: object) -> DtlsPair:
    client = legacy_client(mode) if isinstance(mode, LegacyMode) else psk_client(mode)
    pair = DtlsPair(mode, client, **kw)  # type: ignore[arg-type]
    pair.start()
    pair.run(lambda: client.established and pair.server is not None and _done(pair))
    assert client.established
    assert pair.server is not None
    assert pair.server.state is DtlsState.ESTABLISHED
    return pair


def _done(pair: DtlsPair) -> bool:
    return pair.server is not None and pair.server.state is DtlsState.ESTABLISHED


def data_events(pair: DtlsPair) -> list[bytes]:
    return [p for e in pair.events if isinstance(e, DataReceived) for p in e.payloads]


@pytest.mark.parametrize("suite", LEGACY_SUITES, ids=lambda s: f"{s.version.name}-{s.name}")
def test_legacy_handshake_and_data_every_suite(suite: object) -> None:
    mode = LegacyMode(session_id=SESSION_ID, master_secret=MASTER, suite=suite)  # type: ignore[arg-type]
    pair = established_pair(mode)
    assert pair.events == [HandshakeCompleted(mode.suite.description)]
    pair.client.send([b"\x00packet-1", b"\x03dpd"])
    assert pair.server is not None
    pair.server.receive_datagram(b"".join(pair.client.datagrams_to_send()), pair.now)
    pair.step()
    assert data_events(pair) == [b"\x00packet-1", b"\x03dpd"]
    assert len([e for e in pair.events if isinstance(e, DataReceived)]) == 1  # One per datagram.
    pair.server.send_data([b"\x04dpd", b"\x00reply"])
    pair.step()
    assert pair.client.received == [b"\x04dpd", b"\x00reply"]


@pytest.mark.parametrize(
    ("offered", "description"),
    [
        (None, "(DTLS1.2)-(PSK)-(AES-256-GCM)"),
        ((0xCCAB, 0x00A8), "(DTLS1.2)-(PSK)-(CHACHA20-POLY1305)"),
        ((0x008C, 0x00A8), "(DTLS1.2)-(PSK)-(AES-128-GCM)"),
    ],
)
def test_psk_handshake_with_cookie(offered: tuple[int, ...] | None, description: str) -> None:
    mode = psk_mode()
    client = psk_client(mode) if offered is None else psk_client(mode, offered=offered)
    pair = DtlsPair(mode, client)
    pair.start()
    pair.run(lambda: client.established)
    assert pair.events == [HandshakeCompleted(description)]
    assert pair.server is not None
    assert pair.server.cipher_description == description
    assert pair.server.client_random == client.client_random
    client.send([b"\x00up"])
    pair.server.send_data([b"\x00down"])
    pair.step()
    assert data_events(pair) == [b"\x00up"]
    assert client.received == [b"\x00down"]


def test_record_overhead_matches_cstp_constants() -> None:
    from ocgate.cstp import (
        DTLS12_AES_GCM_RECORD_OVERHEAD,
        DTLS12_CHACHA20_RECORD_OVERHEAD,
        DTLS_CBC_SHA1_RECORD_OVERHEAD,
    )

    def overhead(mode: LegacyMode | PskMode) -> int:
        return DtlsAssociation(mode=mode, now=0).record_overhead

    assert overhead(legacy_mode("AES256-SHA")) == DTLS_CBC_SHA1_RECORD_OVERHEAD
    assert overhead(legacy_mode("OC-DTLS1_2-AES256-GCM")) == DTLS12_AES_GCM_RECORD_OVERHEAD
    assert overhead(legacy_mode("OC2-DTLS1_2-CHACHA20-POLY1305")) == DTLS12_CHACHA20_RECORD_OVERHEAD
    assert overhead(legacy_mode("DES-CBC3-SHA")) == 13 + 8 + 20 + 8
    assert overhead(psk_mode()) == DTLS12_AES_GCM_RECORD_OVERHEAD  # Worst case until chosen.
    only_chacha = psk_mode(suites=(CipherSuite.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,))
    assert overhead(only_chacha) == DTLS12_CHACHA20_RECORD_OVERHEAD


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["legacy09", "legacy12", "psk"])
def test_handshakes_complete_over_a_terrible_network(kind: str, seed: int) -> None:
    mode: LegacyMode | PskMode = {
        "legacy09": legacy_mode("AES128-SHA"),
        "legacy12": legacy_mode("ECDHE-RSA-AES256-GCM-SHA384", dtls12=True),
        "psk": psk_mode(),
    }[kind]
    client = legacy_client(mode) if isinstance(mode, LegacyMode) else psk_client(mode)
    net = LossyNet(random.Random(seed), drop=0.3, duplicate=0.2, reorder=0.5)
    pair = DtlsPair(mode, client, net=net)
    pair.start()
    pair.run(lambda: client.established and _done(pair))
    assert client.established
    assert _done(pair)
    assert [type(e) for e in pair.events] == [HandshakeCompleted]
    # Data flows both ways through the same network; at least something gets through.
    assert pair.server is not None
    for i in range(20):
        client.send([b"\x00c%d" % i])
        pair.server.send_data([b"\x00s%d" % i])
        pair.step()
    assert 0 < len(set(data_events(pair))) == len(data_events(pair)) <= 20  # No duplicates.
    assert 0 < len(client.received) <= 40


def test_replayed_record_is_dropped() -> None:
    pair = established_pair(legacy_mode())
    pair.client.send([b"\x00once"])
    datagram = pair.client.datagrams_to_send()[0]
    assert pair.server is not None
    for _ in range(3):
        pair.server.receive_datagram(datagram, pair.now)
    assert [e for e in iter(pair.server.next_event, None)] == [DataReceived([b"\x00once"])]


def test_flipped_bit_is_dropped_without_killing_the_association() -> None:
    for mode in (legacy_mode(), legacy_mode("OC-DTLS1_2-AES256-GCM"), psk_mode()):
        pair = established_pair(mode)
        server = pair.server
        assert server is not None
        pair.client.send([b"\x00payload"])
        datagram = bytearray(pair.client.datagrams_to_send()[0])
        datagram[-3] ^= 0x10
        server.receive_datagram(bytes(datagram), pair.now)
        assert server.next_event() is None
        assert server.datagrams_to_send() == []  # No alert after the handshake.
        assert server.state is DtlsState.ESTABLISHED
        pair.client.send([b"\x00next"])
        pair.step()
        assert data_events(pair) == [b"\x00next"]


def test_second_client_hello_after_completion_is_ignored() -> None:
    pair = established_pair(legacy_mode())
    server = pair.server
    assert server is not None
    second = legacy_client(legacy_mode(), seed=99)
    second.start(pair.now)
    for datagram in second.datagrams_to_send():
        server.receive_datagram(datagram, pair.now)
    assert server.datagrams_to_send() == []
    assert server.state is DtlsState.ESTABLISHED
    pair.client.send([b"\x00still-up"])
    pair.step()
    assert data_events(pair) == [b"\x00still-up"]


def test_retransmission_backoff_then_give_up_after_60s() -> None:
    mode = legacy_mode()
    client = legacy_client(mode)
    client.start(0.0)
    server = DtlsAssociation(mode=mode, now=0.0, random_bytes=seeded_random(3))
    server.receive_datagram(client.datagrams_to_send()[0], 0.0)
    first = server.datagrams_to_send()
    assert len(first) == 1
    sent_at = []
    while (timer := server.get_timer()) is not None:
        server.handle_timer(timer)
        if server.datagrams_to_send():
            sent_at.append(round(timer, 1))
    assert sent_at[:4] == [0.4, 1.2, 2.8, 6.0]  # 400 ms doubling.
    assert sent_at[-1] < 60.0
    assert server.state is DtlsState.FAILED
    assert server.next_event() == HandshakeFailed("handshake timed out")
    server.handle_timer(100.0)
    assert server.next_event() is None


def test_retransmitted_client_hello_repeats_our_flight() -> None:
    mode = legacy_mode()
    client = legacy_client(mode)
    client.start(0.0)
    hello = client.datagrams_to_send()[0]
    server = DtlsAssociation(mode=mode, now=0.0, random_bytes=seeded_random(3))
    server.receive_datagram(hello, 0.0)
    assert len(server.datagrams_to_send()) == 1
    server.receive_datagram(hello + hello, 0.1)  # Two copies in one datagram: one answer.
    assert len(server.datagrams_to_send()) == 1
    assert server.state is DtlsState.SERVER_EXPECT_FINISHED


def test_lost_final_psk_flight_is_repeated_on_demand() -> None:
    mode = psk_mode()
    client = psk_client(mode)
    pair = DtlsPair(mode, client)
    pair.start()
    while not _done(pair):  # Hand-driven, to lose exactly the server's final flight.
        for datagram in client.datagrams_to_send():
            pair._to_server(datagram)
        if pair.server is not None and not _done(pair):
            pair.to_client += pair.server.datagrams_to_send()
        for datagram in pair.to_client:
            client.receive_datagram(datagram, pair.now)
        pair.to_client.clear()
    assert pair.server is not None
    assert pair.server.datagrams_to_send()  # The final CCS + Finished is lost.
    assert not client.established
    assert pair.server.get_timer() is None
    pair.run(lambda: client.established)  # The client's timer repeats its flight.
    assert client.established


@pytest.mark.parametrize("fragment_size", [7, 40])
def test_fragmented_handshake_messages_are_reassembled(fragment_size: int) -> None:
    mode = legacy_mode()
    client = legacy_client(mode, fragment_size=fragment_size)
    pair = DtlsPair(mode, client)
    pair.server = DtlsAssociation(mode=mode, now=0.0)  # A fragmented hello cannot be peeked.
    pair.start()
    pair.run(lambda: client.established and _done(pair))
    assert _done(pair)
    psk = psk_mode()
    client = psk_client(psk, fragment_size=fragment_size, fragment_hello=False)
    pair = DtlsPair(psk, client)
    pair.start()
    pair.run(lambda: client.established and _done(pair))
    assert _done(pair)


def handshake_failure(
    mode: LegacyMode | PskMode, **client_kw: object
) -> tuple[object, list[bytes]]:
    client = legacy_client(mode, **client_kw) if isinstance(mode, LegacyMode) else None
    assert client is not None
    client.start(0.0)
    server = DtlsAssociation(mode=mode, now=0.0)
    for datagram in client.datagrams_to_send():
        server.receive_datagram(datagram, 0.0)
    return server.next_event(), server.datagrams_to_send()


def alert_of(datagram: bytes) -> bytes:
    assert datagram[0] == ContentType.alert
    return datagram[13:]


def test_wrong_session_id_is_a_handshake_failure() -> None:
    event, out = handshake_failure(legacy_mode(), session_id=b"\x01" * 32)
    assert isinstance(event, HandshakeFailed)
    assert alert_of(out[-1]) == b"\x02\x28"


def test_suite_not_offered_is_a_handshake_failure() -> None:
    other = DTLS_CIPHERSUITES["AES128-SHA"][0]
    event, out = handshake_failure(legacy_mode(), suite=other)
    assert isinstance(event, HandshakeFailed)
    assert alert_of(out[-1]) == b"\x02\x28"


def test_wrong_version_is_a_protocol_version_alert() -> None:
    dtls12 = DTLS12_CIPHERSUITES["AES256-SHA"][0]
    event, out = handshake_failure(legacy_mode(), suite=dtls12)
    assert isinstance(event, HandshakeFailed)
    assert alert_of(out[-1]) == b"\x02\x46"


@pytest.mark.parametrize("mode", [legacy_mode("OC-DTLS1_2-AES128-GCM"), psk_mode()])
def test_bad_client_finished_is_a_decrypt_error(mode: LegacyMode | PskMode) -> None:
    if isinstance(mode, LegacyMode):
        client = legacy_client(mode, corrupt_finished=True)
    else:
        client = psk_client(mode, corrupt_finished=True)
    pair = DtlsPair(mode, client)
    pair.start()
    pair.run(lambda: pair.server is not None and pair.server.state is DtlsState.FAILED)
    assert pair.server is not None
    assert pair.server.state is DtlsState.FAILED
    assert isinstance(pair.events[-1], HandshakeFailed)
    assert client.alerts == [(2, 51)]  # decrypt_error, encrypted under the new keys.


def test_zero_random_is_refused() -> None:
    mode = legacy_mode()
    client = legacy_client(mode)
    client.client_random = bytes(32)
    client.start(0.0)
    server = DtlsAssociation(mode=mode, now=0.0)
    server.receive_datagram(client.datagrams_to_send()[0], 0.0)
    assert isinstance(server.next_event(), HandshakeFailed)


def test_cookieless_hello_is_ignored_by_a_psk_association() -> None:
    mode = psk_mode()
    client = psk_client(mode)
    client.start(0.0)
    server = DtlsAssociation(mode=mode, now=0.0)
    server.receive_datagram(client.datagrams_to_send()[0], 0.0)
    assert server.state is DtlsState.SERVER_EXPECT_CLIENT_HELLO
    assert server.datagrams_to_send() == []
    assert server.cipher_description is None


def test_close_and_close_notify() -> None:
    pair = established_pair(psk_mode())
    server = pair.server
    assert server is not None
    pair.client.send([b"\x00last"])
    pair.client.close()
    datagram = b"".join(pair.client.datagrams_to_send())
    server.receive_datagram(datagram, pair.now)
    assert list(iter(server.next_event, None)) == [
        DataReceived([b"\x00last"]),
        AssociationClosed("client sent close_notify"),
    ]
    assert server.state is DtlsState.CLOSED
    server.send_data([b"\x00ignored"])
    assert server.datagrams_to_send() == []

    pair = established_pair(legacy_mode())
    assert pair.server is not None
    pair.server.close()
    pair.server.close()
    pair.step()
    assert pair.client.alerts == [(1, 0)]
    assert pair.server.state is DtlsState.CLOSED


def test_plaintext_alert_after_handshake_is_ignored() -> None:
    pair = established_pair(legacy_mode())
    server = pair.server
    assert server is not None
    server.receive_datagram(pair.client.raw_record(ContentType.alert, 0, b"\x02\x28"), pair.now)
    assert server.state is DtlsState.ESTABLISHED
    server.receive_datagram(pair.client.raw_record(ContentType.alert, 1, b"\x02\x28"), pair.now)
    assert server.next_event() == AssociationClosed("client sent fatal alert 40")


def test_alert_during_handshake_fails_it() -> None:
    mode = legacy_mode()
    client = legacy_client(mode)
    client.start(0.0)
    server = DtlsAssociation(mode=mode, now=0.0)
    server.receive_datagram(client.datagrams_to_send()[0], 0.0)
    server.receive_datagram(client.raw_record(ContentType.alert, 0, b"\x02\x28"), 0.1)
    assert server.next_event() == HandshakeFailed("client sent alert 40")
    assert server.get_timer() is None


def test_send_data_before_handshake_is_a_caller_bug() -> None:
    server = DtlsAssociation(mode=legacy_mode(), now=0.0)
    with pytest.raises(LocalProtocolError):
        server.send_data([b"\x00x"])
    pair = established_pair(legacy_mode())
    assert pair.server is not None
    with pytest.raises(LocalProtocolError):
        pair.server.send_data([bytes(2**14 + 1)])


def test_modes_validate_and_hide_secrets() -> None:
    assert "master_secret" not in repr(legacy_mode())
    assert PSK.hex() not in repr(psk_mode())
    assert "psk=" not in repr(psk_mode())
    with pytest.raises(LocalProtocolError):
        LegacyMode(session_id=SESSION_ID, master_secret=b"short", suite=legacy_mode().suite)
    with pytest.raises(LocalProtocolError):
        PskMode(app_id=b"", psk=b"")
    with pytest.raises(LocalProtocolError):
        DtlsAssociation(mode=psk_mode(), now=0.0, mtu=100)
