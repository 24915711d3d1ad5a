"""Regenerate gnutls_transcripts.json: real GnuTLS client datagrams against the ocgate engine.

Run from the repository root: ``.venv/bin/python tests/vectors/dtls/make_gnutls_transcripts.py``
(needs gcc and libgnutls28-dev). For each case it compiles tests/unit/dtls/gnutls_dtls_client.c,
runs it against a DtlsAssociation whose randomness is ``random.Random(3).randbytes`` and records
every datagram the client sent. Feeding those datagrams to an association with the same
randomness replays the session exactly (tests/unit/dtls/test_dtls_vectors.py), so the client's
Finished and records, computed by GnuTLS, check our key schedule and record layer offline.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ocgate.dtls import (
    DTLS12_CIPHERSUITES,
    DTLS_CIPHERSUITES,
    CookieJar,
    DtlsAssociation,
    LegacyMode,
    PskMode,
    peek_client_hello_untrusted,
)

HERE = Path(__file__).parent
SOURCE = HERE.parents[1] / "unit" / "dtls" / "gnutls_dtls_client.c"
MASTER = bytes(range(48))
SESSION_ID = bytes(range(100, 132))
PSK = bytes(range(200, 232))
APP_ID = bytes(range(1, 33))
MESSAGE = "ocgate-vector"

# (case name, header table, suite name, GnuTLS version, kx, cipher, mac)
LEGACY = [
    ("dtls09-aes256", "dtls", "AES256-SHA", "DTLS0.9", "RSA", "AES-256-CBC", "SHA1"),
    ("dtls09-aes128", "dtls", "AES128-SHA", "DTLS0.9", "RSA", "AES-128-CBC", "SHA1"),
    ("dtls09-3des", "dtls", "DES-CBC3-SHA", "DTLS0.9", "RSA", "3DES-CBC", "SHA1"),
    ("dtls12-oc-aes256gcm", "dtls", "OC-DTLS1_2-AES256-GCM", "DTLS1.2", "RSA", "AES-256-GCM",
     "AEAD"),
    ("dtls12-oc-aes128gcm", "dtls", "OC-DTLS1_2-AES128-GCM", "DTLS1.2", "RSA", "AES-128-GCM",
     "AEAD"),
    ("dtls12-oc2-chacha", "dtls", "OC2-DTLS1_2-CHACHA20-POLY1305", "DTLS1.2", "PSK",
     "CHACHA20-POLY1305", "AEAD"),
    ("dtls12-ecdhe-aes256gcm", "dtls12", "ECDHE-RSA-AES256-GCM-SHA384", "DTLS1.2", "ECDHE-RSA",
     "AES-256-GCM", "AEAD"),
    ("dtls12-aes128-sha", "dtls12", "AES128-SHA", "DTLS1.2", "RSA", "AES-128-CBC", "SHA1"),
]  # fmt: skip


def run_case(binary: Path, mode: LegacyMode | PskMode, args: list[str]) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    port = sock.getsockname()[1]
    association: DtlsAssociation | None = None
    jar = CookieJar()
    received: list[str] = []
    client = subprocess.Popen([str(binary), str(port), *args], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while client.poll() is None and time.monotonic() < deadline:
        try:
            data, addr = sock.recvfrom(65536)
        except TimeoutError:
            if association is not None:
                association.handle_timer(time.monotonic())
            continue
        received.append(data.hex())
        info = peek_client_hello_untrusted(data) if association is None else None
        if info is not None and isinstance(mode, PskMode) and not info.cookie:
            sock.sendto(jar.hello_verify_request(info, addr, time.monotonic()), addr)
            continue
        if association is None:
            association = DtlsAssociation(
                mode=mode, now=time.monotonic(), random_bytes=random.Random(3).randbytes
            )
        association.receive_datagram(data, time.monotonic())
        while (event := association.next_event()) is not None:
            if type(event).__name__ == "DataReceived":
                association.send_data(event.payloads)  # type: ignore[union-attr]
        for datagram in association.datagrams_to_send():
            sock.sendto(datagram, addr)
    stdout, _ = client.communicate(timeout=5)
    sock.close()
    assert client.returncode == 0, stdout
    description = stdout.splitlines()[0].removeprefix("DESCRIPTION ")
    return {"gnutls_description": description, "client_datagrams": received}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "client"
        subprocess.run(["gcc", "-o", binary, SOURCE, "-lgnutls"], check=True)
        cases: dict[str, object] = {}
        for name, table, suite_name, version, kx, cipher, mac in LEGACY:
            suites = DTLS12_CIPHERSUITES if table == "dtls12" else DTLS_CIPHERSUITES
            mode = LegacyMode(SESSION_ID, MASTER, suites[suite_name][0])
            args = ["legacy", version, kx, cipher, mac, MASTER.hex(), SESSION_ID.hex(), MESSAGE]
            cases[name] = {"table": table, "suite": suite_name, **run_case(binary, mode, args)}
        psk = PskMode(app_id=APP_ID, psk=PSK)
        cases["psk"] = {**run_case(binary, psk, ["psk", PSK.hex(), APP_ID.hex(), MESSAGE])}
    document = {
        "master_secret": MASTER.hex(),
        "session_id": SESSION_ID.hex(),
        "psk": PSK.hex(),
        "app_id": APP_ID.hex(),
        "server_random_seed": 3,
        "message": MESSAGE,
        "cases": cases,
    }
    (HERE / "gnutls_transcripts.json").write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
