"""A small hand-rolled AnyConnect client over Python ``ssl``, for the hostile tests.

openconnect only sends well-formed requests; this client sends what a hostile peer would (garbage,
oversized headers and bodies, bad cookies, bad CSTP frames) and also performs the AggAuth XML dialog
(init, auth-reply with the form's fields) to obtain a real cookie and CONNECT with it. Sockets are
created inside the client namespace (:func:`netns_socket`). Every read has a timeout, so a server
that neither answers nor closes makes a test fail instead of hang."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, tostring

from defusedxml.ElementTree import fromstring

from ._netns import netns_socket

__all__ = [
    "USER_AGENT",
    "Conn",
    "HttpResponse",
    "LoginFailed",
    "Outcome",
    "aggauth_login",
    "connect_tunnel",
    "init_xml",
    "open_conn",
]

USER_AGENT = "Open AnyConnect VPN Agent v9.01-3"
_CLOSED_ERRORS = (OSError, EOFError)


class LoginFailed(AssertionError):
    """The AggAuth dialog did not end in a cookie."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def set_cookies(self) -> dict[str, str]:
        cookies: dict[str, str] = {}
        for key, value in self.headers:
            if key.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                name, _, val = pair.partition("=")
                cookies[name.strip()] = val.strip()
        return cookies


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the server did with one hostile request: answered ``status``, and/or closed."""

    name: str
    status: int | None
    closed: bool
    detail: str = ""

    @property
    def rejected(self) -> bool:
        return (self.status is not None and self.status >= 400) or (
            self.status is None and self.closed
        )


@dataclass
class Conn:
    """A (TLS or plain TCP) connection with a read buffer."""

    sock: socket.socket
    host: str
    timeout: float = 10.0
    buffer: bytearray = field(default_factory=bytearray)
    eof: bool = False

    def send(self, data: bytes) -> bool:
        """Send everything; False if the peer closed the connection meanwhile."""
        try:
            self.sock.sendall(data)
        except _CLOSED_ERRORS:
            return False
        return True

    def _fill(self, deadline: float) -> bool:
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("server neither answered nor closed")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("server neither answered nor closed") from None
        except _CLOSED_ERRORS:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def read_until(self, marker: bytes, deadline: float, limit: int = 1 << 20) -> bytes | None:
        while marker not in self.buffer:
            if len(self.buffer) > limit or not self._fill(deadline):
                return None
        index = self.buffer.index(marker) + len(marker)
        data = bytes(self.buffer[:index])
        del self.buffer[:index]
        return data

    def read_exact(self, n: int, deadline: float) -> bytes | None:
        while len(self.buffer) < n:
            if not self._fill(deadline):
                return None
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read_response(
        self, *, method: str = "GET", timeout: float | None = None
    ) -> HttpResponse | None:
        """Read one HTTP response; None if the connection closed before a complete head."""
        deadline = time.monotonic() + (timeout or self.timeout)
        head = self.read_until(b"\r\n\r\n", deadline, limit=64 * 1024)
        if head is None:
            return None
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or not code.isdigit():
            return HttpResponse(0, lines[0], (), b"")
        headers = tuple(
            (k.strip(), v.strip())
            for k, _, v in (line.partition(":") for line in lines[1:] if line)
        )
        response = HttpResponse(int(code), reason, headers, b"")
        status = int(code)
        if method == "CONNECT" and 200 <= status < 300:
            return response
        body = self._read_body(response, deadline)
        return HttpResponse(status, reason, headers, body)

    def _read_body(self, response: HttpResponse, deadline: float) -> bytes:
        length = response.header("content-length")
        if length is not None and length.strip().isdigit():
            return self.read_exact(int(length), deadline) or b""
        if (response.header("transfer-encoding") or "").lower() == "chunked":
            body = bytearray()
            while True:
                size_line = self.read_until(b"\r\n", deadline)
                if size_line is None:
                    break
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                chunk = self.read_exact(size + 2, deadline)
                if size == 0 or chunk is None:
                    break
                body += chunk[:-2]
            return bytes(body)
        if (response.header("connection") or "").lower() == "close":
            return self.read_to_eof(deadline)
        return b""

    def read_to_eof(self, deadline: float) -> bytes:
        with contextlib.suppress(TimeoutError):
            while self._fill(deadline):
                pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def wait_closed(self, timeout: float = 10) -> bool:
        """Discard what arrives until the peer closes; False if still open at the timeout."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                self.buffer.clear()
        except TimeoutError:
            return False
        return True

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        timeout: float | None = None,
    ) -> HttpResponse | None:
        """Send a request (adding Host/User-Agent/Content-Length) and read the response."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"User-Agent: {USER_AGENT}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        sent = self.send(data)
        response = self.read_response(method=method, timeout=timeout)
        if response is None and not sent:
            self.eof = True
        return response

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _spki_pin(der: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return "pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def client_context() -> ssl.SSLContext:
    """A TLS client context that accepts any server certificate (tests check the pin)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def open_conn(
    ns: str,
    host: str,
    port: int,
    *,
    tls: bool = True,
    pin: str | None = None,
    timeout: float = 10,
    context: ssl.SSLContext | None = None,
    session: ssl.SSLSession | None = None,
) -> Conn:
    """Connect from namespace ``ns``; with ``tls`` do the handshake (checking ``pin`` if given).

    ``context`` and ``session`` let a caller behave like one openconnect client: one TLS
    context for all its connections, and the CONNECT resuming the login's TLS session.
    """
    sock = netns_socket(ns)
    sock.settimeout(timeout)
    sock.connect((host, port))
    if tls:
        ctx = context if context is not None else client_context()
        sock = ctx.wrap_socket(sock, server_hostname=None, session=session)
        if pin is not None:
            der = sock.getpeercert(binary_form=True)
            assert der is not None
            assert _spki_pin(der) == pin, "server certificate pin mismatch"
    return Conn(sock=sock, host=host, timeout=timeout)


_XML_HEADERS = (
    ("Accept", "*/*"),
    ("X-Transcend-Version", "1"),
    ("X-Aggregate-Auth", "1"),
    ("Content-Type", "application/xml; charset=utf-8"),
)


def init_xml(url: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<config-auth client="vpn" type="init" aggregate-auth-version="2">'
        '<version who="vpn">v9.01-3</version><device-id>linux-64</device-id>'
        f"<group-access>{url}</group-access></config-auth>"
    ).encode()


def _auth_reply(form_auth: Element, opaque: Element | None, user: str, password: str) -> bytes:
    root = Element(
        "config-auth", {"client": "vpn", "type": "auth-reply", "aggregate-auth-version": "2"}
    )
    version = Element("version", {"who": "vpn"})
    version.text = "v9.01-3"
    device = Element("device-id")
    device.text = "linux-64"
    root.extend([version, device])
    if opaque is not None:
        root.append(opaque)
    auth = Element("auth")
    for field_ in form_auth.iter("input"):
        name = field_.get("name", "")
        kind = field_.get("type", "text")
        element = Element(name)
        if kind == "password":
            element.text = password
        elif kind == "hidden":
            element.text = field_.get("value", "")
        elif kind == "text":
            element.text = user
        else:
            continue
        auth.append(element)
    root.append(auth)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root)


def answer_form(body: bytes, user: str, password: str) -> bytes:
    """The ``auth-reply`` to the form in the server's reply ``body`` (user name and password)."""
    doc = fromstring(body)
    auth = doc.find("auth")
    if auth is None or auth.find("form") is None:
        raise LoginFailed(f"no form in reply: {body[:500]!r}")
    form = auth.find("form")
    assert form is not None
    return _auth_reply(form, doc.find("opaque"), user, password)


AGGAUTH_HEADERS = _XML_HEADERS
"""The request headers of openconnect's AggAuth posts."""


def aggauth_login(
    conn: Conn,
    url: str,
    user: str,
    passwords: Sequence[str],
    *,
    max_rounds: int = 6,
    reconnect: Callable[[], Conn] | None = None,
) -> str:
    """Run the AggAuth dialog on ``conn``; each password form takes the next of ``passwords``.

    With ``reconnect``, every round after the first goes on a new connection it opens (the
    previous one is closed), carrying the cookies the server set, as a client that lost its
    connection mid-login would; every connection, ``conn`` too, is closed on return.

    :returns: the ``webvpn`` session cookie.
    :raises LoginFailed: on a non-200 reply, a closed connection or too many rounds.
    """
    opened = [conn]
    try:
        return _dialog(opened, url, user, list(passwords), max_rounds, reconnect)
    finally:
        if reconnect is not None:
            opened[-1].close()


def _dialog(
    opened: list[Conn],
    url: str,
    user: str,
    pending: list[str],
    max_rounds: int,
    reconnect: Callable[[], Conn] | None,
) -> str:
    cookies: dict[str, str] = {}
    body = init_xml(url)
    path = "/"
    conn = opened[-1]
    for round_ in range(max_rounds):
        if reconnect is not None and round_ > 0:
            conn.close()
            conn = reconnect()
            opened.append(conn)
        headers = list(_XML_HEADERS)
        if cookies:
            headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
        response = conn.request("POST", path, headers=headers, body=body)
        if response is None:
            raise LoginFailed("server closed the connection during login")
        if response.status != 200:
            raise LoginFailed(f"login answered {response.status} {response.reason}")
        cookies.update({k: v for k, v in response.set_cookies().items() if v})
        doc = fromstring(response.body)
        auth = doc.find("auth")
        token = doc.findtext("session-token")
        if auth is not None and auth.get("id") == "success":
            cookie = token or cookies.get("webvpn", "")
            if not cookie:
                raise LoginFailed("success without a cookie")
            return cookie
        if auth is None or auth.find("form") is None:
            raise LoginFailed(f"no form in reply: {response.body[:500]!r}")
        form = auth.find("form")
        assert form is not None
        path = form.get("action") or "/"
        password = ""
        if any(f.get("type") == "password" for f in form.iter("input")):
            if not pending:
                raise LoginFailed("server asked for another password")
            password = pending.pop(0)
        body = _auth_reply(form, doc.find("opaque"), user, password)
    raise LoginFailed(f"no success after {max_rounds} rounds")


def connect_tunnel(
    conn: Conn, cookie: str, *, extra: Sequence[tuple[str, str]] = ()
) -> HttpResponse | None:
    """Send ``CONNECT /CSCOSSLC/tunnel`` as openconnect 9.01 does with ``--no-dtls``."""
    headers = [
        ("Cookie", f"webvpn={cookie}"),
        ("X-CSTP-Version", "1"),
        ("X-CSTP-Hostname", "hostile-test"),
        ("X-CSTP-Base-MTU", "1400"),
        ("X-CSTP-MTU", "1290"),
        ("X-CSTP-Address-Type", "IPv6,IPv4"),
        ("X-CSTP-Full-IPv6-Capability", "true"),
        *extra,
    ]
    return conn.request("CONNECT", "/CSCOSSLC/tunnel", headers=headers)
