"""Fixtures of the end-to-end tests: namespaces, certificate, gateway, openconnect.

These tests need root (network namespaces, tun devices) and the system tools ``ip``,
``openconnect``, ``ping`` and ``iperf3``; without them every test here is skipped. Set
``OCG_TEST_SERVER=ocserv`` to run them against the real ocserv instead of ocgate (see
``_server.py``).

On failure, the tail of the server log and the output of every openconnect started by the test are
attached to the report (sections "server log" and "openconnect").
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from ._certs import ServerCert, make_server_cert
from ._netns import SERVER_ADDR, NetnsPair
from ._openconnect import OpenConnectRunner
from ._server import (
    DEFAULT_USERS,
    Server,
    ServerKind,
    StartServer,
    User,
    server_kind,
    start_server,
)

_DIAG_KEY = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()
_REQUIRED_TOOLS = ("ip", "openconnect", "ping", "iperf3")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "interop tests need root (network namespaces, tun)"
    missing = [tool for tool in _REQUIRED_TOOLS if shutil.which(tool) is None]
    if server_kind() is ServerKind.OCSERV and shutil.which("ocserv") is None:
        missing.append("ocserv")
    if missing:
        return f"interop tests need: {', '.join(missing)}"
    if not os.path.exists("/dev/net/tun"):
        return "interop tests need /dev/net/tun"
    return None


def add_diagnostic(request: pytest.FixtureRequest, title: str, fn: Callable[[], str]) -> None:
    """Attach ``fn()`` to the report of the current test if it fails."""
    request.node.stash.setdefault(_DIAG_KEY, []).append((title, fn))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when in ("call", "setup"):
        for title, fn in item.stash.get(_DIAG_KEY, []):
            try:
                text = fn()
            except Exception as exc:  # A broken diagnostic must not hide the real failure.
                text = f"(diagnostic failed: {exc!r})"
            if text:
                report.sections.append((title, text))
    return report


@pytest.fixture(scope="session")
def netns_pair() -> Iterator[NetnsPair]:
    """The server and client namespaces joined by a veth pair (removed at session end)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    pair = NetnsPair.create()
    try:
        yield pair
    finally:
        pair.destroy()


@pytest.fixture(scope="session")
def server_cert(tmp_path_factory: pytest.TempPathFactory) -> ServerCert:
    return make_server_cert(tmp_path_factory.mktemp("pki"), SERVER_ADDR)


@pytest.fixture
def start_gateway(
    request: pytest.FixtureRequest,
    netns_pair: NetnsPair,
    server_cert: ServerCert,
    tmp_path: Path,
) -> Iterator[StartServer]:
    """Factory ``start_gateway(overrides=None, users=DEFAULT_USERS, tail="") -> Server`` (``tail``:
    text after the top-level keys, such as ``[vhost:NAME]`` sections); stops them all."""
    servers: list[Server] = []

    def start(
        overrides: Mapping[str, str | Sequence[str] | None] | None = None,
        users: Sequence[User] = DEFAULT_USERS,
        tail: str = "",
    ) -> Server:
        workdir = tmp_path / f"server{len(servers)}"
        server = start_server(
            pair=netns_pair,
            workdir=workdir,
            cert=server_cert,
            overrides=overrides,
            users=users,
            tail=tail,
        )
        servers.append(server)
        add_diagnostic(request, f"server log ({server.kind.value})", server.describe)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
        netns_pair.kill_in(netns_pair.server)


@pytest.fixture
def server(start_gateway: StartServer) -> Server:
    """The gateway with the default test configuration and users."""
    return start_gateway()


@pytest.fixture
def openconnect(
    request: pytest.FixtureRequest, netns_pair: NetnsPair, tmp_path: Path
) -> Iterator[OpenConnectRunner]:
    """Start openconnect processes in the client namespace; all are stopped at teardown."""
    runner = OpenConnectRunner(netns_pair, tmp_path / "openconnect")
    add_diagnostic(request, "openconnect", runner.describe)
    try:
        yield runner
    finally:
        runner.close_all()
        netns_pair.kill_in(netns_pair.client)


@pytest.fixture
def kind() -> ServerKind:
    """Which implementation is under test."""
    return server_kind()
