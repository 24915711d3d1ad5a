"""Virtual hosts at the TLS layer: the client's server name (SNI) picks the context.

Theory of operation: the listening socket and the first context are the default host's. OpenSSL
calls the server-name callback while it reads the ClientHello, before it chooses a certificate;
the callback asks ``select`` for the context of the name the client sent (``None`` when it sent
none) and moves the connection onto it (``SSL_set_SSL_CTX``). From then on that context's
certificate, key, CA list and certificate store serve the handshake. OpenSSL does not carry the
client-certificate request over (the verify mode is the connection's own), so the callback copies
it from the chosen context. What the connection learns afterwards, ``get_servername()``, names the
vhost for everything above TLS (:meth:`ocgate.config.Config.vhost` applies the same rule).

An unknown name or none at all keeps the default host, as ocserv does; the handshake is never
refused for its name.
"""

from __future__ import annotations

from collections.abc import Callable

from OpenSSL import SSL

__all__ = ["serve_by_server_name"]


def _accept_at_tls_layer(_conn: SSL.Connection, _cert: object, _errno: int, _depth: int,
                         _ok: int) -> bool:  # fmt: skip
    """Client chains are judged above TLS (``ocgate.certauth``), as with the default host."""
    return True


def serve_by_server_name(
    default: SSL.Context, select: Callable[[bytes | None], SSL.Context]
) -> None:
    """Make ``default`` hand each connection to the context ``select`` returns for its SNI.

    Call before ``default`` makes its first connection.
    """

    def on_server_name(conn: SSL.Connection) -> None:
        chosen = select(conn.get_servername())
        if chosen is default:
            return
        conn.set_context(chosen)
        mode = chosen.get_verify_mode()
        if mode:
            conn.set_verify(mode, _accept_at_tls_layer)

    default.set_tlsext_servername_callback(on_server_name)
