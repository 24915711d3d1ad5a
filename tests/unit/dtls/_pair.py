"""DtlsPair: the test client and the server engine over a seeded hostile network (STYLE rule 13)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ocgate.dtls import (
    CookieJar,
    DtlsAssociation,
    DtlsEvent,
    LegacyMode,
    PskMode,
    peek_client_hello_untrusted,
)
from ocgate.errors import BadRecord
from tests.unit.dtls._client import ClientConfig, DtlsTestClient

ADDR = ("192.0.2.7", 40000)


@dataclass
class LossyNet:
    """Drops, duplicates and reorders datagrams with a seeded ``random.Random``."""

    rng: random.Random = field(default_factory=lambda: random.Random(0))
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0

    def carry(self, datagrams: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for datagram in datagrams:
            if self.rng.random() < self.drop:
                continue
            out.append(datagram)
            if self.rng.random() < self.duplicate:
                out.append(datagram)
        if len(out) > 1 and self.rng.random() < self.reorder:
            self.rng.shuffle(out)
        return out


def seeded_random(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


@dataclass
class DtlsPair:
    """Connects a :class:`DtlsTestClient` to a server :class:`DtlsAssociation` with a fake clock.

    In PSK mode the server side behaves like the gateway: cookieless hellos get a stateless
    HelloVerifyRequest from a :class:`CookieJar`; the association exists only after a valid cookie.
    """

    mode: LegacyMode | PskMode
    client: DtlsTestClient
    net: LossyNet = field(default_factory=LossyNet)
    now: float = 0.0
    mtu: int = 1400
    server: DtlsAssociation | None = None
    events: list[DtlsEvent] = field(default_factory=list)
    jar: CookieJar = field(default_factory=lambda: CookieJar(random_bytes=seeded_random(7)))
    to_client: list[bytes] = field(default_factory=list)

    def start(self) -> None:
        self.client.start(self.now)

    def _to_server(self, datagram: bytes) -> None:
        if self.server is None:
            info = peek_client_hello_untrusted(datagram)
            if info is None:
                return
            if isinstance(self.mode, PskMode):
                try:
                    self.jar.check(info, ADDR, self.now)
                except BadRecord:
                    self.to_client.append(self.jar.hello_verify_request(info, ADDR, self.now))
                    return
            self.server = DtlsAssociation(
                mode=self.mode, now=self.now, random_bytes=seeded_random(3), mtu=self.mtu
            )
        self.server.receive_datagram(datagram, self.now)

    def step(self) -> bool:
        """Deliver everything in flight once; return whether anything moved."""
        moved = False
        for datagram in self.net.carry(self.client.datagrams_to_send()):
            moved = True
            self._to_server(datagram)
        if self.server is not None:
            self.to_client += self.server.datagrams_to_send()
            while (event := self.server.next_event()) is not None:
                self.events.append(event)
        pending, self.to_client = self.to_client, []
        for datagram in self.net.carry(pending):
            moved = True
            self.client.receive_datagram(datagram, self.now)
        return moved

    def advance(self) -> bool:
        """Move the clock to the next timer and fire it; ``False`` when no timer is armed."""
        timers = [t for t in (self.client.timer, self.server_timer()) if t is not None]
        if not timers:
            return False
        self.now = max(self.now, min(timers))
        self.client.handle_timer(self.now)
        if self.server is not None:
            self.server.handle_timer(self.now)
        return True

    def server_timer(self) -> float | None:
        return self.server.get_timer() if self.server is not None else None

    def run(self, until: Callable[[], bool], *, limit: float = 120.0) -> None:
        while not until() and self.now <= limit:
            if not self.step() and not self.advance():
                self.step()
                if not until():
                    break
        self.step()


def legacy_client(mode: LegacyMode, **overrides: object) -> DtlsTestClient:
    config = ClientConfig(
        suite=mode.suite, session_id=mode.session_id, master_secret=mode.master_secret
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return DtlsTestClient(config)


def psk_client(mode: PskMode, **overrides: object) -> DtlsTestClient:
    config = ClientConfig(psk=mode.psk, session_id=mode.app_id)
    for key, value in overrides.items():
        setattr(config, key, value)
    return DtlsTestClient(config)
