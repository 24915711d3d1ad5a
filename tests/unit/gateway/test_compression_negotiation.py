"""Which compression a CONNECT gets, and how the reply announces it (ocserv's rules)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocgate.compress import CompressionMethod
from ocgate.config import parse_config
from ocgate.dtls import negotiate_dtls
from ocgate.errors import ConfigError
from ocgate.gateway import connect_headers, plan_tunnel
from ocgate.http import Request
from ocgate.session import Ipv4Pool, MemorySessionStore

from .conftest import make_config_text

POOL = "ipv4-network = 10.77.0.0/24\nudp-port = 443\n"
OPENCONNECT = {
    "x-cstp-accept-encoding": "oc-lz4,lzs",
    "x-dtls-accept-encoding": "oc-lz4,lzs",
    "x-dtls12-ciphersuite": "PSK-NEGOTIATE",
}
CISCO = {
    "x-cstp-accept-encoding": "lzs,deflate",
    "x-dtls-accept-encoding": "lzs",
    "x-dtls-ciphersuite": "PSK-NEGOTIATE",
}


def _plan_headers(
    config_dir: Path, extra: str, headers: dict[str, str], *, dtls: bool = True
) -> dict[str, str]:
    config = parse_config(make_config_text(config_dir, POOL + extra), source="t.conf")
    assert config.ipv4_network is not None
    store = MemorySessionStore()
    _, session = store.create(
        username="alice", groups=(), group=None, now=0.0, user_agent="",
        remote_addr="198.18.0.2", cookie_timeout=300, session_timeout=None,
    )  # fmt: skip
    items = (("host", "vpn"), *headers.items())
    request = Request(
        method="CONNECT", target="/CSCOSSLC/tunnel", headers=items, body=b"", http_version="1.1"
    )
    offer = None
    if dtls:
        offer = negotiate_dtls(
            dict(items), psk_enabled=True, legacy_enabled=False, tls_cipher_hint=None,
            random_bytes=os.urandom, psk=bytes(32),
        )  # fmt: skip
        assert offer is not None
    plan = plan_tunnel(
        config=config, session=session, request=request, now=0.0, offer=offer,
        pool4=Ipv4Pool(config.ipv4_network, predictable=True), pool6=None, sessions=(),
    )  # fmt: skip
    reply = dict(connect_headers(config, plan))
    reply["plan"] = f"{plan.cstp_compression}/{plan.dtls_compression}"
    return reply


def test_off_by_default_nothing_is_announced(config_dir: Path) -> None:
    reply = _plan_headers(config_dir, "", OPENCONNECT)
    assert "X-CSTP-Content-Encoding" not in reply
    assert "X-DTLS-Content-Encoding" not in reply
    assert reply["plan"] == "None/None"


def test_openconnect_default_offer_gets_lz4_on_both(config_dir: Path) -> None:
    reply = _plan_headers(config_dir, "compression = true\n", OPENCONNECT)
    assert reply["X-CSTP-Content-Encoding"] == "oc-lz4"
    assert reply["X-DTLS-Content-Encoding"] == "oc-lz4"


def test_priority_order_is_the_servers(config_dir: Path) -> None:
    extra = "compression = true\ncompression-algo-priority = lzs:lz4\n"
    reply = _plan_headers(config_dir, extra, OPENCONNECT)
    assert reply["X-CSTP-Content-Encoding"] == "lzs"
    assert reply["X-DTLS-Content-Encoding"] == "lzs"


def test_cisco_offer_and_deflate_on_cstp_only(config_dir: Path) -> None:
    reply = _plan_headers(config_dir, "compression = true\n", CISCO)
    assert (reply["X-CSTP-Content-Encoding"], reply["X-DTLS-Content-Encoding"]) == ("lzs", "lzs")
    extra = "compression = true\ncompression-algo-priority = deflate:lzs\n"
    reply = _plan_headers(config_dir, extra, CISCO)
    assert (reply["X-CSTP-Content-Encoding"], reply["X-DTLS-Content-Encoding"]) == (
        "deflate",
        "lzs",
    )


def test_no_dtls_means_no_dtls_encoding(config_dir: Path) -> None:
    reply = _plan_headers(config_dir, "compression = true\n", OPENCONNECT, dtls=False)
    assert reply["X-CSTP-Content-Encoding"] == "oc-lz4"
    assert "X-DTLS-Content-Encoding" not in reply
    assert reply["plan"] == f"{CompressionMethod.LZ4}/None"


def test_config_keys(config_dir: Path) -> None:
    text = make_config_text(config_dir, POOL)
    config = parse_config(text, source="t.conf")
    assert (config.compression, config.compression_algo_priority, config.no_compress_limit) == (
        False,
        ("lz4", "lzs"),
        256,
    )
    extra = "compression = true\ncompression-algo-priority = LZS:deflate\nno-compress-limit = 100\n"
    config = parse_config(text + extra, source="t.conf")
    assert config.compression_algo_priority == ("lzs", "deflate")
    assert config.no_compress_limit == 100


@pytest.mark.parametrize("value", ["lz4:gzip", "lz4:lz4", "lz4:"])
def test_bad_priority_names_file_and_line(config_dir: Path, value: str) -> None:
    text = make_config_text(config_dir, POOL) + f"compression-algo-priority = {value}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="t.conf")
    message = str(info.value)
    assert "t.conf:" in message
    assert "lz4, lzs, deflate" in message
