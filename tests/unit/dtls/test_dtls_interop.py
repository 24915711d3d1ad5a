"""Independent DTLS clients against the engine over real UDP on 127.0.0.1 (no root needed).

* ``gnutls-cli`` and ``openssl s_client`` run the PSK-NEGOTIATE handshake (plain PSK, DTLS 1.2).
* gnutls_dtls_client.c (compiled here) drives GnuTLS as openconnect 9.01 does: the legacy
  resumed session for every DTLS 0.9 / 1.2 suite we offer, and PSK.

Each test skips when its tool (or gcc with the GnuTLS headers) is missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ocgate.dtls import (
    DTLS12_CIPHERSUITES,
    DTLS_CIPHERSUITES,
    CookieJar,
    DataReceived,
    DtlsAssociation,
    HandshakeCompleted,
    HandshakeFailed,
    LegacyMode,
    PskMode,
    peek_client_hello_untrusted,
)
from ocgate.dtls.events import DtlsEvent

PSK = bytes(range(200, 232))
MASTER = bytes(range(48))
SESSION_ID = bytes(range(100, 132))


class EchoServer(threading.Thread):
    """A tiny UDP loop around one association, acting as the gateway would; echoes data."""

    def __init__(self, mode: LegacyMode | PskMode) -> None:
        super().__init__(daemon=True)
        self.mode = mode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.jar = CookieJar()
        self.rekey_interval = 0.0
        self.association: DtlsAssociation | None = None
        self.events: list[DtlsEvent] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                if self.association is not None:
                    self.association.handle_timer(time.monotonic())
                continue
            self.handle(data, addr)

    def handle(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.monotonic()
        if self.association is None:
            info = peek_client_hello_untrusted(data)
            if info is None:
                return
            if isinstance(self.mode, PskMode) and not info.cookie:
                self.sock.sendto(self.jar.hello_verify_request(info, addr, now), addr)
                return
            if isinstance(self.mode, PskMode):
                self.jar.check(info, addr, now)
            self.association = DtlsAssociation(
                mode=self.mode, now=now, rekey_interval=self.rekey_interval
            )
        self.association.receive_datagram(data, now)
        while (event := self.association.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, DataReceived):
                self.association.send_data(event.payloads)
        for datagram in self.association.datagrams_to_send():
            self.sock.sendto(datagram, addr)

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(timeout=2)
        self.sock.close()


def talk(argv: list[str], line: bytes, server: EchoServer) -> bytes:
    """Run an interactive client: send ``line``, wait until the server got it, then end stdin."""
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        try:
            assert proc.stdin is not None
            proc.stdin.write(line)
            proc.stdin.flush()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                if any(isinstance(e, DataReceived) for e in server.events):
                    break
                time.sleep(0.02)
            time.sleep(0.2)  # Let the echo arrive before the client is told to stop.
            return proc.communicate(timeout=10)[0]
        finally:
            if proc.poll() is None:  # pragma: no cover - only on a hung client.
                proc.kill()


def completed(server: EchoServer) -> list[str]:
    return [e.cipher_description for e in server.events if isinstance(e, HandshakeCompleted)]


@pytest.mark.skipif(shutil.which("gnutls-cli") is None, reason="gnutls-cli not installed")
def test_gnutls_cli_psk() -> None:
    with EchoServer(PskMode(app_id=b"id", psk=PSK)) as server:
        output = talk(
            ["gnutls-cli", "--udp", "--port", str(server.port), "127.0.0.1",
             "--pskusername", "psk", "--pskkey", PSK.hex(), "--insecure",
             "--priority", "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK"],
            b"hello-from-gnutls\n", server,
        )  # fmt: skip
    assert b"(DTLS1.2-X.509)-(PSK)-(AES-256-GCM)" in output
    assert b"hello-from-gnutls" in output  # Typed text is not printed: this is the echo.
    assert completed(server) == ["(DTLS1.2)-(PSK)-(AES-256-GCM)"]
    assert DataReceived([b"hello-from-gnutls\n"]) in server.events


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize(
    ("cipher", "description"),
    [
        ("PSK-AES256-GCM-SHA384", "(DTLS1.2)-(PSK)-(AES-256-GCM)"),
        ("PSK-CHACHA20-POLY1305", "(DTLS1.2)-(PSK)-(CHACHA20-POLY1305)"),
        ("PSK-AES128-GCM-SHA256", "(DTLS1.2)-(PSK)-(AES-128-GCM)"),
    ],
)
def test_openssl_s_client_psk(cipher: str, description: str) -> None:
    with EchoServer(PskMode(app_id=b"id", psk=PSK)) as server:
        output = talk(
            ["openssl", "s_client", "-dtls1_2", "-brief", "-psk", PSK.hex(), "-psk_identity",
             "psk", "-cipher", cipher, "-connect", f"127.0.0.1:{server.port}"],
            b"hello-from-openssl\n", server,
        )  # fmt: skip
    assert b"hello-from-openssl" in output  # Typed text is not printed: this is the echo.
    assert completed(server) == [description]


@pytest.fixture(scope="module")
def gnutls_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None or not Path("/usr/include/gnutls/gnutls.h").exists():
        pytest.skip("gcc and the GnuTLS headers (libgnutls28-dev) are needed")
    binary = tmp_path_factory.mktemp("gnutls") / "gnutls_dtls_client"
    source = Path(__file__).with_name("gnutls_dtls_client.c")
    subprocess.run([gcc, "-O1", "-o", str(binary), str(source), "-lgnutls"], check=True)
    return binary


LEGACY_CASES = [
    ("dtls", "AES256-SHA", "DTLS0.9", "RSA", "AES-256-CBC", "SHA1"),
    ("dtls", "AES128-SHA", "DTLS0.9", "RSA", "AES-128-CBC", "SHA1"),
    ("dtls", "DES-CBC3-SHA", "DTLS0.9", "RSA", "3DES-CBC", "SHA1"),
    ("dtls", "OC-DTLS1_2-AES256-GCM", "DTLS1.2", "RSA", "AES-256-GCM", "AEAD"),
    ("dtls", "OC-DTLS1_2-AES128-GCM", "DTLS1.2", "RSA", "AES-128-GCM", "AEAD"),
    ("dtls", "OC2-DTLS1_2-CHACHA20-POLY1305", "DTLS1.2", "PSK", "CHACHA20-POLY1305", "AEAD"),
    ("dtls12", "AES256-GCM-SHA384", "DTLS1.2", "RSA", "AES-256-GCM", "AEAD"),
    ("dtls12", "ECDHE-RSA-AES256-GCM-SHA384", "DTLS1.2", "ECDHE-RSA", "AES-256-GCM", "AEAD"),
    ("dtls12", "ECDHE-RSA-AES128-GCM-SHA256", "DTLS1.2", "ECDHE-RSA", "AES-128-GCM", "AEAD"),
    ("dtls12", "AES256-SHA", "DTLS1.2", "RSA", "AES-256-CBC", "SHA1"),
]


@pytest.mark.parametrize("case", LEGACY_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_gnutls_legacy_resumption(gnutls_client: Path, case: tuple[str, ...]) -> None:
    table, name, version, kx, cipher, mac = case
    suite = (DTLS12_CIPHERSUITES if table == "dtls12" else DTLS_CIPHERSUITES)[name][0]
    with EchoServer(LegacyMode(SESSION_ID, MASTER, suite)) as server:
        result = subprocess.run(
            [str(gnutls_client), str(server.port), "legacy", version, kx, cipher, mac,
             MASTER.hex(), SESSION_ID.hex(), "legacy-data"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"DESCRIPTION {suite.description}", "ECHO legacy-data"]
    assert completed(server) == [suite.description]


def test_gnutls_psk_with_app_id(gnutls_client: Path) -> None:
    app_id = bytes(range(1, 33))
    with EchoServer(PskMode(app_id=app_id, psk=PSK)) as server:
        result = subprocess.run(
            [str(gnutls_client), str(server.port), "psk", PSK.hex(), app_id.hex(), "psk-data"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "DESCRIPTION (DTLS1.2)-(PSK)-(AES-256-GCM)",
        "ECHO psk-data",
    ]


REKEY_CASES = [
    ("psk", "(DTLS1.2)-(PSK)-(AES-256-GCM)"),
    ("dtls-AES256-SHA", DTLS_CIPHERSUITES["AES256-SHA"][0].description),
    ("dtls-OC-DTLS1_2-AES128-GCM", DTLS_CIPHERSUITES["OC-DTLS1_2-AES128-GCM"][0].description),
]


def _rekey_argv(
    gnutls_client: Path, case: str, port: int
) -> tuple[LegacyMode | PskMode, list[str]]:
    if case == "psk":
        app_id = bytes(range(1, 33))
        argv = [str(gnutls_client), str(port), "psk", PSK.hex(), app_id.hex(), "rekey-data"]
        return PskMode(app_id=app_id, psk=PSK), argv
    table, name = case.split("-", 1)
    legacy = next(c for c in LEGACY_CASES if c[:2] == (table, name))
    suite = DTLS_CIPHERSUITES[name][0]
    argv = [str(gnutls_client), str(port), "legacy", *legacy[2:], MASTER.hex(), SESSION_ID.hex(),
            "rekey-data"]  # fmt: skip
    return LegacyMode(SESSION_ID, MASTER, suite), argv


@pytest.mark.parametrize(("case", "description"), REKEY_CASES, ids=[c[0] for c in REKEY_CASES])
def test_gnutls_rehandshake_moves_to_the_next_epoch(
    gnutls_client: Path, case: str, description: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """openconnect's DTLS rekey (``X-DTLS-Rekey-Method: ssl``): GnuTLS renegotiates inside the
    established session, twice here; each completes, and data flows in epochs 2 and 3."""
    monkeypatch.setenv("OCG_REHANDSHAKE", "2")
    mode, _ = _rekey_argv(gnutls_client, case, 0)
    with EchoServer(mode) as server:
        _, argv = _rekey_argv(gnutls_client, case, server.port)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"DESCRIPTION {description}", "ECHO rekey-data",
        "REHANDSHAKE 1", "ECHO rekey-data",
        "REHANDSHAKE 2", "ECHO rekey-data",
    ]  # fmt: skip
    assert completed(server) == [description] * 3
    assert server.association is not None
    assert server.association.rekeys == 2


def test_gnutls_rehandshake_too_soon_ends_the_association(
    gnutls_client: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second rekey within ``rekey_interval`` of the first fails the association (ocserv:
    "client requested DTLS rehandshake too soon"); the first one is always allowed."""
    monkeypatch.setenv("OCG_REHANDSHAKE", "2")
    mode, _ = _rekey_argv(gnutls_client, "psk", 0)
    with EchoServer(mode) as server:
        server.rekey_interval = 60.0
        _, argv = _rekey_argv(gnutls_client, "psk", server.port)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "REHANDSHAKE 1" in result.stdout
    assert "REHANDSHAKE 2" not in result.stdout
    failures = [e.reason for e in server.events if isinstance(e, HandshakeFailed)]
    assert failures == ["client requested DTLS rehandshake too soon"], server.events
