"""DTLS 1.2 collector side: cookies before state, mutual authentication, IPFIX delivery.

Most tests connect a pyOpenSSL DTLS client to :class:`DtlsDemux` in memory (no sockets); one goes
through the real UDP listener on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from nvm_collector_lib import DATA_267, TEMPLATES, opened_store, wait_for
from OpenSSL import SSL

from ocgate.errors import ConfigError
from ocgate.nvm._collector import Collector
from ocgate.nvm._config import ListenAddress
from ocgate.nvm._listeners import DtlsDemux, Listeners, make_dtls_context
from ocgate.nvm.ipfix import ExporterKey
from ocgate.nvm.store import FlowFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pki import Pki, make_pki

PEER = ("192.0.2.7", 40000)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_context(pki: Pki, *, cert: bool, verify_server: bool = True) -> SSL.Context:
    ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    if verify_server:
        ctx.load_verify_locations(str(pki.ca.cert_path))
        ctx.set_verify(SSL.VERIFY_PEER)
    if cert:
        ctx.use_certificate_chain_file(str(pki.alice.cert_path))
        ctx.use_privatekey_file(str(pki.alice.key_path))
    return ctx


class Delivered:
    def __init__(self) -> None:
        self.messages: list[tuple[bytes, ExporterKey]] = []

    def __call__(self, data: bytes, key: ExporterKey, now: float) -> None:
        self.messages.append((data, key))


def make_demux(
    pki: Pki, *, mutual: bool, admit: Callable[[str], bool] = lambda a: True, **options: float
) -> tuple[DtlsDemux, Delivered]:
    delivered = Delivered()
    ca = str(pki.ca.cert_path) if mutual else None
    demux = DtlsDemux(
        lambda secret: make_dtls_context(
            str(pki.server.cert_path), str(pki.server.key_path), ca, secret
        ),
        delivered,
        admit,
        **options,  # type: ignore[arg-type]
    )
    return demux, delivered


def pump(
    client: SSL.Connection, demux: DtlsDemux, now: float = 0.0, peer: tuple[str, int] = PEER
) -> int:
    """Move datagrams both ways until both sides are quiet; returns the client's count."""
    sent = 0
    for _ in range(50):
        moved = False
        while True:
            try:
                data = client.bio_read(65535)
            except SSL.WantReadError:
                break
            demux.receive_datagram(data, peer, now)
            sent += 1
            moved = True
        for data, addr in demux.datagrams_to_send():
            assert addr == peer
            client.bio_write(data)
            moved = True
        try:
            client.do_handshake()
        except SSL.WantReadError:
            pass
        except SSL.Error:
            break  # The server refused us (an alert).
        if not moved:
            break
    return sent


def connect(pki: Pki, demux: DtlsDemux, *, cert: bool) -> SSL.Connection:
    client = SSL.Connection(client_context(pki, cert=cert), None)
    client.set_connect_state()
    with contextlib.suppress(SSL.WantReadError):
        client.do_handshake()
    pump(client, demux)
    return client


def send(client: SSL.Connection, demux: DtlsDemux, message: bytes) -> None:
    client.send(message)
    pump(client, demux)


def test_handshake_with_cookie_then_ipfix_is_delivered(pki: Pki) -> None:
    demux, delivered = make_demux(pki, mutual=False)
    client = connect(pki, demux, cert=False)
    assert demux.stats.cookies_sent == 1  # HelloVerifyRequest first (RFC 6347 §4.2.1).
    assert demux.stats.handshakes == 1
    assert demux.peers == 1
    send(client, demux, TEMPLATES)
    send(client, demux, DATA_267)
    assert [m for m, _ in delivered.messages] == [TEMPLATES, DATA_267]
    # Keyed by address alone: a re-handshake from another port keeps the templates.
    assert delivered.messages[0][1] == ExporterKey("dtls", PEER[0], 0)
    assert client.get_protocol_version_name() == "DTLSv1.2"


def test_peers_per_address_are_bounded_and_share_one_exporter_key(pki: Pki) -> None:
    demux, delivered = make_demux(pki, mutual=False, max_peers_per_address=2)
    clients = []
    for port in (40000, 40001, 40002):  # One host, three source ports.
        client = SSL.Connection(client_context(pki, cert=False), None)
        client.set_connect_state()
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        pump(client, demux, peer=(PEER[0], port))
        client.send(TEMPLATES)
        pump(client, demux, peer=(PEER[0], port))
        clients.append(client)
    assert demux.stats.handshakes == 3
    assert (demux.peers, demux.stats.evicted) == (2, 1)  # The host's oldest made room.
    assert {key for _, key in delivered.messages} == {ExporterKey("dtls", PEER[0], 0)}
    other = connect_from(pki, demux, ("192.0.2.8", 1))
    assert (demux.peers, demux.stats.evicted) == (3, 1)
    other.shutdown()


def connect_from(pki: Pki, demux: DtlsDemux, peer: tuple[str, int]) -> SSL.Connection:
    client = SSL.Connection(client_context(pki, cert=False), None)
    client.set_connect_state()
    with contextlib.suppress(SSL.WantReadError):
        client.do_handshake()
    pump(client, demux, peer=peer)
    return client


def test_no_state_is_kept_before_the_cookie_is_verified(pki: Pki) -> None:
    demux, _ = make_demux(pki, mutual=False)
    client = SSL.Connection(client_context(pki, cert=False), None)
    client.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        client.do_handshake()
    hello = client.bio_read(65535)
    for port in range(100):  # A spoofed flood of ClientHellos from many sources.
        demux.receive_datagram(hello, ("198.51.100.1", 1000 + port), 0.0)
    assert demux.peers == 0
    answers = demux.datagrams_to_send()
    assert len(answers) == 100
    # Each answer is a small HelloVerifyRequest, never the certificate chain (no amplification).
    assert all(len(data) < len(hello) for data, _ in answers)
    # Replaying the hello with another peer's cookie does not create state either.
    demux.receive_datagram(b"\x17\xfe\xfd" + bytes(20), PEER, 0.0)  # Not a handshake record.
    assert demux.stats.not_handshake == 1
    assert demux.peers == 0


def test_mutual_dtls_accepts_a_client_certificate_from_the_ca(pki: Pki) -> None:
    demux, delivered = make_demux(pki, mutual=True)
    client = connect(pki, demux, cert=True)
    assert demux.stats.handshakes == 1
    identity = demux.identity(PEER)
    assert identity is not None
    assert "CN=alice" in identity
    send(client, demux, TEMPLATES)
    assert len(delivered.messages) == 1


def test_mutual_dtls_refuses_a_client_without_certificate(pki: Pki) -> None:
    demux, delivered = make_demux(pki, mutual=True)
    client = connect(pki, demux, cert=False)
    assert demux.stats.handshakes == 0
    assert demux.stats.handshake_failures == 1
    assert demux.peers == 0
    with pytest.raises(SSL.Error):
        client.send(TEMPLATES)
    assert delivered.messages == []


def test_mutual_dtls_refuses_a_certificate_of_another_ca(pki: Pki) -> None:
    demux, delivered = make_demux(pki, mutual=True)
    ctx = client_context(pki, cert=False)
    ctx.use_certificate_chain_file(str(pki.stranger.cert_path))
    ctx.use_privatekey_file(str(pki.stranger.key_path))
    client = SSL.Connection(ctx, None)
    client.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        client.do_handshake()
    pump(client, demux)
    assert demux.stats.handshake_failures == 1
    assert demux.peers == 0
    assert delivered.messages == []


def test_allow_list_and_rate_limit_apply_before_any_state(pki: Pki) -> None:
    demux, _ = make_demux(pki, mutual=False, admit=lambda a: a != PEER[0])
    client = SSL.Connection(client_context(pki, cert=False), None)
    client.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        client.do_handshake()
    hello = client.bio_read(65535)
    demux.receive_datagram(hello, PEER, 0.0)
    assert demux.datagrams_to_send() == []
    limited, _ = make_demux(pki, mutual=False, handshakes_per_second=2)
    for port in range(5):
        limited.receive_datagram(hello, ("198.51.100.1", port), 0.0)
    assert limited.stats.rate_limited == 3
    limited.receive_datagram(hello, ("198.51.100.1", 9), 1.0)  # Tokens refill with time.
    assert limited.stats.cookies_sent == 3


def test_cookie_secret_rotates_and_previous_one_is_accepted(pki: Pki) -> None:
    demux, _ = make_demux(pki, mutual=False, cookie_lifetime=10)
    client = SSL.Connection(client_context(pki, cert=False), None)
    client.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        client.do_handshake()
    demux.receive_datagram(client.bio_read(65535), PEER, 0.0)
    for data, _ in demux.datagrams_to_send():
        client.bio_write(data)
    with pytest.raises(SSL.WantReadError):
        client.do_handshake()  # The ClientHello again, with the cookie.
    demux.receive_datagram(b"\x16\xfe\xff" + bytes(20), ("198.51.100.9", 1), 11.0)  # Rotates.
    pump(client, demux, 11.0)
    assert demux.stats.handshakes == 1


def test_idle_and_stuck_peers_expire(pki: Pki) -> None:
    demux, _ = make_demux(pki, mutual=False, idle_timeout=100, handshake_timeout=5)
    connect(pki, demux, cert=False)
    assert demux.peers == 1
    timer = demux.get_timer()
    assert timer is not None
    demux.handle_timer(50.0)
    assert demux.peers == 1
    demux.handle_timer(101.0)
    assert demux.peers == 0


def test_bad_certificate_files_are_a_config_error(tmp_path: Path, pki: Pki) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match="DTLS certificate"):
        make_dtls_context(missing, str(pki.server.key_path), None, lambda: (b"x" * 32,))


def test_dtls_listener_on_loopback_stores_flows(tmp_path: Path, pki: Pki) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store, linger=0.01)
            await collector.start()
            listeners = Listeners(collector)
            try:
                bound = await listeners.add_dtls(
                    ListenAddress("dtls", "127.0.0.1", 0),
                    str(pki.server.cert_path),
                    str(pki.server.key_path),
                    str(pki.ca.cert_path),
                )
                await asyncio.to_thread(dtls_client, pki, bound.port, [TEMPLATES, DATA_267])
                await wait_for(lambda: collector.stats().messages >= 2)
                await collector.flush()
            finally:
                await listeners.close()
                await collector.stop()
            page = await store.query_flows(FlowFilter())
            assert [f.process_name for f in page.items] == ["svchost.exe"]
            assert page.items[0].exporter == "dtls://127.0.0.1"

    asyncio.run(scenario())


def dtls_client(pki: Pki, port: int, messages: list[bytes]) -> None:
    """A blocking pyOpenSSL DTLS client over a real UDP socket (memory BIOs)."""
    client = SSL.Connection(client_context(pki, cert=True), None)
    client.set_connect_state()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(2.0)
        while True:
            try:
                client.do_handshake()
                break
            except SSL.WantReadError:
                pass
            while True:
                try:
                    sock.send(client.bio_read(65535))
                except SSL.WantReadError:
                    break
            client.bio_write(sock.recv(65535))
        for message in messages:
            client.send(message)
            sock.send(client.bio_read(65535))
