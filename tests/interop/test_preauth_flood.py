"""Pre-authentication limits under a flood (hostile-peers issue, §3), with the real openconnect.

An attacker namespace (a third namespace beside the pair, :class:`SideNetns`) opens 2,000 half-open
TLS connections (TCP up, five bytes of a ClientHello, then silence) and then runs 1,000 garbage
logins (a full TLS handshake and a nonsense POST each, 50 at a time), while an honest client in the
pair's client namespace logs in with openconnect. The accept gate holds the attacker to
``max-pre-auth-per-source`` connections and closes the rest at accept, before any TLS; the
connection points then ban the attacker's address. Asserted: the honest login takes under 5 s, the
attacker keeps at most the per-source cap of connections open, the refusals are logged, and the
whole gateway's memory (PSS of every process) stays under :data:`MEMORY_BOUND`, the bound that
docs/ARCHITECTURE.md documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._netns import NetnsPair, SideNetns, enter_netns
from ._openconnect import OpenConnectRunner
from ._server import PORT, Server, ServerKind, StartServer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

HALF_OPEN = 2000
GARBAGE_LOGINS = 1000
PER_SOURCE = 256  # The default of max-pre-auth-per-source.
GARBAGE = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n<garbage>"
MEMORY_BOUND = 400 * 2**20
"""PSS of the whole gateway under this flood (docs/ARCHITECTURE.md, "Pre-authentication limits")."""


def _pss_of_tree(pid: int) -> int:
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    total = 0
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
    return total


class Flood:
    """The attacker: a thread inside the side namespace running an asyncio flood."""

    def __init__(self, side: SideNetns, host: str) -> None:
        self.side = side
        self.host = host
        self.half_open_connected = 0
        self.half_open_still_open = -1
        self.garbage_done = 0
        self.half_open_phase_over = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        try:
            enter_netns(self.side.name)
            asyncio.run(self._flood())
        except BaseException as exc:  # Reported by the test.
            self.error = exc
        finally:
            self.half_open_phase_over.set()

    async def _flood(self) -> None:
        writers: list[asyncio.StreamWriter] = []
        readers: list[asyncio.StreamReader] = []
        for _ in range(HALF_OPEN):
            with contextlib.suppress(OSError, TimeoutError):
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, PORT), 2)
                writer.write(b"\x16\x03\x01\x02\x00")  # A TLS record header, and no more.
                readers.append(reader)
                writers.append(writer)
                self.half_open_connected += 1
        await asyncio.sleep(1.0)  # Refused ones are closed by now.
        still_open = 0
        for reader in readers:
            try:
                data = await asyncio.wait_for(reader.read(1), 0.01)
            except TimeoutError:
                still_open += 1  # Nothing and no EOF: the gateway holds it open.
                continue
            except OSError:
                continue
            if data:
                still_open += 1
        self.half_open_still_open = still_open
        self.half_open_phase_over.set()

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        limit = asyncio.Semaphore(50)

        async def garbage() -> None:
            async with limit:
                with contextlib.suppress(OSError, TimeoutError, ssl.SSLError, EOFError):
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, PORT, ssl=context), 5
                    )
                    writer.write(GARBAGE)
                    await writer.drain()
                    await asyncio.wait_for(reader.read(4096), 5)
                    writer.close()
                self.garbage_done += 1

        await asyncio.gather(*(garbage() for _ in range(GARBAGE_LOGINS)))
        while not self._stop.is_set():  # noqa: ASYNC110 -- a threading.Event, set by the test.
            await asyncio.sleep(0.1)
        for writer in writers:
            writer.close()


@pytest.fixture
def side(netns_pair: NetnsPair) -> Iterator[SideNetns]:
    side = SideNetns.create(netns_pair, tag="f")
    try:
        yield side
    finally:
        side.destroy()


def test_an_honest_login_gets_through_a_flood_of_half_open_and_garbage_logins(
    start_gateway: StartServer, side: SideNetns, openconnect: OpenConnectRunner
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    server: Server = start_gateway()
    if server.kind is ServerKind.OCSERV:
        pytest.skip("the accept gate's caps are ocgate's (ocserv forks a process per connection)")
    flood = Flood(side, side.server_addr)
    flood.start()
    peak = 0
    during = 0
    try:
        assert flood.half_open_phase_over.wait(120), "the half-open phase did not finish"
        assert flood.error is None, repr(flood.error)
        peak = max(peak, _pss_of_tree(server.pid))
        deadline = time.monotonic() + 30
        while flood.garbage_done < 20 and time.monotonic() < deadline:  # Garbage logins under way.
            time.sleep(0.01)
        started = time.monotonic()
        result = openconnect.authenticate(
            server, user="alice", stdin="alicepass\n", mode="--cookieonly"
        )
        took = time.monotonic() - started
        during = flood.garbage_done
        peak = max(peak, _pss_of_tree(server.pid))
    finally:
        flood.stop()
    assert result.returncode == 0, result.describe()
    assert result.cookie, result.describe()
    assert took < 5.0, f"the honest login took {took:.1f} s under the flood"
    assert flood.error is None, repr(flood.error)
    assert flood.half_open_connected > PER_SOURCE  # The kernel accepted them: a real flood.
    assert 0 <= flood.half_open_still_open <= PER_SOURCE, flood.half_open_still_open
    assert flood.garbage_done == GARBAGE_LOGINS
    assert "event=connection-refused" in server.log_text()
    assert peak < MEMORY_BOUND, f"gateway PSS {peak / 2**20:.0f} MB under the flood"
    print(f"\nflood: honest login {took:.2f} s (garbage logins done then: {during}), gateway PSS "
          f"peak {peak / 2**20:.0f} MB, {flood.half_open_still_open} half-open held of "
          f"{flood.half_open_connected}")  # fmt: skip
