"""TLS glue for client certificates: ask for one, and hand the presented chain to the verifier.

The TLS layer accepts whatever the client presents (the verify callback returns ``True``), so a
bad certificate never turns into an opaque handshake alert: :meth:`CertVerifier.verify` refuses it
later with a precise, logged reason and the client gets the normal authentication failure.

When to ask (anyconnect-protocol §1; ocserv ``src/worker-vpn.c``): require a certificate only when
``certificate`` is the sole ``auth`` method and ``cisco-client-compat`` is off, otherwise only
request one. Cisco clients do not present the certificate again on cookie reconnects, so a
certificate must not be demanded at CONNECT in Cisco mode.
"""

from __future__ import annotations

import enum
import os

from OpenSSL import SSL, crypto

from ocgate.config import Config
from ocgate.errors import ConfigError

__all__ = [
    "CertRequest",
    "cert_request_mode",
    "configure_client_cert_request",
    "peer_chain_der",
]


class CertRequest(enum.Enum):
    """Whether the TLS server asks for a client certificate.

    Mirrors GnuTLS ``gnutls_certificate_request_t``.
    """

    IGNORE = "ignore"
    REQUEST = "request"
    REQUIRE = "require"


def cert_request_mode(config: Config) -> CertRequest:
    """What ocserv does for ``config``: REQUIRE only with ``auth = certificate`` alone (and no
    ``enable-auth``) and ``cisco-client-compat`` off; REQUEST whenever ``certificate`` is among the
    methods otherwise; IGNORE without it.
    """
    methods = (*config.auth, *config.enable_auth)
    if not any(m.name == "certificate" for m in methods):
        return CertRequest.IGNORE
    if len(methods) == 1 and not config.cisco_client_compat:
        return CertRequest.REQUIRE
    return CertRequest.REQUEST


def _accept_at_tls_layer(
    _conn: SSL.Connection, _cert: crypto.X509, _errno: int, _depth: int, _ok: int
) -> bool:
    # The verdict is CertVerifier.verify's, which logs why; see the module docstring.
    return True


def configure_client_cert_request(ctx: SSL.Context, *, required: bool, ca_file: str) -> None:
    """Make a server context ask for a client certificate.

    Call before the context makes its first connection (pyOpenSSL refuses changes after that).
    Sets ``VERIFY_PEER`` (plus ``VERIFY_FAIL_IF_NO_PEER_CERT`` when ``required``) with a callback
    that accepts any chain, and sends the subjects of ``ca_file`` as the acceptable CA list so
    clients pick the right certificate. The context needs a session id context for resumption to
    work with ``VERIFY_PEER``; :func:`ocgate.tls.build_server_context` sets one.

    :raises ConfigError: ``ca_file`` cannot be loaded (key ``ca-cert``).
    """
    mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if required else 0)
    ctx.set_verify(mode, _accept_at_tls_layer)
    try:
        ctx.load_client_ca(os.fsencode(ca_file))
    except SSL.Error as exc:
        raise ConfigError(f"cannot load CA list from {ca_file}: {exc}", key="ca-cert") from None


def peer_chain_der(conn: SSL.Connection) -> list[bytes]:
    """The certificates the peer presented, leaf first, in DER (empty when it sent none).

    On the server side OpenSSL keeps the leaf apart from the rest of the chain; a copy of the leaf
    at the head of the chain (client side) is not repeated. The certificates are copied as OpenSSL
    holds them, never parsed here: they are peer bytes, and only
    :meth:`~ocgate.certauth.CertVerifier.verify` may judge them (a certificate whose version field
    is not v1-v3 made ``cryptography`` raise ``InvalidVersion`` in the worker; fuzz_certauth).
    """
    leaf = conn.get_peer_certificate()
    if leaf is None:
        return []
    ders = [crypto.dump_certificate(crypto.FILETYPE_ASN1, leaf)]
    for cert in conn.get_peer_cert_chain() or []:
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)
        if not (len(ders) == 1 and der == ders[0]):
            ders.append(der)
    return ders
