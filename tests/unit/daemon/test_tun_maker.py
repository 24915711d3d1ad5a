"""The supervisor's checks of a worker's TUN request (``daemon/_tun_maker.py``).

A worker is not trusted: whatever it names in :class:`~ocgate.ipc.messages.OpenTun` is checked
before the kernel sees it, and a refusal never creates a device. Creating real devices, their
addresses and their iroutes is tested end to end with openconnect in network namespaces
(``tests/interop/test_routes_dns.py``, ``tests/interop/test_user_pools.py``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from ocgate.config import Config, parse_config
from ocgate.daemon._tun_maker import TunMaker
from ocgate.ipc import messages as m
from tests.pki import make_pki


@pytest.fixture
def maker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TunMaker:
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "passwd").write_text("alice:eng:$5$x$y\n")
    text = (
        f'auth = "plain[passwd={tmp_path}/passwd]"\n'
        f"server-cert = {pki.server.cert_path}\nserver-key = {pki.server.key_path}\n"
        "ipv4-network = 10.77.0.0/24\nipv6-network = fd77::/48\n"
    )
    config: Config = parse_config(text, source=str(tmp_path / "ocserv.conf"))
    maker = TunMaker(config)

    def no_device(*args: object) -> None:
        raise AssertionError("a refused request reached the kernel")

    monkeypatch.setattr(maker, "create", no_device)
    return maker


def _refusal(maker: TunMaker, **fields: object) -> str:
    answer = asyncio.run(maker.open(m.OpenTun(mtu=1400, **fields)))  # type: ignore[arg-type]
    assert isinstance(answer, m.Failed), answer
    return answer.message


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"peer4": "10.77.0.300"}, "bad address"),
        ({"peer6": "fd77::/200"}, "bad address"),
        ({"peer4": "127.0.0.2"}, "refused peer address 127.0.0.2"),
        ({"peer4": "224.0.0.9"}, "refused peer address 224.0.0.9"),
        ({"peer4": "0.0.0.0"}, "refused peer address 0.0.0.0"),
        ({"peer6": "ff02::/64"}, "refused peer address ff02::"),
        # A per-session network must hold the lease and leave its first address to the gateway.
        ({"peer4": "10.60.0.9", "network4": "10.61.0.0/24"}, "refused network"),
        ({"peer4": "10.60.0.1", "network4": "10.60.0.0/24"}, "refused network"),
        ({"peer4": "10.60.0.9", "network4": "10.60.0.9/24"}, "refused network"),
        # An iroute is a network behind a client, never a pool or a default route.
        ({"peer4": "10.77.0.9", "iroutes": ["0.0.0.0/0"]}, "refused iroute"),
        ({"peer4": "10.77.0.9", "iroutes": ["10.77.0.0/16"]}, "overlaps the address pool"),
        ({"peer6": "fd77::1:0/112", "iroutes": ["fd77:0:0:5::/64"]}, "overlaps the address pool"),
        (
            {"peer4": "10.60.0.9", "network4": "10.60.0.0/24", "iroutes": ["10.60.0.128/25"]},
            "overlaps the address pool 10.60.0.0/24",
        ),
    ],
)
def test_a_bad_request_is_refused_before_the_kernel(
    maker: TunMaker, fields: dict[str, object], why: str
) -> None:
    assert why in _refusal(maker, **fields)


def test_a_good_request_reaches_the_kernel_with_the_checked_addresses(
    maker: TunMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[object, ...]] = []

    def create(*args: object) -> object:
        seen.append(args)
        raise OSError("no device in a unit test")

    monkeypatch.setattr(maker, "create", create)
    request = m.OpenTun(
        mtu=1400, peer4="10.60.0.9", network4="10.60.0.0/24", iroutes=["192.168.5.0/24"]
    )
    answer = asyncio.run(maker.open(request))
    assert isinstance(answer, m.Failed)
    assert answer.message == "cannot create a TUN device: no device in a unit test"
    ((mtu, peer4, peer6, iroutes, local),) = seen
    assert (mtu, peer4, peer6) == (1400, ipaddress.IPv4Address("10.60.0.9"), None)
    assert iroutes == [ipaddress.IPv4Network("192.168.5.0/24")]
    # The session's own network's first address is the device's end, not the host pool's.
    assert local == (ipaddress.IPv4Address("10.60.0.1"), maker.server6)
