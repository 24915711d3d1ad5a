"""The DTLS collector's certificate, key and CA files, loaded into a pyOpenSSL context.

The configuration check (:func:`check_dtls_credentials`) and the listener
(:func:`ocgate.nvm._listeners.make_dtls_context`) load the files the same way, so a file that
passes the check at start-up is one the listener can use. Each failure names the key of the file
that failed (``nvm-dtls-cert``, ``nvm-dtls-key`` or ``nvm-dtls-ca``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from OpenSSL import SSL

from ocgate.errors import ConfigError

__all__ = ["check_dtls_credentials", "load_dtls_credentials"]

_PEM: Final = "a PEM file readable by the collector"


def _reason(exc: SSL.Error) -> str:
    """OpenSSL's reason strings (``no start line``), not its nested tuples."""
    errors = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    reasons = [str(item[2]) for item in errors if isinstance(item, tuple) and len(item) == 3]
    return "; ".join(dict.fromkeys(r for r in reasons if r)) or "OpenSSL refused it"


def _load(key: str, what: str, path: str, load: Callable[[str], object]) -> None:
    try:
        with open(path, "rb"):
            pass
        load(path)
    except OSError as exc:
        message = f"cannot read the DTLS {what} {path}: {exc.strerror or exc}"
        raise ConfigError(message, key=key, expected=_PEM) from None
    except SSL.Error as exc:
        message = f"cannot use the DTLS {what} {path}: {_reason(exc)}"
        raise ConfigError(message, key=key, expected=_PEM) from None


def load_dtls_credentials(ctx: SSL.Context, cert: str, key: str, ca: str | None) -> None:
    """Load the certificate chain, its private key and (for mutual DTLS) the CA bundle.

    :raises ConfigError: an unreadable or unusable file, or a key that does not match the
        certificate; ``key`` names the configuration key of the file.
    """
    _load("nvm-dtls-cert", "certificate", cert, ctx.use_certificate_chain_file)
    _load("nvm-dtls-key", "private key", key, ctx.use_privatekey_file)
    try:
        ctx.check_privatekey()
    except SSL.Error:
        raise ConfigError(
            f"the DTLS private key {key} does not match the DTLS certificate {cert}",
            key="nvm-dtls-key",
            expected="the key of the nvm-dtls-cert certificate",
        ) from None
    if ca is not None:
        _load("nvm-dtls-ca", "CA bundle", ca, ctx.load_verify_locations)


def check_dtls_credentials(cert: str, key: str, ca: str | None) -> None:
    """Load the files into a throw-away DTLS server context (the configuration check).

    :raises ConfigError: as :func:`load_dtls_credentials`.
    """
    load_dtls_credentials(SSL.Context(SSL.DTLS_SERVER_METHOD), cert, key, ca)
