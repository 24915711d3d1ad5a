"""What every coverage-guided fuzz target shares: the input format, the repo paths, the entry point.

Theory of operation.

* A target is a script ``fuzz_<name>.py`` in this directory. It imports the code under test inside
  ``atheris.instrument_imports()`` (so only ``ocgate``, and a few parsers it relies on, carry
  coverage feedback), defines ``test_one_input(data)`` and ``seeds()``, and calls :func:`main`.
* The contract of each target is the subsystem's: ``test_one_input`` catches exactly the decode
  error the code under test may raise (see ``ocgate/errors.py``) and lets everything else
  escape. An escaping exception, a failed ``assert`` (the targets check invariants and round trips
  too), a hang past ``-timeout`` or memory past ``-rss_limit_mb`` is a finding: libFuzzer stops and
  writes the input to ``<artifact_prefix>crash-<sha1>``.
* Stateful targets read their input as a sequence of operations, :func:`ops`: one tag byte, a
  16-bit big-endian length and that many bytes, repeated (a truncated last operation keeps what is
  there). Seeds are written with :func:`op`, so ``fuzz/make_corpus.py`` can turn real captures
  into inputs the target understands. Stateless targets take the bytes as they are, sometimes
  after a selector byte.
* This module must not import ``ocgate``: a module imported before the target's
  ``instrument_imports()`` block would carry no coverage feedback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository (so targets can import ``tests.*`` helpers and read ``tests/vectors``)."""
VECTORS = ROOT / "tests" / "vectors"
MAX_OPS = 64
"""Operations read from one input at most (bounds the time one input can take)."""

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# Log lines about refused peers are the expected outcome of most inputs; they would only slow the
# targets down and bury libFuzzer's output.
logging.disable(logging.CRITICAL)


def op(tag: int, payload: bytes = b"") -> bytes:
    """One operation of a stateful target's input (the inverse of :func:`ops`)."""
    return bytes((tag & 0xFF,)) + min(len(payload), 0xFFFF).to_bytes(2, "big") + payload[:0xFFFF]


def ops(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Split an input into ``(tag, payload)`` operations, at most :data:`MAX_OPS` of them."""
    pos = 0
    for _ in range(MAX_OPS):
        if pos >= len(data):
            return
        tag = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 3], "big")
        yield tag, data[pos + 3 : pos + 3 + size]
        pos += 3 + size


def number(payload: bytes, default: int = 0) -> int:
    """An unsigned big-endian integer from up to 8 bytes of ``payload`` (``default`` if empty)."""
    return int.from_bytes(payload[:8], "big") if payload else default


def hex_vector(path: Path) -> bytes:
    """A whitespace-separated hex vector file (``tests/vectors/*/*.hex``)."""
    return bytes.fromhex("".join(path.read_text().split()))


def post(body: bytes, *, xml: bool = True, path: bytes = b"/") -> bytes:
    """A POST with openconnect 9.01's request headers (anyconnect-protocol.md §2.2)."""
    headers = [
        b"Host: vpn.example.com",
        b"User-Agent: Open AnyConnect VPN Agent v9.01-3",
        b"Accept: */*",
        b"Accept-Encoding: identity",
        b"X-Transcend-Version: 1",
        *([b"X-Aggregate-Auth: 1"] if xml else []),
        b"X-Support-HTTP-Auth: true",
        b"Content-Type: " + (b"application/xml" if xml else b"application/x-www-form-urlencoded"),
        b"Content-Length: " + str(len(body)).encode(),
    ]
    return b"POST " + path + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body


def http_requests(stream: bytes) -> list[bytes]:
    """Cut a captured client stream into its requests (heads, and bodies by Content-Length)."""
    requests: list[bytes] = []
    while stream:
        head, sep, rest = stream.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        requests.append(head + sep + rest[:length])
        stream = rest[length:]
    return requests


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Run libFuzzer over ``test_one_input`` with the command line's flags and corpus dirs."""
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
