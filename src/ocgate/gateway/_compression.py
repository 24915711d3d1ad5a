"""Which compression each channel of a tunnel gets (pure; anyconnect-protocol.md §10).

ocserv (``src/worker-http.c``, ``src/worker-vpn.c``): with ``compression = true`` each channel
gets the first method of ``compression-algo-priority`` that the client's
``X-CSTP-Accept-Encoding`` / ``X-DTLS-Accept-Encoding`` lists; the reply names it in
``X-CSTP-Content-Encoding`` / ``X-DTLS-Content-Encoding`` (:func:`compression_headers`).
"""

from __future__ import annotations

from collections.abc import Mapping

from ocgate.compress import PRIORITY_NAMES, Channel, CompressionMethod, negotiate_compression
from ocgate.config import Config

__all__ = ["compression_headers", "negotiated_compression"]


def negotiated_compression(
    config: Config, headers: Mapping[str, str], *, dtls: bool
) -> tuple[CompressionMethod | None, CompressionMethod | None]:
    """(CSTP method, DTLS method) for a CONNECT with these (lower-cased) request headers.

    :param dtls: the client gets DTLS (no DTLS method otherwise).
    """
    if not config.compression:
        return None, None
    priority = [PRIORITY_NAMES[name] for name in config.compression_algo_priority]
    cstp = negotiate_compression(headers.get("x-cstp-accept-encoding"), priority, Channel.CSTP)
    dtls_method = None
    if dtls:
        offer = headers.get("x-dtls-accept-encoding")
        dtls_method = negotiate_compression(offer, priority, Channel.DTLS)
    return cstp, dtls_method


def compression_headers(
    cstp: CompressionMethod | None, dtls: CompressionMethod | None
) -> list[tuple[str, str]]:
    """The ``*-Content-Encoding`` reply headers for the chosen methods."""
    headers: list[tuple[str, str]] = []
    if dtls is not None:
        headers.append(("X-DTLS-Content-Encoding", dtls.value))
    if cstp is not None:
        headers.append(("X-CSTP-Content-Encoding", cstp.value))
    return headers
