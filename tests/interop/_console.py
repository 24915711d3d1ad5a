"""The web console under test: a gateway with ``admin-listen``, its administrators, and an HTTPS
client that speaks the console's API from inside a test namespace.

Theory of operation: the console listens on the server end of the veth pair
(``198.18.0.1:8443``), so a client in the client namespace is a remote administrator
(source ``198.18.0.2``) and one in the server namespace comes from ``198.18.0.1``: two distinct
sources for the per-source login guard. :class:`ConsoleHttp` opens every request on a fresh TLS
connection whose socket is made inside the chosen namespace (:func:`netns_socket`), with the
gateway's self-signed certificate as the only trust anchor. Cookies are handled by hand: the tests
read the ``Set-Cookie`` attributes themselves and send exactly the cookies and CSRF header they
mean to.

Administrators log in with a password and a TOTP code, and the gateway accepts each TOTP step
once per account (the use is recorded in ``admin-otp``) and only steps ``now - 1 .. now + 1``:
:class:`TotpClock` hands out codes for unused steps, waiting for the clock when an account has
used them up. Tests give each purpose its own account instead of logging one in repeatedly.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

from ._certs import ServerCert
from ._netns import NetnsPair, netns_socket
from ._server import DEFAULT_USERS, Server, ServerKind, User, start_server, write_passwd

__all__ = [
    "CONSOLE_PORT",
    "Admin",
    "ConsoleGateway",
    "ConsoleHttp",
    "Reply",
    "TotpClock",
    "b32",
    "start_console_gateway",
]

CONSOLE_PORT = 8443
SESSION_COOKIE = "__Host-ocgate-console"
CSRF_COOKIE = "__Host-ocgate-csrf"


def b32(key: bytes) -> str:
    """Base32 without padding, as authenticator apps and openconnect's ``base32:`` take it."""
    return base64.b32encode(key).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class Admin:
    """A console administrator: ``admin-passwd`` line (role as group) and TOTP seed."""

    name: str
    password: str
    role: str
    key: bytes

    @property
    def secret(self) -> str:
        return b32(self.key)


class TotpClock:
    """TOTP codes for steps each account has not used yet (the gateway refuses replays)."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def code(self, account: str, secret_b32: str) -> str:
        totp = pyotp.TOTP(secret_b32)
        while True:
            now = time.time()
            step = int(now) // totp.interval
            wanted = max(step, self._last.get(account, -1) + 1)
            if wanted <= step + 1:
                self._last[account] = wanted
                return totp.at(wanted * totp.interval)
            time.sleep((step + 1) * totp.interval - now + 0.05)


@dataclass(slots=True)
class Reply:
    """One HTTP response."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)

    def set_cookies(self) -> dict[str, dict[str, str]]:
        """``Set-Cookie`` headers by cookie name: ``{"value": ..., "secure": "", ...}`` with the
        attribute names lower-cased."""
        cookies: dict[str, dict[str, str]] = {}
        for key, value in self.headers:
            if key.lower() != "set-cookie":
                continue
            first, *attrs = [part.strip() for part in value.split(";")]
            name, _, cookie_value = first.partition("=")
            parsed = {"value": cookie_value}
            for attr in attrs:
                attr_name, _, attr_value = attr.partition("=")
                parsed[attr_name.strip().lower()] = attr_value.strip()
            cookies[name.strip()] = parsed
        return cookies

    def describe(self) -> str:
        return f"HTTP {self.status} {self.headers!r}\n{self.body[:2000]!r}"


class _NetnsHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, ns: str, host: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=15, context=context)
        self._ns = ns
        self._tls = context

    def connect(self) -> None:
        sock = netns_socket(self._ns)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


@dataclass(slots=True)
class ConsoleHttp:
    """HTTPS requests to the console from network namespace ``ns``.

    After :meth:`login` the session cookie and CSRF token are sent with every request unless a
    call overrides ``cookies`` / ``csrf``."""

    ns: str
    host: str
    port: int
    cafile: Path
    session: str | None = None
    csrf: str | None = None
    login_reply: Reply | None = field(default=None, repr=False)

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cafile))
        context.check_hostname = False  # The certificate names the IP; pinned by cafile.
        return context

    def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        csrf: str | None = "",
    ) -> Reply:
        """One request. ``cookies=None`` sends the session cookie (if logged in); ``csrf=""``
        sends the session's CSRF token (if any), ``csrf=None`` none, anything else that."""
        conn = _NetnsHTTPSConnection(self.ns, self.host, self.port, self._context())
        send = {"Host": f"{self.host}:{self.port}", "Connection": "close"}
        if cookies is None:
            cookies = {SESSION_COOKIE: self.session} if self.session else {}
        if cookies:
            send["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        token = self.csrf if csrf == "" else csrf
        if token:
            send["X-CSRF-Token"] = token
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()
            send["Content-Type"] = "application/json"
        send.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=send)
            response = conn.getresponse()
            return Reply(response.status, response.getheaders(), response.read())
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def login_csrf(self) -> tuple[str, Reply]:
        """The pre-session CSRF token ``GET /login`` sets (double-submit cookie): ``("", reply)``
        when there is none (a banned source, say)."""
        reply = self.request("GET", "/login", cookies={}, csrf=None)
        cookie = reply.set_cookies().get(CSRF_COOKIE)
        return (cookie["value"] if cookie else ""), reply

    def try_login(self, username: str, password: str, otp: str, *, token: str = "") -> Reply:
        """``POST /api/v1/login`` with the double-submit token (``token``, or a new one from
        ``GET /login``); keeps the session on success."""
        if not token:
            token, page = self.login_csrf()
            if not token:
                return page
        reply = self.request(
            "POST",
            "/api/v1/login",
            body={"username": username, "password": password, "otp": otp},
            cookies={CSRF_COOKIE: token},
            csrf=token,
        )
        if reply.status == 200:
            self.login_reply = reply
            self.session = reply.set_cookies()[SESSION_COOKIE]["value"]
            self.csrf = reply.json()["csrf"]
        return reply

    def login(self, admin: Admin, clock: TotpClock) -> ConsoleHttp:
        reply = self.try_login(admin.name, admin.password, clock.code(admin.name, admin.secret))
        assert reply.status == 200, reply.describe()
        return self


@dataclass(slots=True)
class ConsoleGateway:
    """The gateway with its console, the files the tests look at, and the accounts."""

    server: Server
    pair: NetnsPair
    cert: ServerCert
    admins: dict[str, Admin]
    vpn_users: dict[str, User]
    vpn_otp: dict[str, bytes]
    vpn_otp_path: Path
    vpn_passwd_path: Path
    audit_log: Path
    clock: TotpClock = field(default_factory=TotpClock)

    @property
    def host(self) -> str:
        return self.pair.server_addr

    @property
    def url(self) -> str:
        return f"https://{self.host}:{CONSOLE_PORT}"

    def http(self, ns: str | None = None) -> ConsoleHttp:
        """A client in ``ns`` (default: the client namespace)."""
        return ConsoleHttp(ns or self.pair.client, self.host, CONSOLE_PORT, self.cert.cert_path)

    def admin_http(self, name: str, ns: str | None = None) -> ConsoleHttp:
        """A client logged in as administrator ``name``."""
        return self.http(ns).login(self.admins[name], self.clock)

    def audit_entries(self) -> list[dict[str, Any]]:
        try:
            text = self.audit_log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def start_console_gateway(
    *,
    pair: NetnsPair,
    cert: ServerCert,
    workdir: Path,
    admins: Sequence[Admin],
    vpn_otp: Mapping[str, bytes],
    users: Sequence[User] = DEFAULT_USERS,
    overrides: Mapping[str, str | Sequence[str] | None] | None = None,
) -> ConsoleGateway:
    """Start ocgate with the console on ``198.18.0.1:8443``, the VPN users' logins checked with
    password and TOTP (``plain[passwd,otp]``; ``vpn_otp`` holds each user's key) and the given
    administrators."""
    workdir.mkdir(parents=True, exist_ok=True)
    admin_passwd = workdir / "admins"
    admin_otp = workdir / "admins.oath"
    write_passwd(
        admin_passwd, [User(a.name, a.password, (a.role,)) for a in admins], ServerKind.OCGATE
    )
    admin_otp.write_text("".join(f"HOTP/T30 {a.name} - {a.key.hex()}\n" for a in admins))
    vpn_otp_path = workdir / "users.oath"
    vpn_otp_path.write_text("".join(f"HOTP/T30 {n} - {k.hex()}\n" for n, k in vpn_otp.items()))
    audit_log = workdir / "audit.log"
    # start_server writes the VPN password file to workdir/server/ocpasswd.
    server_dir = workdir / "server"
    vpn_passwd = server_dir / "ocpasswd"
    options: dict[str, str | Sequence[str] | None] = {
        "auth": f'"plain[passwd={vpn_passwd},otp={vpn_otp_path}]"',
        "admin-listen": f"{pair.server_addr}:{CONSOLE_PORT}",
        "admin-passwd": str(admin_passwd),
        "admin-otp": str(admin_otp),
        "admin-audit-log": str(audit_log),
        **(overrides or {}),
    }
    server = start_server(pair=pair, workdir=server_dir, cert=cert, overrides=options, users=users)
    gateway = ConsoleGateway(
        server=server,
        pair=pair,
        cert=cert,
        admins={a.name: a for a in admins},
        vpn_users={u.name: u for u in users},
        vpn_otp=dict(vpn_otp),
        vpn_otp_path=vpn_otp_path,
        vpn_passwd_path=vpn_passwd,
        audit_log=audit_log,
    )
    try:
        _wait_console(gateway)
    except BaseException:
        server.stop()
        raise
    return gateway


def _wait_console(gateway: ConsoleGateway, timeout: float = 30) -> None:
    """Wait until the console answers ``GET /login`` from the client namespace."""
    deadline = time.monotonic() + timeout
    client = gateway.http()
    while True:
        try:
            reply = client.request("GET", "/login", cookies={}, csrf=None)
        except OSError:
            reply = None
        if reply is not None and reply.status == 200:
            return
        gateway.server.assert_alive()
        if time.monotonic() > deadline:
            detail = reply.describe() if reply else "no answer"
            raise AssertionError(
                f"console not answering after {timeout} s: {detail}\n{gateway.server.describe()}"
            )
        time.sleep(0.2)
