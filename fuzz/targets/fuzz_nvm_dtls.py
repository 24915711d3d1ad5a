"""The NVM collector's DTLS port: ``DtlsDemux.receive_datagram`` (``_new_peer_untrusted`` for
unknown sources, OpenSSL's ``DTLSv1_listen`` and handshake, then records) never raises.

Input: operations. Tag % 4: 0 = a datagram from source ``tag >> 2 & 3``; 1 = a real OpenSSL
DTLS 1.2 client at that source completes a handshake (cookie exchange included); 2 = that
client sends the payload as one record (an IPFIX message); 3 = the clock moves on by the payload
(ms) and the timers run.

Oracle: nothing raises; no more peers are held than allowed; a message is delivered only if an
established client sent it, under that client's address, in the order sent.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import _harness
import atheris
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.nvm._listeners import DtlsDemux, make_dtls_context
    from ocgate.nvm.ipfix import ExporterKey

ADDRESSES = [("192.0.2.7", 40000), ("192.0.2.7", 40001), ("198.51.100.1", 2055), ("::1", 4739)]
KEY = ec.derive_private_key(0x5E4E4, ec.SECP256R1())
_secrets_of_this_input: list[Callable[[], tuple[bytes, ...]]] = [lambda: (bytes(32),)]


def _context() -> SSL.Context:
    """One server context; its cookie callbacks read the secrets of the demux of this input."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "collector")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC))
        .sign(KEY, hashes.SHA256())
    )
    directory = Path(tempfile.mkdtemp(prefix="ocgate-fuzz-"))
    try:
        (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / "key.pem").write_bytes(
            KEY.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return make_dtls_context(
            str(directory / "cert.pem"),
            str(directory / "key.pem"),
            None,
            lambda: _secrets_of_this_input[0](),
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


CONTEXT = _context()
CLIENT_CONTEXT = SSL.Context(SSL.DTLS_CLIENT_METHOD)


def _factory(secrets: Callable[[], tuple[bytes, ...]]) -> SSL.Context:
    """Building a context per input is slow: one is shared, reading this input's demux secrets."""
    _secrets_of_this_input[0] = secrets
    return CONTEXT


class _Rig:
    def __init__(self) -> None:
        self.now = 1000.0
        self.delivered: list[tuple[bytes, ExporterKey]] = []
        counter = iter(range(1 << 30))
        self.demux = DtlsDemux(
            _factory,
            lambda data, key, now: self.delivered.append((data, key)),
            lambda address: True,
            max_peers=3,
            random_bytes=lambda n: next(counter).to_bytes(4, "big") * (n // 4),
        )
        self.clients: dict[int, SSL.Connection] = {}
        self.sent: dict[str, list[bytes]] = {}
        """What established clients sent, by source address in time order (exporters are keyed
        by address: the port of a DTLS exporter carries no identity)."""

    def receive(self, data: bytes, source: int) -> None:
        self.demux.receive_datagram(data, ADDRESSES[source], self.now)
        self.route()

    def route(self) -> None:
        for data, addr in self.demux.datagrams_to_send():
            client = self.clients.get(ADDRESSES.index(addr))
            if client is not None:
                client.bio_write(data)

    def connect(self, source: int) -> None:
        client = SSL.Connection(CLIENT_CONTEXT, None)
        client.set_connect_state()
        self.clients[source] = client
        for _ in range(12):
            with contextlib.suppress(SSL.WantReadError, SSL.Error):
                client.do_handshake()
            moved = False
            while True:
                try:
                    data = client.bio_read(65535)
                except SSL.Error:
                    break
                moved = True
                self.receive(data, source)
            if not moved:
                break

    def send(self, source: int, message: bytes) -> None:
        client = self.clients.get(source)
        if client is None or not message:
            return
        try:
            client.send(message[:16384])
            data = client.bio_read(65535)
        except SSL.Error:
            return
        self.sent.setdefault(ADDRESSES[source][0], []).append(message[:16384])
        self.receive(data, source)


def _subsequence(part: list[bytes], whole: list[bytes]) -> bool:
    remaining = iter(whole)
    return all(any(item == candidate for candidate in remaining) for item in part)


def test_one_input(data: bytes) -> None:
    rig = _Rig()
    for tag, payload in _harness.ops(data):
        kind, source = tag % 4, tag >> 2 & 3
        if kind == 0:
            rig.receive(payload, source)
        elif kind == 1:
            rig.connect(source)
        elif kind == 2:
            rig.send(source, payload)
        else:
            rig.now += _harness.number(payload[:4]) / 1000.0
            rig.demux.handle_timer(rig.now)
            rig.route()
        assert rig.demux.peers <= 3
    by_address: dict[str, list[bytes]] = {}
    for message, key in rig.delivered:
        assert key.transport == "dtls"
        by_address.setdefault(key.address, []).append(message)
    for address, messages in by_address.items():
        assert _subsequence(messages, rig.sent.get(address, [])), f"{address}: not what was sent"


def seeds() -> list[bytes]:
    """A real OpenSSL 3 DTLS 1.2 client's ClientHello, handshakes, and NVM exporter messages
    (tests/vectors/ipfix) sent over them."""
    directory = _harness.VECTORS / "ipfix"
    templates = _harness.hex_vector(directory / "ona_nvzflow_templates.hex")
    d267 = _harness.hex_vector(directory / "ona_nvzflow_data_267.hex")
    client = SSL.Connection(SSL.Context(SSL.DTLS_CLIENT_METHOD), None)
    client.set_connect_state()
    with contextlib.suppress(SSL.WantReadError):
        client.do_handshake()
    hello = client.bio_read(65535)
    op = _harness.op
    return [
        op(0, hello) + op(4, hello),
        op(1) + op(2, templates) + op(2, d267),
        op(1) + op(5) + op(6, templates) + op(0, hello[:40]) + op(2, d267),
        op(1) + op(3, (86_400_001).to_bytes(4, "big")) + op(2, d267),
        op(1) + op(5) + op(9) + op(13) + op(2, templates),
    ]


if __name__ == "__main__":
    _harness.main(test_one_input)
