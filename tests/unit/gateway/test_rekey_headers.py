"""``X-CSTP-Rekey-*`` / ``X-DTLS-Rekey-*`` as ocserv 1.1.6 ``connect_handler`` sends them.

Expected values observed from ocserv 1.1.6 with openconnect 9.01 -v (tests/interop/test_rekey.py
checks the same headers against both servers): ``rekey-time = 20`` gives ``X-CSTP-Rekey-Time: 20``,
``X-DTLS-Rekey-Time: 30``, and ``X-DTLS-Rekey-Method: ssl`` only with ``rekey-method = ssl``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from ocgate.config import parse_config
from ocgate.gateway import TunnelPlan, connect_headers, dtls_headers
from ocgate.gateway._connect import fuzzed_rekey_time

from .conftest import make_config_text


def _plan(rekey_time: int) -> TunnelPlan:
    return TunnelPlan(
        ipv4=ipaddress.IPv4Address("10.77.0.9"),
        ipv4_netmask=ipaddress.IPv4Address("255.255.255.0"),
        ipv6=None,
        base_mtu=1406,
        mtu=1329,
        dpd=90,
        idle_timeout=None,
        session_remaining=None,
        hostname=None,
        rekey_time=rekey_time,
    )


def _rekey(headers: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    return [(n, v) for n, v in headers if "Rekey" in n]


@pytest.mark.parametrize(
    ("method", "secure", "expected"),
    [("ssl", True, "ssl"), ("ssl", False, "new-tunnel"), ("new-tunnel", True, "new-tunnel")],
)
def test_cstp_rekey_headers_follow_the_config(
    config_dir: Path, method: str, secure: bool, expected: str
) -> None:
    text = make_config_text(config_dir, f"rekey-time = 20\nrekey-method = {method}\n")
    config = parse_config(text, source="t.conf")
    assert (config.rekey_time, config.rekey_method) == (20, method)
    headers = connect_headers(config, _plan(20), secure_renegotiation=secure)
    assert _rekey(headers) == [("X-CSTP-Rekey-Time", "20"), ("X-CSTP-Rekey-Method", expected)]


def test_no_rekey_time_sends_no_rekey_headers_never_none(config_dir: Path) -> None:
    text = make_config_text(config_dir, "udp-port = 443\nrekey-time = 0\n")
    config = parse_config(text, source="t.conf")
    assert _rekey(connect_headers(config, _plan(0))) == []  # Not "none": Secure Client 5.1.
    headers = dtls_headers(config, dpd=90, mtu=1300, offer_headers=(), legacy=False, rekey_time=0)
    assert _rekey(headers) == []


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("ssl", [("X-DTLS-Rekey-Time", "30"), ("X-DTLS-Rekey-Method", "ssl")]),
        ("new-tunnel", [("X-DTLS-Rekey-Time", "30")]),
    ],
)
def test_dtls_rekey_is_ten_seconds_later_and_ssl_only(
    config_dir: Path, method: str, expected: list[tuple[str, str]]
) -> None:
    text = make_config_text(config_dir, f"udp-port = 443\nrekey-method = {method}\n")
    config = parse_config(text, source="t.conf")
    headers = dtls_headers(config, dpd=90, mtu=1300, offer_headers=(), legacy=False, rekey_time=20)
    assert _rekey(headers) == expected


def test_defaults_are_ocservs(config_dir: Path) -> None:
    config = parse_config(make_config_text(config_dir, ""), source="t.conf")
    assert (config.rekey_time, config.rekey_method) == (172800, "ssl")
    assert _rekey(connect_headers(config, _plan(172800))) == [
        ("X-CSTP-Rekey-Time", "172800"),
        ("X-CSTP-Rekey-Method", "ssl"),
    ]


@pytest.mark.parametrize(
    ("rekey_time", "random_value", "expected"),
    [
        (20, 0xFFFF, 20),  # At most 30 s: ocserv's FUZZ leaves it alone.
        (30, 29, 30),
        (31, 29, 60),  # 29 % 30 = 29
        (172800, 31, 172801),  # 31 % 30 = 1
        (172800, 0xFFFF, 172799),  # int16 -1 % 30 = -1 (C truncates toward zero)
        (172800, 0x8000, 172792),  # int16 -32768 % 30 = -8
    ],
)
def test_rekey_time_fuzz_is_ocservs(rekey_time: int, random_value: int, expected: int) -> None:
    assert fuzzed_rekey_time(rekey_time, random_value) == expected
