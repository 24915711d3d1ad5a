"""Capture the bytes the real openconnect sends while it logs in (generator for this directory).

Runs a throw-away TLS server on 127.0.0.1 (Python ``ssl``, a fresh self-signed key) that answers
with ocgate's own front door and login dialog (``ocgate.http.FrontDoor``,
``ocgate.gateway.LoginDialog`` with the plain and OTP backends of a generated configuration),
lets the installed ``openconnect --authenticate`` log in, and writes every byte each TLS
connection carried from the client, decrypted, as ``openconnect-9.01-<case>-<n>.http``:

* ``xml-group``: XML POST login with ``--authgroup`` (the group re-init, then the credentials);
* ``xml-retry``: a wrong password first (the dialog answers the form again), then the right one;
* ``legacy``: ``--no-xmlpost`` (the old form and an urlencoded POST);
* ``otp``: password, then the TOTP code openconnect's soft token fills in (``--token-mode=totp``).

openconnect is the real peer; ocgate only decides what the client is asked next. Run manually,
as any user (no tun device is needed)::

    .venv/bin/python tests/vectors/http/capture_login.py
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ocgate.auth import build_auth_backends
from ocgate.config import parse_config
from ocgate.gateway import GroupMenu, LoginDialog, LoginServices
from ocgate.http import FrontDoor, Request
from ocgate.passwd import PasswdEntry, format_passwd, hash_password
from ocgate.session import MemorySessionStore
from ocgate.tls import ServerCredentials

HERE = Path(__file__).parent
PASSWORD = "alice-pass"
OTP_KEY = bytes(range(1, 21))
CASES = {
    "xml-group": ["--authgroup=Engineering"],
    "xml-retry": ["--authgroup=Operations"],
    "legacy": ["--no-xmlpost", "--authgroup=Operations"],
    "otp": ["--authgroup=Engineering", "--token-mode=totp", f"--token-secret=0x{OTP_KEY.hex()}"],
}


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
    return (
        cert_path,
        key_path,
        "pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode(),
    )


def services(tmp: Path, cert: Path, key: Path, *, otp: bool) -> LoginServices:
    entry = PasswdEntry(username="alice", groups=("eng", "ops"), hash=hash_password(PASSWORD))
    (tmp / "ocpasswd").write_text(format_passwd({"alice": entry}))
    (tmp / "users.otp").write_text(f"HOTP/T30/6 alice - {OTP_KEY.hex()}\n")
    otp_param = f",otp={tmp}/users.otp" if otp else ""
    config = parse_config(
        f'auth = "plain[passwd={tmp}/ocpasswd{otp_param}]"\n'
        f"server-cert = {cert}\nserver-key = {key}\n"
        "socket-file = /run/ocgate-capture.socket\ndevice = vpns\n"
        "select-group = eng[Engineering]\nselect-group = ops[Operations]\n",
        source="capture.conf",
    )
    return LoginServices(
        config=config,
        backends=build_auth_backends(config),
        store=MemorySessionStore(),
        credentials=ServerCredentials(sha1_hex="AB" * 20, pin_sha256="pin-sha256:x"),
        clock=time.monotonic,
        count_connected=lambda user: 0,
        end_session=lambda session, reason: None,
        groups=GroupMenu(config),
    )


def serve_one(conn: ssl.SSLSocket, login: LoginServices, received: list[bytes]) -> None:
    """One TLS connection: front door plus login dialog until the client hangs up."""
    door = FrontDoor(now=time.monotonic())
    dialog = LoginDialog(login, remote_addr="127.0.0.1")
    loop = asyncio.new_event_loop()
    conn.settimeout(10)
    try:
        while not door.should_close:
            data = conn.recv(65536)
            received.append(data)
            door.receive_data(data, time.monotonic())
            while (event := door.next_event()) is not None:
                if isinstance(event, Request):
                    door.send_response(loop.run_until_complete(dialog.handle(event)))
            conn.sendall(door.data_to_send())
            if not data:
                break
    except (OSError, TimeoutError):
        pass
    finally:
        loop.close()
        conn.close()


def capture(case: str, args: list[str]) -> list[bytes]:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        cert, key, pin = make_cert(tmp)
        login = services(tmp, cert, key, otp=case == "otp")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(2)
        port = listener.getsockname()[1]
        passwords = f"wrong\n{PASSWORD}\n" if case == "xml-retry" else f"{PASSWORD}\n"
        client = subprocess.Popen(
            ["openconnect", "--authenticate", "--non-inter", "--user=alice", "--passwd-on-stdin",
             f"--servercert={pin}", *args, f"https://127.0.0.1:{port}/"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert client.stdin is not None
        client.stdin.write(passwords.encode())
        client.stdin.close()
        streams: list[list[bytes]] = []
        threads = []
        while client.poll() is None:
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            stream: list[bytes] = []
            streams.append(stream)
            conn = ctx.wrap_socket(raw, server_side=True)
            thread = threading.Thread(target=serve_one, args=(conn, login, stream))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join(15)
        assert client.stdout is not None
        log = client.stdout.read().decode(errors="replace")
        print(f"--- {case}: openconnect exit {client.returncode}\n{log}")
        if "COOKIE=" not in log:
            raise SystemExit(f"{case}: openconnect did not log in")
        return [b"".join(s) for s in streams if b"".join(s)]


def main() -> int:
    for case, args in CASES.items():
        for old in HERE.glob(f"openconnect-9.01-{case}-*.http"):
            old.unlink()
        for index, stream in enumerate(capture(case, args)):
            (HERE / f"openconnect-9.01-{case}-{index}.http").write_bytes(stream)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
