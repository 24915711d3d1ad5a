"""The fast path against the reference path (ocgate.dtls._epoch, ocgate._fastpath).

Every test runs once per implementation of the epoch state: ``python`` (PyEpochState) and ``c``
(the compiled ``ocgate._fastpath``, skipped when it is not built). The core property: the same
client datagrams, fed to one association through the reference path only (``receive_datagram``)
and to another through the fast path with the reference path behind it (what the worker's DTLS
channel does), deliver the same payloads and events, and leave the two replay windows alike —
for well-formed traffic and for every kind of rejection: bad MAC, replays, other epochs and
versions, bad lengths, several records per datagram, sequence numbers far ahead or behind,
oversized plaintext, alerts.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocgate.dtls import DataReceived, DtlsAssociation, DtlsState, LegacyMode, PskMode, _epoch
from ocgate.dtls._record import (
    MAX_PLAINTEXT,
    SEQ_MASK,
    ReplayWindow,
    encode_record,
    records_untrusted,
)
from ocgate.dtls._suites import derive_key_block, protections
from ocgate.errors import BadRecord, BadRecordMac, LocalProtocolError
from tests.unit.dtls._pair import DtlsPair
from tests.unit.dtls.test_dtls_association import established_pair, legacy_mode, psk_mode

IMPLS = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(
            name not in _epoch.IMPLEMENTATIONS, reason="ocgate._fastpath is not built"
        ),
    )
    for name in ("python", "c")
]
MODES = {
    "psk-aes256-gcm": psk_mode(),
    "oc-dtls12-aes128-gcm": legacy_mode("OC-DTLS1_2-AES128-GCM"),
    "oc2-chacha20": legacy_mode("OC2-DTLS1_2-CHACHA20-POLY1305"),
    "dtls09-aes256-sha": legacy_mode("AES256-SHA"),
    "dtls12-aes128-sha": legacy_mode("AES128-SHA", dtls12=True),
    "dtls09-3des": legacy_mode("DES-CBC3-SHA"),
}


@contextlib.contextmanager
def using(impl: str) -> Iterator[None]:
    """Associations made inside get their epoch state from ``impl``."""
    saved = _epoch.DEFAULT[0]
    _epoch.DEFAULT[0] = _epoch.IMPLEMENTATIONS[impl]
    try:
        yield
    finally:
        _epoch.DEFAULT[0] = saved


def pairs(mode: LegacyMode | PskMode, impl: str) -> tuple[DtlsPair, DtlsPair]:
    """Two identical established pairs: the reference (pure Python) and one using ``impl``."""
    with using("python"):
        reference = established_pair(mode)
    with using(impl):
        fast = established_pair(mode)
    return reference, fast


def feed_reference(server: DtlsAssociation, datagrams: list[bytes]) -> list[object]:
    """What the reference path makes of ``datagrams``: payloads and events, in order."""
    out: list[object] = []
    for datagram in datagrams:
        server.receive_datagram(datagram, 1.0)
        out += _drain(server)
    return out


def feed_fast(server: DtlsAssociation, datagrams: list[bytes]) -> list[object]:
    """The same through the fast path, the reference path taking what it leaves (as the
    worker's DtlsChannel.receive_fast and SteeredSocket do)."""
    out: list[object] = []
    index, count = 0, len(datagrams)
    while index < count:
        state = server.fast_path
        if state is not None:
            packets, stop, payload = state.open_batch_untrusted(datagrams, index, 0)
            out += [b"\x00" + p for p in packets]
            if payload is not None:
                out.append(payload)
                index = stop + 1
                continue
            index = stop
            if index >= count:
                break
        server.receive_datagram(datagrams[index], 1.0)
        out += _drain(server)
        index += 1
    return out


def _drain(server: DtlsAssociation) -> list[object]:
    out: list[object] = []
    while (event := server.next_event()) is not None:
        if isinstance(event, DataReceived):
            out += event.payloads
        else:
            out.append(event)
    return out


# Operations of a client, some honest, most hostile (hypothesis draws lists of them).
OPS = st.one_of(
    st.tuples(st.just("data"), st.sampled_from([0, 0, 0, 3, 4, 7, 9]), st.binary(max_size=48)),
    st.tuples(st.just("empty")),
    st.tuples(st.just("seq"), st.integers(0, SEQ_MASK)),
    st.tuples(st.just("back"), st.integers(0, 130)),
    st.tuples(st.just("ahead"), st.integers(0, 130)),
    st.tuples(st.just("replay"), st.integers(0, 1 << 16)),
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(1, 255)),
    st.tuples(st.just("multi"), st.lists(st.binary(max_size=24), min_size=2, max_size=4)),
    st.tuples(st.just("epoch"), st.integers(0, 0xFFFF)),
    st.tuples(st.just("version"), st.sampled_from([0x0100, 0xFEFF, 0xFEFD, 0xFEFC, 0])),
    st.tuples(st.just("length"), st.integers(0, 0xFFFF)),
    st.tuples(st.just("cut"), st.integers(0, 80)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("type"), st.sampled_from([0, 20, 21, 22, 24, 255])),
    st.tuples(st.just("alert"), st.sampled_from([(1, 0), (2, 20), (1, 90)])),
    st.tuples(st.just("garbage"), st.binary(max_size=64)),
    st.tuples(st.just("oversize")),
)


def datagrams_of(pair: DtlsPair, ops: list[tuple[object, ...]]) -> list[bytes]:
    client = pair.client
    sent: list[bytes] = []

    def record(plaintext: bytes, content_type: int = 23) -> bytes:
        return client.raw_record(content_type, 1, plaintext)

    def rewrite(offset: int, value: bytes) -> bytes:
        base = bytearray(record(b"\x00x"))
        base[offset : offset + len(value)] = value
        return bytes(base)

    for op in ops:
        kind = op[0]
        datagram: bytes | None = None
        if kind == "data":
            datagram = record(bytes((op[1],)) + op[2])  # type: ignore[operator]
        elif kind == "empty":
            datagram = record(b"")
        elif kind == "seq":
            client.write_seq[1] = op[1]  # type: ignore[assignment]
        elif kind == "back":
            client.write_seq[1] = max(0, client.write_seq[1] - op[1])  # type: ignore[operator]
        elif kind == "ahead":
            client.write_seq[1] = min(SEQ_MASK, client.write_seq[1] + op[1])  # type: ignore[operator]
        elif kind == "replay" and sent:
            datagram = sent[op[1] % len(sent)]  # type: ignore[operator]
        elif kind == "flip":
            base = bytearray(record(b"\x00" + bytes(range(40))))
            base[op[1] % len(base)] ^= op[2]  # type: ignore[operator,index]
            datagram = bytes(base)
        elif kind == "multi":
            datagram = b"".join(record(b"\x00" + p) for p in op[1])  # type: ignore[attr-defined]
        elif kind == "epoch":
            datagram = rewrite(3, op[1].to_bytes(2, "big"))  # type: ignore[attr-defined]
        elif kind == "version":
            datagram = rewrite(1, op[1].to_bytes(2, "big"))  # type: ignore[attr-defined]
        elif kind == "length":
            datagram = rewrite(11, op[1].to_bytes(2, "big"))  # type: ignore[attr-defined]
        elif kind == "cut":
            datagram = record(b"\x00" + bytes(60))[: op[1]]  # type: ignore[misc]
        elif kind == "extend":
            datagram = record(b"\x00abc") + op[1]  # type: ignore[operator]
        elif kind == "type":
            datagram = rewrite(0, bytes((op[1],)))  # type: ignore[arg-type]
        elif kind == "alert":
            datagram = record(bytes(op[1]), 21)  # type: ignore[arg-type]
        elif kind == "garbage":
            datagram = op[1]  # type: ignore[assignment]
        elif kind == "oversize":
            datagram = record(b"\x00" + bytes(MAX_PLAINTEXT))
        if datagram is not None:
            sent.append(datagram)
    return sent


def probes(pair: DtlsPair, datagrams: list[bytes]) -> list[bytes]:
    """Fresh records around every sequence number used: the windows must answer alike."""
    seqs: set[int] = set()
    for datagram in datagrams:
        with contextlib.suppress(BadRecord):
            seqs |= {r.epoch_seq & SEQ_MASK for r in records_untrusted(datagram)}
    around = sorted({s + d for s in seqs for d in (-65, -64, -63, -1, 0, 1, 64, 200)})
    out = []
    for seq in [s for s in around if 0 <= s <= SEQ_MASK][:60]:
        pair.client.write_seq[1] = seq
        out.append(pair.client.raw_record(23, 1, b"\x00probe"))
    return out


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", list(MODES))
@settings(max_examples=100, deadline=None)
@given(ops=st.lists(OPS, max_size=24))
def test_fast_path_matches_reference(mode: str, impl: str, ops: list[tuple[object, ...]]) -> None:
    reference, fast = pairs(MODES[mode], impl)
    assert reference.server is not None
    assert fast.server is not None
    datagrams = datagrams_of(reference, ops)
    assert feed_fast(fast.server, datagrams) == feed_reference(reference.server, datagrams)
    assert fast.server.state is reference.server.state
    assert fast.server.datagrams_to_send() == reference.server.datagrams_to_send()
    checks = probes(reference, datagrams)
    assert feed_fast(fast.server, checks) == feed_reference(reference.server, checks)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", list(MODES))
def test_fast_path_takes_a_clean_batch_whole(mode: str, impl: str) -> None:
    reference, fast = pairs(MODES[mode], impl)
    assert fast.server is not None
    packets = [bytes([i]) * (i * 20) for i in range(1, 70)]
    datagrams = [reference.client.raw_record(23, 1, b"\x00" + p) for p in packets]
    state = fast.server.fast_path
    assert state is not None
    assert state.open_batch_untrusted(datagrams, 0, 0) == (packets, len(datagrams), None)
    # Every one of them again: all replays, left to the reference path, which drops them.
    assert state.open_batch_untrusted(datagrams, 0, 0) == ([], 0, None)
    assert feed_fast(fast.server, datagrams) == []


@pytest.mark.parametrize("impl", IMPLS)
def test_fast_path_stops_at_other_payloads_after_using_them(impl: str) -> None:
    reference, fast = pairs(MODES["psk-aes256-gcm"], impl)
    assert fast.server is not None
    client = reference.client
    datagrams = [client.raw_record(23, 1, p) for p in (b"\x00a", b"\x03dpd", b"\x00b")]
    state = fast.server.fast_path
    assert state is not None
    assert state.open_batch_untrusted(datagrams, 0, 0) == ([b"a"], 1, b"\x03dpd")
    assert state.open_batch_untrusted(datagrams, 2, 0) == ([b"b"], 3, None)
    assert state.open_batch_untrusted(datagrams, 1, 0) == ([], 1, None)  # Now a replay.


@pytest.mark.parametrize("impl", IMPLS)
def test_no_fast_path_before_or_after_the_association(impl: str) -> None:
    with using(impl):
        pair = established_pair(psk_mode())
    server = pair.server
    assert server is not None
    assert server.fast_path is not None
    pair.client.close()
    for datagram in pair.client.datagrams_to_send():
        server.receive_datagram(datagram, 1.0)
    assert server.state is DtlsState.CLOSED
    assert server.fast_path is None
    assert DtlsAssociation(mode=psk_mode(), now=0.0).fast_path is None


# Fuzzing (STYLE rule 5): arbitrary datagrams never make the fast path raise.


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["psk-aes256-gcm", "oc2-chacha20", "dtls09-aes256-sha"])
@settings(max_examples=150, deadline=None)
@given(
    datagrams=st.lists(
        st.one_of(
            st.binary(max_size=120),
            st.builds(
                lambda head, rest: head + rest,
                st.sampled_from([b"\x17\xfe\xfd\x00\x01", b"\x17\x01\x00\x00\x01", b"\x17"]),
                st.binary(max_size=120),
            ),
        ),
        max_size=8,
    ),
    start=st.integers(-2, 10),
)
def test_fast_path_never_raises(mode: str, impl: str, datagrams: list[bytes], start: int) -> None:
    with using(impl):
        pair = established_pair(MODES[mode])
    assert pair.server is not None
    state = pair.server.fast_path
    assert state is not None
    packets, stop, payload = state.open_batch_untrusted(datagrams, start, 0)
    assert packets == []
    assert payload is None
    assert stop == min(max(start, 0), len(datagrams))


# Sealing.

SUITE_MODES = [m for m in MODES.values() if isinstance(m, LegacyMode)]


def _states(mode: LegacyMode, impl: str, seed: int | None = None) -> tuple[object, ...]:
    """``impl``'s state and the reference's, with the same keys and (given a seed) the same
    randomness; the client's read protection; the keys."""
    keys = derive_key_block(mode.suite, bytes(48), bytes(range(32)), bytes(range(32, 64)))

    def randomness() -> object:
        return os.urandom if seed is None else random.Random(seed).randbytes

    server = _epoch.IMPLEMENTATIONS[impl](mode.suite, keys, randomness())  # type: ignore[arg-type]
    reference = _epoch.PyEpochState(mode.suite, keys, randomness())  # type: ignore[arg-type]
    client_read, _ = protections(mode.suite, keys.swapped(), os.urandom)
    return server, reference, client_read, keys


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", SUITE_MODES, ids=lambda m: m.suite.name)
def test_seal_data_is_what_the_client_reads(mode: LegacyMode, impl: str) -> None:
    server, reference, client_read, _ = _states(mode, impl, seed=5)
    payloads = [b"", b"x", bytes(range(256)) * 5, bytes(MAX_PLAINTEXT - 1)]
    server.write_seq = reference.write_seq = 77  # type: ignore[attr-defined]
    records = server.seal_data(b"\x00", payloads)  # type: ignore[attr-defined]
    assert server.write_seq == 77 + len(payloads)  # type: ignore[attr-defined]
    for seq, (record, payload) in enumerate(zip(records, payloads, strict=True), start=77):
        (parsed,) = records_untrusted(record)
        assert (parsed.content_type, parsed.version, parsed.epoch_seq) == (
            23, int(mode.suite.version), 1 << 48 | seq,
        )  # fmt: skip
        plaintext = client_read.open(parsed.epoch_seq, 23, parsed.version, parsed.fragment)
        assert plaintext == b"\x00" + payload
    if mode.suite.params.fixed_iv_len:  # AEAD: no randomness, byte for byte the reference.
        expected = [reference.seal(23, b"\x00" + p) for p in payloads]  # type: ignore[attr-defined]
        assert records == expected


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", SUITE_MODES, ids=lambda m: m.suite.name)
def test_seal_and_open_match_the_reference(mode: LegacyMode, impl: str) -> None:
    """The reference path's single records: the same bytes (the same randomness), the same
    verdicts on replays and forgeries."""
    server, reference, _, keys = _states(mode, impl, seed=9)
    for _ in range(3):
        assert server.seal(22, b"finished") == reference.seal(22, b"finished")  # type: ignore[attr-defined]
    client = _epoch.PyEpochState(mode.suite, keys.swapped(), os.urandom)
    record = client.seal(23, b"\x00hello")
    (parsed,) = records_untrusted(record)
    assert server.open(parsed.epoch_seq, 23, parsed.fragment) == b"\x00hello"  # type: ignore[attr-defined]
    assert server.open(parsed.epoch_seq, 23, parsed.fragment) is None  # type: ignore[attr-defined]
    forged = parsed.fragment[:-1] + bytes((parsed.fragment[-1] ^ 1,))
    with pytest.raises(BadRecordMac):
        server.open(parsed.epoch_seq + 1, 23, forged)  # type: ignore[attr-defined]
    with pytest.raises(BadRecordMac):
        server.open(parsed.epoch_seq + 2, 23, b"")  # type: ignore[attr-defined]
    # A record over 2^14 (the test's raw protection, which has no limit).
    _, client_write = protections(mode.suite, keys.swapped(), os.urandom)
    big_seq = (1 << 48) | 40
    fragment = client_write.seal(big_seq, 23, int(mode.suite.version), bytes(MAX_PLAINTEXT + 1))
    (big,) = records_untrusted(encode_record(23, int(mode.suite.version), big_seq, fragment))
    for _ in range(2):  # Refused, and not marked as seen: the same verdict again.
        with pytest.raises(BadRecord) as info:
            server.open(big.epoch_seq, 23, big.fragment)  # type: ignore[attr-defined]
        assert info.value.description == 22


def _ivs(state: object, count: int) -> list[bytes]:
    """The explicit IVs of ``count`` CBC records ``state`` seals (its default randomness)."""
    records = state.seal_data(b"\x00", [b"x"] * count)  # type: ignore[attr-defined]
    return [r[13:29] for r in records]  # After the 13-byte header: the 16-byte IV.


@pytest.mark.parametrize("impl", IMPLS)
def test_cbc_ivs_never_repeat_across_refills_and_forks(impl: str) -> None:
    """With ``os.urandom`` the compiled path takes its IVs from a 4 KiB pool that RAND_bytes
    refills (256 IVs each): over several refills every IV differs, the records still open, and a
    forked child never sends the IVs its parent sends next."""
    mode = legacy_mode("AES256-SHA")
    server, _, client_read, _ = _states(mode, impl)  # Default randomness (os.urandom).
    ivs = _ivs(server, 1000)
    assert len(set(ivs)) == len(ivs)
    (record,) = server.seal_data(b"\x00", [b"still opens"])  # type: ignore[attr-defined]
    (parsed,) = records_untrusted(record)
    assert client_read.open(parsed.epoch_seq, 23, parsed.version, parsed.fragment) == (
        b"\x00still opens"
    )
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe only.
        try:
            os.write(write_end, b"".join(_ivs(server, 10)))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = b"".join(_ivs(server, 10))
    assert len(child) == len(parent) == 160
    assert not {child[i : i + 16] for i in range(0, 160, 16)} & {
        parent[i : i + 16] for i in range(0, 160, 16)
    }


@pytest.mark.parametrize("impl", IMPLS)
def test_seal_limits(impl: str) -> None:
    server, *_ = _states(legacy_mode("OC-DTLS1_2-AES256-GCM"), impl)
    assert server.seal_data(b"\x00", []) == []  # type: ignore[attr-defined]
    with pytest.raises(LocalProtocolError):
        server.seal_data(b"\x00", [bytes(MAX_PLAINTEXT)])  # type: ignore[attr-defined]
    assert server.write_seq == 0  # type: ignore[attr-defined]
    server.write_seq = SEQ_MASK  # type: ignore[attr-defined]
    with pytest.raises(LocalProtocolError):
        server.seal_data(b"\x00", [b"a", b"b"])  # type: ignore[attr-defined]
    assert len(server.seal_data(b"\x00", [b"a"])) == 1  # type: ignore[attr-defined]
    with pytest.raises(LocalProtocolError):
        server.seal(23, b"a")  # type: ignore[attr-defined]


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=200, deadline=None)
@given(seqs=st.lists(st.integers(0, 300) | st.integers(0, SEQ_MASK), max_size=40))
def test_replay_window_matches_the_reference(impl: str, seqs: list[int]) -> None:
    """The compiled window (through open) against ReplayWindow, sequence by sequence."""
    mode = legacy_mode("OC-DTLS1_2-AES256-GCM")
    server, _, _, keys = _states(mode, impl)
    client = _epoch.PyEpochState(mode.suite, keys.swapped(), os.urandom)
    window = ReplayWindow()
    for seq in seqs:
        client.write_seq = seq
        (record,) = records_untrusted(client.seal(23, b"\x00"))
        try:
            window.check(seq)
        except BadRecord:
            expected = None
        else:
            window.mark(seq)
            expected = b"\x00"
        assert server.open(record.epoch_seq, 23, record.fragment) == expected  # type: ignore[attr-defined]
