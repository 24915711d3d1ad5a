"""The front door's face to strangers: ``camouflage`` and ``included-http-headers``.

Theory of operation (ocserv ``src/worker-vpn.c`` ``check_camouflage_url``, ``src/worker-http.c``
``response_401``/``response_404``/``add_owasp_headers``, ocserv ≥ 1.2.3):

* With ``camouflage = true`` a connection is *hidden* until one of its requests names the secret as
  the whole query string (``GET /?SECRET``: openconnect sends that for the server URL
  ``https://host/?SECRET``). Until then every request gets what a password-protected web
  server would answer: ``401 Unauthorized`` with ``WWW-Authenticate: Basic realm="REALM"`` and
  ocserv's tiny HTML page, or, without ``camouflage_realm``, ``404 Not found``; either closes the
  connection and carries none of the VPN's headers. Once the secret is seen the connection stays
  open for the rest of the login: later requests on it need not repeat the query (a form's
  ``action`` may not carry it).
* A ``CONNECT`` carrying a ``webvpn`` cookie passes the gate (ocserv 1.2.3 lets AnyConnect's
  reconnects through this way: a cookie only comes from a login that knew the secret). If that
  cookie then proves invalid the answer is ``405 Method Not Allowed`` rather than the VPN's own
  ``401``, which would reveal it. ocgate lets a cookie through only for ``CONNECT``, where it is
  checked at once; ocserv also lets a GET with a well-formed cookie reach the login form.
* ``included-http-headers`` lines are appended to every response the login dialog and the tunnel
  gateway produce (the ``200 CONNECTED`` and errors included); the camouflage answers stay bare, as
  ocserv's ``response_401``/``response_404`` are.

Everything here is a pure function of the configuration and the request: the daemon adapter keeps
one :class:`CamouflageGate` per TLS connection.
"""

from __future__ import annotations

import dataclasses
import hmac

from ocgate.http._response import Response
from ocgate.http.events import Request

__all__ = ["CamouflageGate", "with_headers"]

HTML_401 = b"<html><body><h1>401 Unauthorized</h1></body></html>\r\n"
HTML_404 = b"<html><body><h1>404 Not Found</h1></body></html>\r\n"


def with_headers(response: Response, extra: tuple[tuple[str, str], ...]) -> Response:
    """``response`` with the ``extra`` headers after its own (``included-http-headers``)."""
    if not extra:
        return response
    return dataclasses.replace(response, headers=(*response.headers, *extra))


class CamouflageGate:
    """Whether one connection's requests may reach the VPN.

    :param secret: ``camouflage_secret``: the query string that opens the gate.
    :param realm: ``camouflage_realm``: the Basic realm of the ``401`` (``None``: ``404``).
    """

    def __init__(self, secret: str, realm: str | None) -> None:
        self._secret = secret
        self._realm = realm
        self.passed_by_secret = False
        """The connection named the secret: the VPN answers it as if camouflage were off."""

    def check(self, request: Request) -> Response | None:
        """``None`` if ``request`` may go on to the VPN, else the stranger's answer."""
        if self.passed_by_secret:
            return None
        _path, sep, query = request.target.partition("?")
        # Constant time: the answer's timing must not tell a prober how much of a guess was right.
        if sep and hmac.compare_digest(query.encode(), self._secret.encode()):
            self.passed_by_secret = True
            return None
        if request.method == "CONNECT" and request.cookies().get("webvpn"):
            return None  # An invalid cookie gets refusal() below instead of the VPN's answer.
        return self.stranger()

    def stranger(self) -> Response:
        """What a web server without the VPN answers (ocserv ``response_401``/``response_404``)."""
        if self._realm is None:
            return Response(404, "Not found", (), HTML_404, close=True)
        challenge = ("WWW-Authenticate", f'Basic realm="{self._realm}"')
        return Response(401, "Unauthorized", (challenge,), HTML_401, close=True)

    def refusal(self) -> Response | None:
        """The answer to a refused cookie while hidden (``405``; ``None``: the VPN's own)."""
        if self.passed_by_secret:
            return None
        return Response(405, "Method Not Allowed", (), b"", close=True)
