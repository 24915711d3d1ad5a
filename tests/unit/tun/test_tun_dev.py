from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocgate.tun
from ocgate.errors import ConfigError
from ocgate.tun import open_tun

PROBE = Path(__file__).with_name("tun_netns_probe.py")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or shutil.which("ip") is None,
    reason="needs root, /dev/net/tun and iproute2",
)


def test_exports() -> None:
    assert sorted(ocgate.tun.__all__) == [
        "TunDevice",
        "add_device_routes",
        "configure_tun",
        "open_tun",
        "remove_tun",
    ]
    for name in ocgate.tun.__all__:
        assert getattr(ocgate.tun, name) is not None


@pytest.mark.parametrize("prefix", ["", "vpns%d", "a/b", "x" * 13, "tun 0", "vpnś"])
def test_bad_prefix_rejected_before_any_io(prefix: str) -> None:
    with pytest.raises(ConfigError, match="device"):
        open_tun(prefix)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"ocgate-test-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.mark.interop
@needs_root
def test_tun_in_private_netns(netns: str) -> None:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-W", "error", str(PROBE)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(out.stdout)
    assert report["names"] == ["ocgt0", "ocgt1"]
    assert report["read_empty"] is None
    first = report["first"]
    assert first["mtu"] == 1400
    assert first["up"] is True
    assert first["addrs"] == sorted(
        [["10.77.0.1", "10.77.0.9", 32], [None, "fd00:77::1", 128]], key=str
    )
    assert "fd00:77::9/128" in first["routes6"]
    assert report["second"]["mtu"] == 1300
    assert report["second"]["up"] is True
    assert report["second"]["addrs"] == [["10.77.0.1", "10.77.0.1", 32]]
    assert report["write_ok"] is True
    assert report["echo_reply"] == ["10.77.0.1", "10.77.0.9", "ocgate-probe"]
    assert report["garbage_written"] is False
    assert report["missing_errno"] is True
    assert report["duplicate_errno"] is True
    assert report["first_closed"] is True
    assert report["after_remove"] == [False, True]
    assert report["after_exit"] is False
