"""Rekeying against real TLS clients over a loopback socket (no root needed).

* TLS 1.2: ``gnutls-cli --rehandshake`` renegotiates right after its handshake, as openconnect 9.01
  (GnuTLS) does at ``X-CSTP-Rekey-Time`` with ``X-CSTP-Rekey-Method: ssl`` (``gnutls_handshake`` on
  the live session). A client that offers RFC 5746 is served; one with
  ``%DISABLE_SAFE_RENEGOTIATION`` (no ``renegotiation_info``, no SCSV) is refused, and the server
  knows not to tell it ``ssl``.
* TLS 1.3: openconnect's GnuTLS turns that rehandshake into a KeyUpdate asking for ours
  (``gnutls_session_key_update(GNUTLS_KU_PEER)``); ``openssl s_client``'s ``K`` command sends the
  same message, and ``-msg`` shows the KeyUpdate the server sends back.

Each test skips when its tool is missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ocgate.tls import TlsEndpoint, TlsFailure, build_server_context, translate_priorities
from tests.unit.tls.test_tls_endpoint import _write_pair


class _Server(threading.Thread):
    """One TLS connection on 127.0.0.1 around a :class:`TlsEndpoint`."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(daemon=True)
        cert, key = _write_pair(tmp_path)
        ctx = build_server_context(
            cert_files=(cert,),
            key_files=(key,),
            policy=translate_priorities(None),
            renegotiation=True,
        )
        self.endpoint = TlsEndpoint(ctx)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.failure: str | None = None

    def run(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                try:
                    plaintext = self.endpoint.receive_data(data, 0.0)
                    if plaintext:
                        self.endpoint.send(b"echo:" + plaintext)
                except TlsFailure as exc:
                    self.failure = str(exc)
                finally:
                    out = self.endpoint.data_to_send()
                    if out:
                        conn.sendall(out)
                if not data or self.failure:
                    return


def _rehandshake(tmp_path: Path, priority: str) -> tuple[str, _Server]:
    gnutls_cli = shutil.which("gnutls-cli")
    if gnutls_cli is None:
        pytest.skip("gnutls-cli (gnutls-bin) is needed")
    server = _Server(tmp_path)
    server.start()
    argv = [gnutls_cli, "--insecure", "--rehandshake", f"--priority={priority}",
            "-p", str(server.port), "127.0.0.1"]  # fmt: skip
    result = subprocess.run(argv, input="", capture_output=True, text=True, timeout=30)
    server.listener.close()
    server.join(timeout=10)
    return result.stdout + result.stderr, server


def test_gnutls_secure_renegotiation_completes(tmp_path: Path) -> None:
    output, server = _rehandshake(tmp_path, "NORMAL:-VERS-TLS1.3")
    assert "ReHandshake was completed" in output, output
    assert server.endpoint.secure_renegotiation
    assert server.endpoint.renegotiations == 1
    assert server.failure is None


def test_gnutls_insecure_renegotiation_is_refused(tmp_path: Path) -> None:
    output, server = _rehandshake(tmp_path, "NORMAL:-VERS-TLS1.3:%DISABLE_SAFE_RENEGOTIATION")
    assert "ReHandshake was completed" not in output, output
    assert "ReHandshake has failed" in output, output
    assert not server.endpoint.secure_renegotiation  # So CONNECT would say new-tunnel.
    assert server.endpoint.renegotiations == 0


def test_tls13_keyupdate_is_answered_with_ours(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl (the command) is needed")
    server = _Server(tmp_path)
    server.start()
    argv = [openssl, "s_client", "-tls1_3", "-msg", "-connect", f"127.0.0.1:{server.port}"]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        assert proc.stdin is not None
        for line in (b"before\n", b"K\n", b"after\n"):  # K: KeyUpdate, update_requested
            time.sleep(0.5)
            proc.stdin.write(line)
            proc.stdin.flush()
        time.sleep(0.5)
        output = proc.communicate(timeout=10)[0].decode(errors="replace")
    server.listener.close()
    server.join(timeout=10)
    lines = output.splitlines()
    sent = lines.index(">>> TLS 1.3, Handshake [length 0005], KeyUpdate")
    answered = lines.index("<<< TLS 1.3, Handshake [length 0005], KeyUpdate")
    assert sent < answered < lines.index("echo:after"), output
    assert "echo:before" in lines
    assert server.failure is None
