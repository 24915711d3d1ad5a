"""Capture real CSTP bytes from openconnect (generator for the vectors in this directory).

Runs a minimal TLS server on 127.0.0.1 (Python ``ssl``, throw-away self-signed key), lets the
installed ``openconnect`` connect with a pre-set cookie and ``--script-tun`` (no root, no tun), and
records what openconnect sends and how it answers our frames:

1. the ``CONNECT /CSCOSSLC/tunnel`` request (headers, including the loopback Base-MTU);
2. a DATA frame carrying an IPv4 UDP packet the script-tun child writes into ``VPNFD``;
3. its DPD-RESP to our DPD-REQ with a 16-byte payload;
4. its DPD-REQ after ``X-CSTP-DPD`` seconds without anything from us;
5. the DISCONNECT (BYE) it sends on SIGINT.

openconnect is also the independent checker of ocgate's encoder: its DPD-REQ is answered by
``ocgate.cstp.CstpConnection`` (openconnect logs "Got CSTP DPD response"), and a second run ends
with ``CstpConnection.send_disconnect`` (openconnect logs "Received server disconnect: b0 '...'").

Each TLS record openconnect sends is one CSTP frame, so record boundaries are kept in the output.
Run manually (not part of the unit tests)::

    .venv/bin/python tests/vectors/cstp/capture_openconnect.py
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ocgate.cstp import CstpConnection

HERE = Path(__file__).parent

# An IPv4/UDP packet 10.10.0.2:5000 -> 10.10.0.1:9 with payload "ocgate" (checksums left zero):
# total length 34, UDP length 14.
TUN_PACKET = bytes.fromhex("4500002200004000401100000a0a00020a0a000113880009000e0000") + b"ocgate"
TUN_CHILD = f"""
import os, socket, time
s = socket.socket(fileno=int(os.environ["VPNFD"]))
time.sleep(0.5)
s.send(bytes.fromhex("{TUN_PACKET.hex()}"))
time.sleep(60)
"""

CONNECT_REPLY = (
    b"HTTP/1.1 200 CONNECTED\r\n"
    b"X-CSTP-Version: 1\r\n"
    b"X-CSTP-Address: 10.10.0.2\r\n"
    b"X-CSTP-Netmask: 255.255.255.0\r\n"
    b"X-CSTP-DPD: 2\r\n"
    b"X-CSTP-Keepalive: 3600\r\n"
    b"X-CSTP-Base-MTU: 1500\r\n"
    b"X-CSTP-MTU: 1400\r\n"
    b"\r\n"
)


def make_cert(tmp: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = "pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return cert_path, key_path, pin


def read_record(conn: ssl.SSLSocket) -> bytes:
    """One recv on a TLS socket returns at most one record's plaintext."""
    return conn.recv(65536)


def main(server_disconnect: bool) -> int:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        cert, key, pin = make_cert(tmp)
        (tmp / "tun.py").write_text(TUN_CHILD)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        client = subprocess.Popen(
            [
                "openconnect", "-v", "--non-inter", "--no-dtls", "--cookie=capture",
                f"--servercert={pin}", "--reconnect-timeout=0",
                "-S", "--script", f"{sys.executable} {tmp / 'tun.py'}",
                f"https://127.0.0.1:{port}/",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        raw, _ = listener.accept()
        conn = ctx.wrap_socket(raw, server_side=True)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(65536)
        conn.sendall(CONNECT_REPLY)
        records: dict[str, bytes] = {"connect_request.txt": request}
        conn.settimeout(10)
        data = read_record(conn)
        records["oc_data_ipv4_udp.bin"] = data
        dpd_req = b"STF\x01\x00\x10\x03\x00" + bytes(range(16))
        records["server_dpd_req_16.bin"] = dpd_req
        conn.sendall(dpd_req)
        records["oc_dpd_resp_to_16.bin"] = read_record(conn)
        started = time.monotonic()
        records["oc_dpd_req.bin"] = oc_dpd_req = read_record(conn)
        print(f"openconnect DPD-REQ after {time.monotonic() - started:.1f}s of silence")
        core = CstpConnection(
            now=time.monotonic(), dpd=2, keepalive=3600, idle_timeout=None, session_deadline=None
        )
        core.receive_data(oc_dpd_req, time.monotonic())
        for frame in core.frames_to_send():
            conn.sendall(frame)
        time.sleep(0.5)
        if server_disconnect:
            core.send_disconnect("Admin kick")
            for frame in core.frames_to_send():
                conn.sendall(frame)
            out, _ = client.communicate(timeout=10)
            (HERE / "openconnect_log_server_disconnect.txt").write_bytes(out)
            print(out.decode())
            return 0
        client.send_signal(signal.SIGINT)
        records["oc_bye_sigint.bin"] = read_record(conn)
        out, _ = client.communicate(timeout=10)
        records["openconnect_log.txt"] = out
        for name, blob in records.items():
            if name.endswith(".bin"):
                (HERE / name).with_suffix(".hex").write_text(blob.hex() + "\n")
            else:
                (HERE / name).write_bytes(blob)
            print(name, blob[:80])
    return 0


if __name__ == "__main__":
    main(server_disconnect=False)
    raise SystemExit(main(server_disconnect=True))
