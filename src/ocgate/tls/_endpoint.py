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

_OP_ALLOW_CLIENT_RENEGOTIATION = 1 << 8
"""``SSL_OP_ALLOW_CLIENT_RENEGOTIATION`` (OpenSSL >= 3.0, ``ssl.h``; not exported by pyOpenSSL).
Without it OpenSSL refuses every client-initiated renegotiation with a ``no_renegotiation``
alert."""
_HOLD_LIMIT = 1024
"""Records :meth:`TlsEndpoint.send` holds while a renegotiation runs (a client that starts one and
never finishes it must not make the worker queue without bound)."""
_HELLO_LIMIT = 16384
"""Bytes of the client's first flight kept to look for ``renegotiation_info`` in its hello."""
_BIO_KEEP = 128 * 1024
"""Fed or drained at once beyond this, the memory BIOs are replaced afterwards
(:meth:`RecordIO.fresh_bios`): a burst must not stay allocated with the connection. Below it,
replacing them would cost more than it saves (TUN batches of the data path stay under it)."""
_TLS_HANDSHAKE = 22
_CLIENT_HELLO = 1
_RENEGOTIATION_INFO = 0xFF01
_RENEGOTIATION_SCSV = 0x00FF


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


def offers_secure_renegotiation_untrusted(flight: bytes) -> bool:
    """Whether the ClientHello at the start of ``flight`` offers RFC 5746 secure renegotiation.

    ``flight`` is what the client sent first (TLS records, the hello possibly split over several).
    OpenSSL keeps this fact to itself (``SSL_get_secure_renegotiation_support`` is a macro over
    ``SSL_ctrl``, which pyOpenSSL does not bind), so the hello is read again here. Anything that
    does not parse as a ClientHello is "no", the safe answer (the client is then told
    ``new-tunnel``).
    """
    handshake = bytearray()
    pos = 0
    while pos + 5 <= len(flight) and flight[pos] == _TLS_HANDSHAKE:
        length = int.from_bytes(flight[pos + 3 : pos + 5], "big")
        handshake += flight[pos + 5 : pos + 5 + length]
        pos += 5 + length
    if len(handshake) < 4 or handshake[0] != _CLIENT_HELLO:
        return False
    body = bytes(handshake[4 : 4 + int.from_bytes(handshake[1:4], "big")])
    try:
        at = 2 + 32
        at += 1 + body[at]  # session_id
        suites_len = int.from_bytes(body[at : at + 2], "big")
        suites = body[at + 2 : at + 2 + suites_len]
        if len(suites) != suites_len:
            return False
        for i in range(0, suites_len - 1, 2):
            if int.from_bytes(suites[i : i + 2], "big") == _RENEGOTIATION_SCSV:
                return True
        at += 2 + suites_len
        at += 1 + body[at]  # compression_methods
        end = at + 2 + int.from_bytes(body[at : at + 2], "big")
        at += 2
        while at + 4 <= min(end, len(body)):
            if int.from_bytes(body[at : at + 2], "big") == _RENEGOTIATION_INFO:
                return True
            at += 4 + int.from_bytes(body[at + 2 : at + 4], "big")
    except IndexError:
        return False
    return False


def _load_dh_params(ctx: SSL.Context, pem: bytes) -> None:
    """``SSL.Context.load_tmp_dh`` from memory rather than from a file."""
    bio = _ffi.gc(_lib.BIO_new_mem_buf(pem, len(pem)), _lib.BIO_free)
    dh = _ffi.gc(_lib.PEM_read_bio_DHparams(bio, _ffi.NULL, _ffi.NULL, _ffi.NULL), _lib.DH_free)
    if dh == _ffi.NULL or _lib.SSL_CTX_set_tmp_dh(ctx._context, dh) != 1:
        raise ConfigError("cannot load the built-in FFDHE group", key="tls-priorities")


def build_server_context(
    *,
    cert_files: tuple[str, ...],
    key_files: tuple[str, ...],
    policy: TlsPolicy,
    renegotiation: bool = False,
) -> SSL.Context:
    """A server context for TLS 1.2/1.3 following ``policy``; the first cert/key pair is served.

    ``renegotiation`` (``rekey-method = ssl``) lets TLS 1.2 clients renegotiate; only secure
    renegotiation (RFC 5746): OpenSSL refuses a client that did not offer it unless told otherwise,
    and :class:`TlsEndpoint` enforces the interval. Otherwise every renegotiation is refused.

    :raises ConfigError: a certificate or key cannot be loaded or they do not match.
    """
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION if policy.tls12 else SSL.TLS1_3_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION if policy.tls13 else SSL.TLS1_2_VERSION)
    options = (
        SSL.OP_CIPHER_SERVER_PREFERENCE
        | SSL.OP_NO_COMPRESSION
        | SSL.OP_SINGLE_ECDH_USE
        | SSL.OP_SINGLE_DH_USE
    )
    if renegotiation:
        options |= _OP_ALLOW_CLIENT_RENEGOTIATION
    else:
        options |= SSL.OP_NO_RENEGOTIATION
    ctx.set_options(options)
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
    """The server side of one TLS connection, fed with bytes, never touching a socket.

    Rekeying (``rekey-method``, ocserv ``src/worker-vpn.c`` ``tls_mainloop``): a TLS 1.2 client
    renegotiates on the live connection when the context allows it (``renegotiation`` of
    :func:`build_server_context`); OpenSSL runs that handshake inside :meth:`receive_data` and this
    endpoint only watches it (``SSL_renegotiate_pending``). While it runs OpenSSL cannot encrypt
    application data (``SSL_write`` wants the client's next flight), so :meth:`send` holds the
    records and the completed handshake releases them, in order. A renegotiation that starts
    sooner than :attr:`rekey_interval` after the previous one is refused by closing the connection,
    as ocserv does ("client requested TLS rehandshake too soon"); the first one is always allowed
    (ocserv counts from the last rehandshake, not from the connection). A TLS 1.3 client rekeys with
    KeyUpdate instead (GnuTLS turns openconnect's rehandshake into one that asks for ours), which
    OpenSSL answers on its own with our KeyUpdate before the next record we send.
    """

    __slots__ = (
        "_conn",
        "_first_flight",
        "_fresh_bios",
        "_held",
        "_io",
        "_last_rekey",
        "_renegotiating",
        "closed",
        "handshake_complete",
        "rekey_interval",
        "renegotiations",
        "secure_renegotiation",
    )

    def __init__(self, context: SSL.Context) -> None:
        self._conn = SSL.Connection(context, None)
        self._conn.set_accept_state()
        self._io = RecordIO(self._conn)
        self.handshake_complete = False
        self.closed = False
        self._fresh_bios = False
        """Replace the memory BIOs at the next :meth:`data_to_send` (both are empty then)."""
        self._first_flight = bytearray()
        self._held: list[bytes] = []
        self._renegotiating = False
        self._last_rekey: float | None = None
        self.rekey_interval = 0.0
        """Seconds a renegotiation must wait after the previous one (``rekey-time / 2``)."""
        self.renegotiations = 0
        """Completed renegotiations (TLS 1.2 rekeys)."""
        self.secure_renegotiation = False
        """The client's hello offered RFC 5746 secure renegotiation (``renegotiation_info`` or
        its SCSV): only then may it be told to rekey with ``ssl`` (ocserv
        ``gnutls_safe_renegotiation_status``)."""

    def receive_data(self, data: bytes, now: float = 0.0) -> bytes:
        """Feed ciphertext received at ``now``; return the plaintext it completes (maybe empty).

        :raises TlsFailure: the handshake failed, a record is bad or a renegotiation came too soon;
            flush :meth:`data_to_send` (it may hold an alert) and close.
        """
        conn = self._conn
        if data:
            self._io.feed(data)
            if len(data) > _BIO_KEEP:
                self._fresh_bios = True
        else:
            self.closed = True
            return b""
        try:
            if not self.handshake_complete:
                if len(self._first_flight) < _HELLO_LIMIT:
                    self._first_flight += data[: _HELLO_LIMIT - len(self._first_flight)]
                try:
                    conn.do_handshake()
                except SSL.WantReadError:
                    return b""
                self.handshake_complete = True
                self._fresh_bios = True  # The handshake's flights leave with their buffers.
                self.secure_renegotiation = offers_secure_renegotiation_untrusted(
                    bytes(self._first_flight)
                )
                self._first_flight = bytearray()
            plaintext, closed = self._io.read()
            if closed:
                self.closed = True
            if self._renegotiating or conn.renegotiate_pending():
                self._watch_renegotiation(now)
            return plaintext
        except SSL.Error as exc:
            raise TlsFailure(f"TLS error: {exc}") from exc

    def _watch_renegotiation(self, now: float) -> None:
        if self._conn.renegotiate_pending():
            if self._renegotiating:
                return
            last = self._last_rekey
            if last is not None and now - last < self.rekey_interval:
                self.data_to_send()  # Our half of the refused handshake never leaves.
                raise TlsFailure("client requested TLS rehandshake too soon")
            self._renegotiating = True
            return
        self._renegotiating = False
        self._last_rekey = now
        self.renegotiations += 1
        held, self._held = self._held, []
        for record in held:
            self.send(record)

    def send(self, data: bytes) -> None:
        """Encrypt ``data``; a call with fewer than 16 KiB is exactly one TLS record.

        During a renegotiation the record is held (up to :data:`_HOLD_LIMIT` records; later ones
        are dropped, as a full queue drops packets) and sent when the handshake completes.
        """
        if self._renegotiating:
            if len(self._held) < _HOLD_LIMIT:
                self._held.append(data)
            return
        try:
            self._io.write(data)
        except SSL.Error as exc:
            raise TlsFailure(f"TLS error while sending: {exc}") from exc

    def data_to_send(self) -> bytes:
        """Ciphertext waiting to go to the peer."""
        out = self._io.drain()
        if self._fresh_bios or len(out) > _BIO_KEEP:
            self._fresh_bios = False
            self._io.fresh_bios()
        return out

    def handles(self) -> tuple[int, int, int]:
        """The addresses of the SSL object and its read and write memory BIOs, for a driver in C
        that calls this same OpenSSL (``ocgate.daemon._offload``); valid while :meth:`quiescent`
        holds and nothing here is called but the read-only queries."""
        return self._io.handles()

    def quiescent(self) -> bool:
        """Established, not renegotiating, nothing held back, nothing buffered in either BIO or as
        plaintext: the connection continues at a record boundary in both directions."""
        return (
            self.handshake_complete
            and not self.closed
            and not self._renegotiating
            and not self._held
            and not self._conn.renegotiate_pending()
            and not self.peer_closed()
            and self._io.buffered() == 0
        )

    def peer_closed(self) -> bool:
        """The client's close_notify was read (by this endpoint or by a driver in C)."""
        return self.closed or bool(self._conn.get_shutdown() & SSL.RECEIVED_SHUTDOWN)

    def shutdown(self) -> None:
        """Queue a close_notify alert."""
        with contextlib.suppress(SSL.Error):
            self._conn.shutdown()

    def server_name(self) -> bytes | None:
        """The server name the client sent (SNI), as it sent it; ``None`` if it sent none."""
        name = self._conn.get_servername()
        return name if isinstance(name, bytes) else None

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

    def peer_finished(self) -> bytes:
        """The client's ``Finished`` verify_data of this connection (STRAP binds to it)."""
        return self._conn.get_peer_finished() or b""

    def export_keying_material(
        self, label: bytes, length: int, context: bytes | None = None
    ) -> bytes:
        """RFC 5705 / RFC 8446 §7.5 exporter of this session (used for the PSK-DTLS key)."""
        return self._conn.export_keying_material(label, length, context)
