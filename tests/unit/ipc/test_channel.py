"""The typed channel between processes: requests, replies, descriptors, and hostile peers."""

from __future__ import annotations

import asyncio
import os
import socket

import msgspec
import pytest

from ocgate import ipc
from ocgate.ipc import messages as m


async def _pair() -> tuple[ipc.Channel, ipc.Channel, list[object]]:
    a_sock, b_sock = ipc.socket_pair()
    seen: list[object] = []

    async def serve(msg: object, fds: list[int]) -> m.Message | tuple[m.Message, list[int]] | None:
        seen.append(msg)
        for fd in fds:
            os.close(fd)
        if isinstance(msg, m.OpenTun):
            r, w = os.pipe()
            os.write(w, b"tun")
            os.close(w)
            return m.TunOpened(name="vpns0"), [r]
        if isinstance(msg, m.RunScript):
            return m.ScriptDone(status=len(msg.env))
        return None

    async def nothing(msg: object, fds: list[int]) -> None:
        return None

    a = ipc.Channel(a_sock, accepts=m.WORKER_ACCEPTS, handler=nothing, name="worker")
    b = ipc.Channel(b_sock, accepts=m.SUPERVISOR_FROM_WORKER, handler=serve, name="supervisor")
    return a, b, seen


def test_request_and_reply() -> None:
    asyncio.run(_test_request_and_reply())


async def _test_request_and_reply() -> None:
    a, b, _seen = await _pair()
    reply = await a.call(m.RunScript(kind="connect", env={"USERNAME": "alice", "ID": "1"}))
    assert isinstance(reply, m.ScriptDone)
    assert reply.status == 2
    a.close()
    b.close()


def test_a_descriptor_travels_with_the_reply() -> None:
    asyncio.run(_test_a_descriptor_travels_with_the_reply())


async def _test_a_descriptor_travels_with_the_reply() -> None:
    a, b, _seen = await _pair()
    reply, fds = await a.call_fds(m.OpenTun(mtu=1400, peer4="10.0.0.2"))
    assert reply == m.TunOpened(name="vpns0", rid=reply.rid)
    assert len(fds) == 1
    assert os.read(fds[0], 10) == b"tun"
    os.close(fds[0])
    a.close()
    b.close()


def test_an_ill_typed_message_is_dropped_and_the_channel_lives() -> None:
    asyncio.run(_test_an_ill_typed_message_is_dropped_and_the_channel_lives())


async def _test_an_ill_typed_message_is_dropped_and_the_channel_lives() -> None:
    a_sock, b_sock = ipc.socket_pair()
    seen: list[object] = []

    async def serve(msg: object, fds: list[int]) -> m.Message | None:
        seen.append(msg)
        return m.ScriptDone(status=0)

    b = ipc.Channel(b_sock, accepts=m.SUPERVISOR_FROM_WORKER, handler=serve, name="supervisor")
    raw = msgspec.msgpack.encode
    # A script environment with a lower-case key, an MTU below 576, and plain garbage.
    a_sock.send(raw({"type": "RunScript", "rid": 1, "kind": "connect", "env": {"bad": "x"}}))
    a_sock.send(raw({"type": "OpenTun", "rid": 2, "mtu": 10}))
    a_sock.send(b"\xc1garbage")
    a_sock.send(raw({"type": "RunScript", "rid": 3, "kind": "connect", "env": {}}))
    a_sock.setblocking(False)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if seen:
            break
    assert len(seen) == 1
    assert b.dropped == 3
    a_sock.close()
    b.close()


def test_the_peer_going_away_fails_pending_calls() -> None:
    asyncio.run(_test_the_peer_going_away_fails_pending_calls())


async def _test_the_peer_going_away_fails_pending_calls() -> None:
    a_sock, b_sock = ipc.socket_pair()
    closed: list[bool] = []

    async def nothing(msg: object, fds: list[int]) -> None:
        return None

    a = ipc.Channel(
        a_sock,
        accepts=m.WORKER_ACCEPTS,
        handler=nothing,
        on_closed=lambda: closed.append(True),
        name="worker",
    )
    call = asyncio.ensure_future(a.call(m.Scrape()))
    await asyncio.sleep(0.01)
    b_sock.close()
    with pytest.raises(ipc.ChannelClosed):
        await call
    assert closed == [True]


def test_socket_pair_is_seqpacket() -> None:
    a, b = ipc.socket_pair()
    assert a.type == socket.SOCK_SEQPACKET
    a.close()
    b.close()


def test_real_address_is_size_bounded_and_admitted_round_trips() -> None:
    """listen-proxy-proto: a worker names a proxied connection's client to the supervisor."""
    decoder = msgspec.msgpack.Decoder(m.SUPERVISOR_FROM_WORKER)
    encoder = msgspec.msgpack.Encoder()
    message = m.RealAddress(token=7, address="198.18.0.2", rid=3)
    assert decoder.decode(encoder.encode(message)) == message
    with pytest.raises(msgspec.ValidationError):
        decoder.decode(encoder.encode(m.RealAddress(token=7, address="1" * 65)))
    with pytest.raises(msgspec.ValidationError):
        decoder.decode(encoder.encode(m.RealAddress(token=-1, address="198.18.0.2")))
    replies = msgspec.msgpack.Decoder(m.WORKER_ACCEPTS)
    assert replies.decode(encoder.encode(m.Admitted(delay=0.5, rid=3))) == m.Admitted(
        delay=0.5, rid=3
    )
    with pytest.raises(msgspec.ValidationError):
        replies.decode(encoder.encode(m.Admitted(delay=-1.0)))
    connection = m.NewConnection(token=9, proxied=True)
    assert replies.decode(encoder.encode(connection)) == connection


def test_a_late_reply_is_let_go_and_a_stray_one_dropped() -> None:
    asyncio.run(_test_a_late_reply_is_let_go_and_a_stray_one_dropped())


async def _test_a_late_reply_is_let_go_and_a_stray_one_dropped() -> None:
    a_sock, b_sock = ipc.socket_pair()
    opened: list[int] = []

    async def slow(msg: object, fds: list[int]) -> tuple[m.Message, list[int]]:
        await asyncio.sleep(0.2)  # Longer than the caller waits.
        r, w = os.pipe()
        os.close(w)
        opened.append(r)
        return m.TunOpened(name="vpns0"), [r]

    async def nothing(msg: object, fds: list[int]) -> None:
        return None

    a = ipc.Channel(a_sock, accepts=m.WORKER_ACCEPTS, handler=nothing, name="worker")
    b = ipc.Channel(b_sock, accepts=m.SUPERVISOR_FROM_WORKER, handler=slow, name="supervisor")
    fds_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(TimeoutError):
        await a.call_fds(m.OpenTun(mtu=1400, peer4="10.0.0.2"), timeout=0.05)
    await asyncio.sleep(0.4)
    assert opened  # The answer came, with its descriptor ...
    assert a.dropped == 0  # ... to a caller that had stopped waiting: not a dropped message,
    assert len(os.listdir("/proc/self/fd")) == fds_before  # and its descriptor was closed.
    b.send(m.ScriptDone(status=0, rid=4242))  # A reply to nothing ever asked.
    await asyncio.sleep(0.1)
    assert a.dropped == 1
    reply = await a.call(m.RunScript(kind="connect", env={}), timeout=1.0)  # The channel lives.
    assert isinstance(reply, m.TunOpened)
    a.close()
    b.close()
