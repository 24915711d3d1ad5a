"""The login dialogs of the authentication service (``daemon/_auth_logins.py``), through the
messages a worker sends (``LoginRequest``, ``ConnectionGone``) and its exit.

* a worker holds at most ``MAX_DIALOGS_PER_WORKER`` dialogs: one more connection is answered 503
  and closed, while another worker's connections are not counted against it;
* the count follows every way a dialog goes: its connection closing, its login resumed on a new
  connection (the dialog leaves the old one, even across workers), its worker exiting, and the
  dialog closing the connection itself;
* a login that ends forgets its ``webvpncontext``: a new connection presenting the token starts a
  new login, and ``show sessions all`` no longer lists it.

The dialog's own rounds are ``tests/unit/gateway/test_login_dialog.py``, the context table's
rules ``tests/unit/gateway/test_contexts.py``; ``tests/interop/test_auth_otp.py`` resumes a login
on a new connection with openconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config
from ocgate.daemon import _auth_logins
from ocgate.daemon._auth import AuthService
from ocgate.gateway import CONTEXT_COOKIE
from ocgate.http import Request
from ocgate.ipc import messages as m
from tests.unit.gateway.conftest import make_config_text

REMOTE = "198.18.0.2"
INIT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init" '
    b'aggregate-auth-version="2"><version who="vpn">v9.01-3</version>'
    b"<device-id>linux-64</device-id>"
    b"<group-access>https://198.18.0.1/</group-access></config-auth>"
)


def _reply(password: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-reply" '
        'aggregate-auth-version="2"><version who="vpn">v9.01-3</version>'
        "<device-id>linux-64</device-id>"
        f"<auth><username>alice</username><password>{password}</password></auth></config-auth>"
    ).encode()


def _post(body: bytes, context: str | None = None) -> Request:
    headers: tuple[tuple[str, str], ...] = (
        ("host", "vpn"),
        ("user-agent", "Open AnyConnect VPN Agent v9.01-3"),
        ("x-aggregate-auth", "1"),
    )
    if context is not None:
        headers += (("cookie", f"{CONTEXT_COOKIE}={context}"),)
    return Request(method="POST", target="/", headers=headers, body=body, http_version="1.1")


def _context(reply: m.LoginResponse) -> str:
    for name, value in reply.headers:
        if name == "Set-Cookie" and value.startswith(f"{CONTEXT_COOKIE}="):
            return value.split("=", 1)[1].split(";", 1)[0]
    raise AssertionError("no webvpncontext cookie")


@pytest.fixture
def config(config_dir: Path) -> Config:
    return parse_config(make_config_text(config_dir), source=str(config_dir / "ocserv.conf"))


@pytest.fixture
def two_per_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_auth_logins, "MAX_DIALOGS_PER_WORKER", 2)


Scenario = Callable[[AuthService], Awaitable[None]]


def _run(config: Config, tmp_path: Path, scenario: Scenario) -> None:
    """``scenario`` with a service of its own, inside one event loop (as sec-mod runs)."""

    async def main() -> None:
        service = AuthService(config, store_path=str(tmp_path / "sessions.sqlite"))
        try:
            await scenario(service)
        finally:
            await service.close()

    asyncio.run(main())


async def _ask(service: AuthService, worker: int, conn: int, request: Request) -> m.LoginResponse:
    msg = m.LoginRequest(conn=conn, request=request, remote=REMOTE, local="198.18.0.1")
    reply = await service._from_worker(worker, msg)
    assert isinstance(reply, m.LoginResponse)
    return reply


async def _gone(service: AuthService, worker: int, conn: int) -> None:
    assert await service._from_worker(worker, m.ConnectionGone(conn=conn)) is None


def _counts(service: AuthService, *workers: int) -> list[int]:
    return [service._logins.count(worker) for worker in workers]


def _under_way(service: AuthService) -> list[str]:
    """The states of the logins under way ``show sessions all`` lists (not the sessions)."""
    return [s.state for s in service.sessions_reply().sessions if s.state != "authenticated"]


@pytest.mark.usefixtures("two_per_worker")
def test_a_worker_beyond_its_bound_is_answered_503(config: Config, tmp_path: Path) -> None:
    async def scenario(service: AuthService) -> None:
        for conn in (1, 2):
            assert (await _ask(service, 0, conn, _post(INIT))).status == 200
        refused = await _ask(service, 0, 3, _post(INIT))
        assert (refused.status, refused.close) == (503, True)
        assert (await _ask(service, 0, 1, _post(INIT))).status == 200  # An open one goes on.
        assert (await _ask(service, 1, 3, _post(INIT))).status == 200  # Another worker's own.
        assert _counts(service, 0, 1) == [2, 1]

    _run(config, tmp_path, scenario)


@pytest.mark.usefixtures("two_per_worker")
def test_a_connection_gone_frees_its_place(config: Config, tmp_path: Path) -> None:
    async def scenario(service: AuthService) -> None:
        for conn in (1, 2):
            await _ask(service, 0, conn, _post(INIT))
        await _gone(service, 0, 1)
        await _gone(service, 0, 1)  # Told twice, or of a connection that never asked: no change.
        await _gone(service, 0, 7)
        await _gone(service, 5, 1)
        assert _counts(service, 0, 5) == [1, 0]
        assert (await _ask(service, 0, 3, _post(INIT))).status == 200
        assert (await _ask(service, 0, 4, _post(INIT))).status == 503
        for conn in (2, 3):
            await _gone(service, 0, conn)
        assert _counts(service, 0) == [0]
        assert _under_way(service) == ["authenticating"] * 3  # Their contexts live on.

    _run(config, tmp_path, scenario)


@pytest.mark.usefixtures("two_per_worker")
def test_a_resumed_login_leaves_its_old_connection(config: Config, tmp_path: Path) -> None:
    async def scenario(service: AuthService) -> None:
        token = _context(await _ask(service, 0, 1, _post(INIT)))
        await _ask(service, 0, 2, _post(_reply("wrong"), token))
        assert _counts(service, 0) == [1]
        assert _under_way(service) == ["auth failed"]  # One login, now on connection 2.
        assert (await _ask(service, 0, 3, _post(INIT))).status == 200  # Connection 1's place.
        assert (await _ask(service, 0, 1, _post(INIT))).status == 503  # A new connection now.
        await _ask(service, 1, 9, _post(_reply("wrong"), token))  # On to another worker.
        assert _counts(service, 0, 1) == [1, 1]
        assert (await _ask(service, 0, 5, _post(INIT))).status == 200
        await _gone(service, 0, 2)  # The login's old connection: already left.
        assert _counts(service, 0, 1) == [2, 1]
        third = await _ask(service, 1, 9, _post(_reply("wrong")))  # Its failures came along.
        assert (third.status, third.close) == (401, True)
        assert _counts(service, 0, 1) == [2, 0]

    _run(config, tmp_path, scenario)


@pytest.mark.usefixtures("two_per_worker")
def test_a_worker_gone_takes_its_dialogs(config: Config, tmp_path: Path) -> None:
    async def scenario(service: AuthService) -> None:
        token = _context(await _ask(service, 0, 1, _post(INIT)))
        for worker, conn in ((0, 2), (1, 1)):
            await _ask(service, worker, conn, _post(INIT))
        service.worker_gone(0)
        service.worker_gone(3)
        assert _counts(service, 0, 1) == [0, 1]
        for conn in (1, 2):  # A restarted worker's connection ids start again.
            assert (await _ask(service, 0, conn, _post(INIT))).status == 200
        assert (await _ask(service, 0, 3, _post(INIT))).status == 503
        assert _counts(service, 0, 1) == [2, 1]
        # The gone worker's login goes on elsewhere; the new connection 1 there keeps its own.
        assert b"Login failed" in (await _ask(service, 1, 2, _post(_reply("x"), token))).body
        assert _counts(service, 0, 1) == [2, 2]
        assert (await _ask(service, 0, 1, _post(_reply("x")))).status == 200
        assert _counts(service, 0, 1) == [2, 2]

    _run(config, tmp_path, scenario)


def test_a_login_the_dialog_closes_drops_it(config: Config, tmp_path: Path) -> None:
    async def scenario(service: AuthService) -> None:
        token = _context(await _ask(service, 0, 1, _post(INIT)))
        for _ in range(2):
            assert (await _ask(service, 0, 1, _post(_reply("wrong")))).status == 200
        last = await _ask(service, 0, 1, _post(_reply("wrong")))
        assert (last.status, last.close) == (401, True)
        assert _counts(service, 0) == [0]
        assert _under_way(service) == []
        again = await _ask(service, 0, 2, _post(_reply("wrong"), token))
        assert (again.status, again.close) == (200, False)  # A new login: no failures yet.
        assert _counts(service, 0) == [1]

    _run(config, tmp_path, scenario)


def test_a_successful_login_is_over(config: Config, tmp_path: Path) -> None:
    async def scenario(service: AuthService) -> None:
        token = _context(await _ask(service, 0, 1, _post(INIT)))
        await _ask(service, 0, 1, _post(_reply("wrong")))
        done = await _ask(service, 0, 1, _post(_reply("alicepass")))
        assert b'<auth id="success">' in done.body
        assert not any(name == "Set-Cookie" and CONTEXT_COOKIE in v for name, v in done.headers)
        assert _under_way(service) == []
        assert [s.username for s in service.sessions_reply().sessions] == ["alice"]
        assert _counts(service, 0) == [1]  # Until its connection goes.
        await _gone(service, 0, 1)
        assert _counts(service, 0) == [0]
        fresh = await _ask(service, 0, 2, _post(_reply("wrong"), token))
        assert b"Login failed" in fresh.body  # The token names nothing: a new login.
        assert _under_way(service) == ["auth failed"]

    _run(config, tmp_path, scenario)
