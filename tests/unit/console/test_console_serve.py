"""``serve_console`` on a real loopback socket with TLS, as the console process runs it."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import httpx

from ocgate.console import serve_console
from tests.pki import issue_cert, make_ca
from tests.unit.console._fake import make_harness


async def _scenario(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "ca")
    server_cert = issue_cert(ca, tmp_path, "server", common_name="127.0.0.1", hosts=["127.0.0.1"],
                             eku=None)  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_cert.cert_path, server_cert.key_path)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    harness = make_harness()
    server = await serve_console(harness.client.app, sock, context)
    try:
        assert server.running
        client_context = ssl.create_default_context(cafile=str(ca.cert_path))
        base = f"https://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, verify=client_context) as http:
            login = await http.get("/login")
            assert login.status_code == 200
            assert "uvicorn" not in login.headers.get("server", "")
            token = http.cookies["__Host-ocgate-csrf"]
            response = await http.post(
                "/api/v1/login",
                json={"username": "root", "password": "correct horse battery", "otp": "123456"},
                headers={"X-CSRF-Token": token},
            )
            assert response.status_code == 200
            # The Secure cookie travels over TLS; the app sees https.
            assert (await http.get("/api/v1/sessions")).json()["users"][0]["id"] == 7
        plain = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=plain) as http:
            try:
                await http.get("/login")
                raise AssertionError("plain HTTP was answered")
            except httpx.HTTPError:
                pass
    finally:
        await server.close()
        sock.close()
    assert not server.running


def test_serve_console_over_tls(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), timeout=30))
