"""Acceptance: password + one-time password with the real openconnect (``plain[passwd,otp]``).

openconnect answers the ``<auth id="challenge">`` form with ``secondary_password`` from its soft
token (``--token-mode=totp|hotp``); without a token mode it reads the code as the next stdin line.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest

from ._netns import SERVER_ADDR, NetnsPair
from ._openconnect import OpenConnectRunner
from ._rawclient import (
    AGGAUTH_HEADERS,
    Conn,
    LoginFailed,
    aggauth_login,
    answer_form,
    connect_tunnel,
    init_xml,
    open_conn,
)
from ._server import DEFAULT_USERS, Server, ServerKind, StartServer, User, server_kind

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(180),
    pytest.mark.skipif(server_kind() is ServerKind.OCSERV, reason="ocgate's OTP set-up"),
]

TOTP_KEY = bytes(range(1, 21))
HOTP_KEY = bytes(range(21, 41))
USERS = (*DEFAULT_USERS, User("dave", "davepass"))
_OCGATE = Path(sys.executable).parent / "ocgate"


def _b32(key: bytes) -> str:
    return base64.b32encode(key).decode().rstrip("=")


def _start(start_gateway: StartServer, tmp_path: Path) -> Server:
    otp = tmp_path / "users.oath"
    lines = f"HOTP/T30 alice - {TOTP_KEY.hex()}\nHOTP bob - {HOTP_KEY.hex()} 0\n"
    otp.write_text((otp.read_text() if otp.exists() else "") + lines)
    passwd = tmp_path / "server0" / "ocpasswd"
    return start_gateway({"auth": f'"plain[passwd={passwd},otp={otp}]"'}, users=USERS)


def _login(
    openconnect: OpenConnectRunner, server: Server, user: str, stdin: str, extra: list[str]
) -> tuple[int, str]:
    result = openconnect.authenticate(
        server, user=user, stdin=stdin, mode="--cookieonly", extra=extra
    )
    return result.returncode, result.describe()


def test_totp_soft_token_logs_in(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server = _start(start_gateway, tmp_path)
    token = ["--token-mode=totp", f"--token-secret=base32:{_b32(TOTP_KEY)}"]
    code, text = _login(openconnect, server, "alice", "alicepass\n", token)
    assert code == 0, f"{text}\n{server.describe()}"


def test_hotp_soft_token_logs_in(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server = _start(start_gateway, tmp_path)
    token = ["--token-mode=hotp", f"--token-secret=base32:{_b32(HOTP_KEY)},0"]
    code, text = _login(openconnect, server, "bob", "bobpass\n", token)
    assert code == 0, f"{text}\n{server.describe()}"


def test_wrong_code_fails(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server = _start(start_gateway, tmp_path)
    token = ["--token-mode=totp", f"--token-secret=base32:{_b32(b'wrong-secret-123456!')}"]
    code, text = _login(openconnect, server, "alice", "alicepass\n", token)
    assert code != 0, text
    server.wait_log(r"login-failed user='alice'.*OTP: wrong code", timeout=10)


def test_wrong_password_never_reaches_the_otp_step(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server = _start(start_gateway, tmp_path)
    token = ["--token-mode=totp", f"--token-secret=base32:{_b32(TOTP_KEY)}"]
    code, text = _login(openconnect, server, "alice", "wrong\n", token)
    assert code != 0, text
    server.wait_log(r"login-failed user='alice'.*wrong password", timeout=10)


def test_replayed_totp_code_fails(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server = _start(start_gateway, tmp_path)
    code_now = pyotp.TOTP(_b32(TOTP_KEY)).now()
    first, text = _login(openconnect, server, "alice", f"alicepass\n{code_now}\n", [])
    assert first == 0, f"{text}\n{server.describe()}"
    second, text = _login(openconnect, server, "alice", f"alicepass\n{code_now}\n", [])
    assert second != 0, text
    server.wait_log(r"login-failed user='alice'.*OTP: (replayed|wrong)", timeout=10)


def test_user_without_otp_entry_is_refused(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    server = _start(start_gateway, tmp_path)
    code, text = _login(openconnect, server, "dave", "davepass\n123456\n", [])
    assert code != 0, text
    server.wait_log(r"login-failed user='dave'.*OTP: unknown user", timeout=10)


def test_enrolled_user_logs_in_with_the_printed_uri(
    start_gateway: StartServer, openconnect: OpenConnectRunner, tmp_path: Path
) -> None:
    otp = tmp_path / "users.oath"
    out = subprocess.run(
        [str(_OCGATE), "otp", "enroll", "dave", "-f", str(otp)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    match = re.search(r"^(otpauth://\S+)$", out, re.MULTILINE)
    assert match, out
    server = _start(start_gateway, tmp_path)
    code_now = pyotp.parse_uri(match.group(1)).now()
    code, text = _login(openconnect, server, "dave", f"davepass\n{code_now}\n", [])
    assert code == 0, f"{text}\n{server.describe()}"


# Issue 13 §5: the rounds of one login may come on several TLS connections -----------------------


def _new_connection(netns_pair: NetnsPair, server: Server) -> Callable[[], Conn]:
    return lambda: open_conn(netns_pair.client, SERVER_ADDR, 443, pin=server.pin)


def test_each_login_round_on_a_new_connection_completes_password_and_otp(
    start_gateway: StartServer, netns_pair: NetnsPair, tmp_path: Path
) -> None:
    # The password and the OTP go on two TLS connections: the webvpncontext cookie that the
    # OTP form carried ties them together, and the session works.
    server = _start(start_gateway, tmp_path)
    connect = _new_connection(netns_pair, server)
    code = pyotp.TOTP(_b32(TOTP_KEY)).now()
    cookie = aggauth_login(connect(), server.url, "alice", ["alicepass", code], reconnect=connect)
    tunnel = connect()
    response = connect_tunnel(tunnel, cookie)
    tunnel.close()
    assert response is not None, server.describe()
    assert response.status == 200, server.describe()


def test_the_try_limit_holds_across_connections(
    start_gateway: StartServer, netns_pair: NetnsPair, tmp_path: Path
) -> None:
    server = _start(start_gateway, tmp_path)
    connect = _new_connection(netns_pair, server)
    wrong = ["alicepass", "000000", "000001", "000002", "000003"]
    with pytest.raises(LoginFailed, match="401"):
        aggauth_login(connect(), server.url, "alice", wrong, reconnect=connect)
    assert server.log_text().count("event=login-failed user='alice'") == 3, server.describe()


def test_a_context_cookie_from_another_address_starts_over(
    start_gateway: StartServer, netns_pair: NetnsPair, tmp_path: Path
) -> None:
    # The token is bound to the client address: presented from elsewhere it names nothing, and
    # the answer to the OTP form gets no session.
    server = _start(start_gateway, tmp_path)
    first = open_conn(netns_pair.client, SERVER_ADDR, 443, pin=server.pin)
    form = first.request("POST", "/", headers=AGGAUTH_HEADERS, body=init_xml(server.url))
    assert form is not None
    assert form.status == 200
    reply = answer_form(form.body, "alice", "alicepass")
    otp_form = first.request("POST", "/", headers=AGGAUTH_HEADERS, body=reply)
    assert otp_form is not None
    assert b'id="challenge"' in otp_form.body, server.describe()
    token = otp_form.set_cookies()["webvpncontext"]
    first.close()
    # From the gateway's own namespace: another source address.
    other = open_conn(netns_pair.server, SERVER_ADDR, 443, pin=server.pin)
    code = pyotp.TOTP(_b32(TOTP_KEY)).now()
    headers = [*AGGAUTH_HEADERS, ("Cookie", f"webvpncontext={token}")]
    answer = other.request("POST", "/", headers=headers, body=answer_form(otp_form.body, "", code))
    other.close()
    assert answer is not None
    assert b'id="success"' not in answer.body
    assert b"session-token" not in answer.body
