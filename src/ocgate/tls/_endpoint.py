"""TLS server contexts and a transport-free TLS endpoint over OpenSSL memory BIOs.

The endpoint takes ciphertext in and gives plaintext out (and the reverse) without touching a
socket, so the adapters stay thin and the CSTP rule "one frame per TLS record" is under our control:
every :meth:`TlsEndpoint.send` call with less than 16 KiB becomes exactly one record.

pyOpenSSL is used rather than the stdlib ``ssl`` module because the PSK-DTLS mode derives its key
from
the RFC 5705 exporter of this TLS session (:meth:`TlsEndpoint.export_keying_material`), which
``ssl`` lacks.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from ocgate.errors import ConfigError, RemoteProtocolError
from ocgate.tls._priorities import TlsPolicy
from ocgate.tls._records import RecordIO

__all__ = ["ServerCredentials", "TlsEndpoint", "TlsFailure", "build_server_context"]


class TlsFailure(RemoteProtocolError):
    """The TLS layer failed (handshake refused, bad record, alert from the peer)."""


@dataclass(frozen=True, slots=True)
class ServerCredentials:
    """What clients learn about the server certificate (``complete`` message, pinning)."""

    sha1_hex: str
    """Upper-case hex SHA-1 of the leaf (``<server-cert-hash>``, ``webvpnc`` ``sh:``)."""
    pin_sha256: str
    """``pin-sha256:<base64>`` of the leaf's SPKI, as openconnect's ``--servercert`` takes it."""


def load_credentials(cert_file: str) -> ServerCredentials:
    """Read the leaf certificate of ``cert_file`` and compute its fingerprints."""

    with open(cert_file, "rb") as f:
        leaf = x509.load_pem_x509_certificates(f.read())[0]
    der = leaf.public_bytes(Encoding.DER)
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return ServerCredentials(
        sha1_hex=hashlib.sha1(der).hexdigest().upper(),
        pin_sha256="pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode(),
    )


_FFDHE2048 = (Path(__file__).parent / "ffdhe2048.pem").read_bytes()
"""RFC 7919 group, read at import: a worker builds contexts on reload after giving up the rights
it had to read files (the package directory may be closed to ``run-as-user``). Read as a plain file
next to this module (package data), not through ``importlib.resources``, which would import
``zipfile`` with ``lzma`` and ``bz2`` into every worker (3 MB each)."""


def _load_dh_params(ctx: SSL.Context, pem: bytes) -> None:
    """``SSL.Context.load_tmp_dh`` from memory rather than from a file."""
    bio = _ffi.gc(_lib.BIO_new_mem_buf(pem, len(pem)), _lib.BIO_free)
    dh = _ffi.gc(_lib.PEM_read_bio_DHparams(bio, _ffi.NULL, _ffi.NULL, _ffi.NULL), _lib.DH_free)
    if dh == _ffi.NULL or _lib.SSL_CTX_set_tmp_dh(ctx._context, dh) != 1:
        raise ConfigError("cannot load the built-in FFDHE group", key="tls-priorities")


def build_server_context(
    *, cert_files: tuple[str, ...], key_files: tuple[str, ...], policy: TlsPolicy
) -> SSL.Context:
    """A server context for TLS 1.2/1.3 following ``policy``; the first cert/key pair is served.

    :raises ConfigError: a certificate or key cannot be loaded or they do not match.
    """
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION if policy.tls12 else SSL.TLS1_3_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION if policy.tls13 else SSL.TLS1_2_VERSION)
    # Clients renegotiate for "rekey-method ssl"; ocgate advertises new-tunnel instead and refuses
    # renegotiation, which openconnect answers with a cookie reconnect.
    ctx.set_options(
        SSL.OP_CIPHER_SERVER_PREFERENCE
        | SSL.OP_NO_COMPRESSION
        | SSL.OP_NO_RENEGOTIATION
        | SSL.OP_SINGLE_ECDH_USE
        | SSL.OP_SINGLE_DH_USE
    )
    # An idle connection gives its record buffers back (about 34 KiB each): a thousand quiet
    # tunnels then cost a thousand SSL objects, not a thousand sets of buffers.
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    if policy.tls12_ciphers:
        ctx.set_cipher_list(policy.tls12_ciphers.encode())
    if policy.tls13_ciphersuites:
        ctx.set_tls13_ciphersuites(policy.tls13_ciphersuites.encode())
    if _lib.SSL_CTX_set1_curves_list(ctx._context, policy.groups.encode()) != 1:
        raise ConfigError(
            f"unsupported key-exchange groups {policy.groups!r}", key="tls-priorities"
        )
    _load_dh_params(ctx, _FFDHE2048)
    ctx.set_session_id(b"ocgate")
    for cert_file, key_file in zip(cert_files[:1], key_files[:1], strict=True):
        try:
            ctx.use_certificate_chain_file(cert_file)
            ctx.use_privatekey_file(key_file)
            ctx.check_privatekey()
        except SSL.Error as exc:
            raise ConfigError(
                f"cannot use certificate {cert_file!r} with key {key_file!r}: {exc}",
                key="server-cert",
                expected="a PEM certificate (chain) and its matching PEM private key",
            ) from exc
    return ctx


class TlsEndpoint:
    """The server side of one TLS connection, fed with bytes, never touching a socket."""

    __slots__ = ("_conn", "_io", "closed", "handshake_complete")

    def __init__(self, context: SSL.Context) -> None:
        self._conn = SSL.Connection(context, None)
        self._conn.set_accept_state()
        self._io = RecordIO(self._conn)
        self.handshake_complete = False
        self.closed = False

    def receive_data(self, data: bytes) -> bytes:
        """Feed ciphertext; return the plaintext it completes (possibly empty).

        :raises TlsFailure: the handshake failed or a record is bad; flush :meth:`data_to_send` (it
        may
            hold an alert) and close.
        """
        conn = self._conn
        if data:
            self._io.feed(data)
        else:
            self.closed = True
            return b""
        try:
            if not self.handshake_complete:
                try:
                    conn.do_handshake()
                except SSL.WantReadError:
                    return b""
                self.handshake_complete = True
            plaintext, closed = self._io.read()
            if closed:
                self.closed = True
            return plaintext
        except SSL.Error as exc:
            raise TlsFailure(f"TLS error: {exc}") from exc

    def send(self, data: bytes) -> None:
        """Encrypt ``data``; a call with fewer than 16 KiB is exactly one TLS record."""
        try:
            self._io.write(data)
        except SSL.Error as exc:
            raise TlsFailure(f"TLS error while sending: {exc}") from exc

    def data_to_send(self) -> bytes:
        """Ciphertext waiting to go to the peer."""
        return self._io.drain()

    def shutdown(self) -> None:
        """Queue a close_notify alert."""
        with contextlib.suppress(SSL.Error):
            self._conn.shutdown()

    def cipher_name(self) -> str:
        """The OpenSSL name of the negotiated cipher (``ECDHE-RSA-AES256-GCM-SHA384``)."""
        return self._conn.get_cipher_name() or ""

    def cipher_description(self) -> str:
        """GnuTLS-style session description, e.g. ``(TLS1.3)-(AES-256-GCM)``, for logs and occtl."""
        version = self._conn.get_protocol_version_name().replace("v", "")
        name = self._conn.get_cipher_name() or "unknown"
        return f"({version})-({name})"

    def peer_certificates(self) -> list[bytes]:
        """The client's certificate chain (DER, leaf first; empty when it sent none)."""
        from ocgate.certauth import peer_chain_der  # Late import: certauth builds on config.

        return peer_chain_der(self._conn)

    def export_keying_material(
        self, label: bytes, length: int, context: bytes | None = None
    ) -> bytes:
        """RFC 5705 / RFC 8446 §7.5 exporter of this session (used for the PSK-DTLS key)."""
        return self._conn.export_keying_material(label, length, context)
