"""Who may export: loopback, the VPN pools and ``nvm-allow`` by default, never everyone."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path

import pytest
from nvm_collector_lib import TEMPLATES, opened_store, wait_for

from ocgate.config import parse_collector_config, parse_config
from ocgate.nvm._collector import Collector, LeasePublisher
from ocgate.nvm._config import LOOPBACK, ListenAddress, NvmSettings
from ocgate.nvm._listeners import Listeners


def gateway_settings(tmp_path: Path, extra: str = "") -> NvmSettings:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    text = (
        f"auth = plain[passwd={cert}]\nserver-cert = {cert}\nserver-key = {cert}\n"
        "ipv4-network = 10.10.0.0/24\nipv6-network = fd00:1::/64\n"
        "nvm-listen = udp://0.0.0.0:2055\n" + extra
    )
    return NvmSettings.from_config(parse_config(text, source=str(tmp_path / "ocserv.conf")))


def admitted(settings: NvmSettings, tmp_path: Path, addresses: list[str]) -> dict[str, bool]:
    async def scenario() -> dict[str, bool]:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store, allow=settings.exporter_networks())
            result = {a: collector.admit(a) for a in addresses}
            assert collector.stats().refused == sum(not ok for ok in result.values())
            return result

    return asyncio.run(scenario())


def test_gateway_default_is_loopback_and_the_vpn_pools(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path)
    assert settings.allow == ()
    assert settings.exporter_networks() == (
        *LOOPBACK,
        ipaddress.ip_network("10.10.0.0/24"),
        ipaddress.ip_network("fd00:1::/64"),
    )
    assert admitted(
        settings,
        tmp_path,
        [
            "10.10.0.5",
            "fd00:1::5",
            "::ffff:10.10.0.5",
            "127.0.0.1",
            "::1",
            "192.0.2.1",
            "10.11.0.1",
        ],
    ) == {
        "10.10.0.5": True,
        "fd00:1::5": True,
        "::ffff:10.10.0.5": True,
        "127.0.0.1": True,
        "::1": True,
        "192.0.2.1": False,
        "10.11.0.1": False,
    }


def test_gateway_nvm_allow_adds_networks(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, "nvm-allow = 192.0.2.0/28\n")
    assert settings.exporter_networks()[-1] == ipaddress.ip_network("192.0.2.0/28")
    result = admitted(settings, tmp_path, ["192.0.2.5", "192.0.2.17", "10.10.0.9"])
    assert result == {"192.0.2.5": True, "192.0.2.17": False, "10.10.0.9": True}


def test_everyone_only_when_asked(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, "nvm-allow = 0.0.0.0/0\nnvm-allow = ::/0\n")
    assert all(admitted(settings, tmp_path, ["198.51.100.1", "2001:db8::1"]).values())


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("", LOOPBACK),
        ("nvm-allow = 10.0.0.0/8\n", (*LOOPBACK, ipaddress.ip_network("10.0.0.0/8"))),
    ],
)
def test_standalone_default_is_loopback_plus_configured(
    tmp_path: Path, lines: str, expected: tuple[object, ...]
) -> None:
    # ocgate nvm serve reads no pools, even from a file that has them.
    text = "ipv4-network = 10.10.0.0/24\nnvm-listen = udp://0.0.0.0:2055\n" + lines
    config = parse_collector_config(text, source=str(tmp_path / "nvm.conf"))
    assert config.settings.pools == ()
    assert config.settings.exporter_networks() == expected
    result = admitted(config.settings, tmp_path, ["127.0.0.1", "10.10.0.5"])
    assert result == {"127.0.0.1": True, "10.10.0.5": bool(lines)}


def test_a_live_lease_outside_the_pools_is_admitted_while_it_lasts(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            leases = LeasePublisher()
            collector = Collector(store=store, allow=LOOPBACK)
            await collector.start(lease_events=leases)
            try:
                assert not collector.admit("172.16.5.5")
                leases.lease_started("carol", "s9", "172.16.5.5", 100.0)
                assert collector.admit("172.16.5.5")
                assert collector.admit("::ffff:172.16.5.5")
                leases.lease_ended("carol", "s9", None, 200.0)
                assert not collector.admit("172.16.5.5")
                assert collector.stats().refused == 2
            finally:
                await collector.stop()

    asyncio.run(scenario())


def test_udp_from_a_refused_address_keeps_no_state(tmp_path: Path) -> None:
    """Over real loopback UDP: 127.0.0.2 is outside an allow-list of 127.0.0.1 only."""

    async def scenario() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store, allow=[ipaddress.ip_network("127.0.0.1/32")])
            await collector.start()
            listeners = Listeners(collector)
            try:
                port = (await listeners.add_udp(ListenAddress("udp", "127.0.0.1", 0))).port
                for source in ("127.0.0.2", "127.0.0.1"):
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                        sock.bind((source, 0))
                        sock.sendto(TEMPLATES, ("127.0.0.1", port))
                await wait_for(lambda: collector.stats().messages == 1)
                await wait_for(lambda: collector.stats().refused == 1)
                assert [k.address for k in collector.core.stats()] == ["127.0.0.1"]
            finally:
                await listeners.close()
                await collector.stop()

    asyncio.run(scenario())
