"""``ocgate quickstart``: a working demo set-up in one directory (what ``make run`` starts).

It writes a self-signed certificate, a password file with one demo user, and an ocserv.conf, then
prints the openconnect command and the credentials (also written to ``CREDENTIALS.txt``). Running it
again reuses what is there, so the certificate pin and the password stay the same.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
import os
import secrets
import socket
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ocgate.passwd import PasswdEntry, format_passwd, hash_password
from ocgate.tls import load_credentials

__all__ = ["quickstart"]

DEMO_USER = "demo"
DEMO_ADMIN = "admin"
ADMIN_PORT = 8443

_CONFIG = """\
# ocgate demo configuration, written by `ocgate quickstart`. It is an ordinary ocserv.conf.
auth = "plain[passwd={dir}/ocpasswd]"
tcp-port = {port}
udp-port = {port}
server-cert = {dir}/server-cert.pem
server-key = {dir}/server-key.pem
socket-file = {dir}/ocgate.socket
pid-file = {dir}/ocgate.pid
device = vpns
ipv4-network = 10.99.0.0/24
ipv6-network = fd99:0:0:1::/64
ipv6-subnet-prefix = 128
route = 10.99.0.0/255.255.255.0
route = fd99:0:0:1::/64
default-domain = vpn.example
dpd = 90
keepalive = 32400
cookie-timeout = 300
max-clients = 16
max-same-clients = 4
predictable-ips = true
pre-login-banner = "ocgate demo gateway"
# NVM telemetry: endpoints send nvzFlow to UDP 2055; flows land in SQLite, the API is local only.
nvm-listen = udp://0.0.0.0:2055
nvm-store = sqlite:///{dir}/nvm.sqlite
nvm-api-listen = 127.0.0.1:8099
nvm-api-token-file = {dir}/nvm-api-tokens
banner = "Welcome to the ocgate demo"
# The administrators' web console (docs/CONSOLE.md), on loopback only: password and TOTP code.
admin-listen = 127.0.0.1:{admin_port}
admin-passwd = {dir}/admin-passwd
admin-otp = {dir}/admin-otp
admin-audit-log = {dir}/admin-audit.log
"""


def quickstart(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ocgate quickstart",
        description="Write a demo ocserv.conf, certificate and user, and print how to connect.",
    )
    parser.add_argument("--dir", default="run", help="where to write (%(default)s)")
    parser.add_argument("--port", type=int, default=443, help="TLS port (%(default)s)")
    parser.add_argument("--host", help="address or name to print in the openconnect command")
    parser.add_argument(
        "--admin-port", type=int, default=ADMIN_PORT, help="web console port (%(default)s)"
    )
    args = parser.parse_args(argv)
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    cert, key = directory / "server-cert.pem", directory / "server-key.pem"
    if not (cert.exists() and key.exists()):
        _write_certificate(cert, key)
    password = _demo_password(directory)
    token = _api_token(directory)
    admin_password, admin_secret = _demo_admin(directory)
    config = _CONFIG.format(dir=directory, port=args.port, admin_port=args.admin_port)
    (directory / "ocserv.conf").write_text(config)
    pin = load_credentials(str(cert)).pin_sha256
    host = args.host or _guess_host()
    url = f"https://{host}/" if args.port == 443 else f"https://{host}:{args.port}/"
    text = (
        "ocgate demo gateway\n"
        f"  Username: {DEMO_USER}\n"
        f"  Password: {password}\n"
        "Connect with:\n"
        f"openconnect --servercert {pin} --user {DEMO_USER} {url}\n"
        "NVM telemetry: send nvzFlow to UDP port 2055; query the flows with\n"
        f"  curl -H 'Authorization: Bearer {token}' http://127.0.0.1:8099/api/v1/flows\n"
        f"Web console: https://127.0.0.1:{args.admin_port}/ (from this machine)\n"
        f"  Administrator: {DEMO_ADMIN}\n"
        f"  Password: {admin_password}\n"
        f"  TOTP secret (add it to an authenticator app): {admin_secret}\n"
        f"  or: {_otpauth_uri(admin_secret)}\n"
    )
    credentials = directory / "CREDENTIALS.txt"
    credentials.write_text(text)
    os.chmod(credentials, 0o600)
    print(text, end="", flush=True)
    print(f"(also written to {credentials})", flush=True)
    return 0


def _demo_password(directory: Path) -> str:
    passwd = directory / "ocpasswd"
    saved = directory / ".demo-password"
    if passwd.exists() and saved.exists():
        return saved.read_text().strip()
    password = secrets.token_urlsafe(12)
    entry = PasswdEntry(username=DEMO_USER, groups=(), hash=hash_password(password))
    passwd.write_text(format_passwd({DEMO_USER: entry}))
    os.chmod(passwd, 0o600)
    saved.write_text(password + "\n")
    os.chmod(saved, 0o600)
    return password


def _demo_admin(directory: Path) -> tuple[str, str]:
    """The console's demo administrator: (password, base32 TOTP secret), made once."""
    passwd, otp = directory / "admin-passwd", directory / "admin-otp"
    saved = directory / ".demo-admin"
    if passwd.exists() and otp.exists() and saved.exists():
        password, secret = saved.read_text().split()
        return password, secret
    password = secrets.token_urlsafe(12)
    key = secrets.token_bytes(20)
    entry = PasswdEntry(username=DEMO_ADMIN, groups=("admin",), hash=hash_password(password))
    secret = base64.b32encode(key).decode("ascii")
    for path, text in (
        (passwd, format_passwd({DEMO_ADMIN: entry})),
        (otp, f"HOTP/T30\t{DEMO_ADMIN}\t-\t{key.hex()}\n"),
        (saved, f"{password} {secret}\n"),
    ):
        path.write_text(text)
        os.chmod(path, 0o600)
    return password, secret


def _otpauth_uri(secret: str) -> str:
    return f"otpauth://totp/ocgate%20demo:{DEMO_ADMIN}?secret={secret}&issuer=ocgate%20demo"


def _api_token(directory: Path) -> str:
    tokens = directory / "nvm-api-tokens"
    if tokens.exists():
        return tokens.read_text().split()[0]
    token = secrets.token_urlsafe(24)
    tokens.write_text(token + "\n")
    os.chmod(tokens, 0o600)
    return token


def _write_certificate(cert_path: Path, key_path: Path) -> None:
    # ECDSA P-256: small, fast, and it avoids the TLS 1.3 + RSA failure of older AnyConnect on iOS
    # (#318).
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocgate demo")])
    now = datetime.datetime.now(datetime.UTC)
    host = socket.gethostname()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(host),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _guess_host() -> str:
    try:
        addr = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return addr
