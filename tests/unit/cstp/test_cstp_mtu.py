"""MTU parsing and arithmetic: reference examples and hostile values (ocserv #717)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.cstp import (
    DTLS12_AES_GCM_RECORD_OVERHEAD,
    DTLS_CBC_SHA1_RECORD_OVERHEAD,
    TLS13_AEAD_RECORD_OVERHEAD,
    MtuResult,
    compute_mtu,
    cstp_packet_overhead,
    dtls_packet_overhead,
    parse_mtu_headers_untrusted,
)
from ocgate.errors import LocalProtocolError

GCM = dtls_packet_overhead(record_overhead=DTLS12_AES_GCM_RECORD_OVERHEAD)
CBC = dtls_packet_overhead(record_overhead=DTLS_CBC_SHA1_RECORD_OVERHEAD)


def test_overheads() -> None:
    assert GCM == 20 + 8 + 37 + 1 == 66
    assert CBC == 20 + 8 + 65 + 1 == 94
    assert dtls_packet_overhead(record_overhead=37, transport_ipv6=True) == 86
    assert cstp_packet_overhead() == 20 + 20 + 29 + 8
    assert cstp_packet_overhead(transport_ipv6=True) == 40 + 20 + 29 + 8
    assert cstp_packet_overhead(tls_record_overhead=TLS13_AEAD_RECORD_OVERHEAD) == 70


@pytest.mark.parametrize(
    ("base", "mtu", "expected"),
    [
        ("1406", "1290", (1406, 1290)),
        ("65535", "65425", (None, None)),  # openconnect on loopback
        ("0", "1", (None, None)),
        ("500", "500", (None, None)),
        ("800", "576", (800, 576)),
        ("16384", "16384", (16384, 16384)),
        ("16385", "16385", (None, None)),
        ("garbage", "-1", (None, None)),
        ("99999999999", "", (None, None)),
        (None, None, (None, None)),
        ("+1400", " 1400", (None, None)),
        ("1400 ", "1e3", (None, None)),
        ("١٤٠٠", "1400\n", (None, None)),  # non-ASCII digits; trailing newline
        ("01400", "01290", (1400, 1290)),
    ],
)
def test_parse(base: str | None, mtu: str | None, expected: tuple[int | None, int | None]) -> None:
    assert parse_mtu_headers_untrusted(base, mtu) == expected


@given(st.one_of(st.none(), st.text(max_size=12)), st.one_of(st.none(), st.text(max_size=12)))
def test_fuzz_parse_never_raises(base: str | None, mtu: str | None) -> None:
    for value in parse_mtu_headers_untrusted(base, mtu):
        assert value is None or 576 <= value <= 16384


def test_reference_examples() -> None:
    # anyconnect-protocol.md §6 step 5: link 1406 over IPv4 → AES-GCM 1340, AES256-SHA 1312.
    def run(overhead: int) -> MtuResult:
        return compute_mtu(
            link_mtu=None,
            client_base_mtu=1406,
            client_mtu=1290,
            ipv6_assigned=False,
            dtls_overhead=overhead,
        )

    assert run(GCM) == MtuResult(base_mtu=1406, tunnel_mtu=1340, ipv6_ok=True)
    assert run(CBC).tunnel_mtu == 1312


def test_loopback_openconnect_is_sane() -> None:
    base, mtu = parse_mtu_headers_untrusted("65535", "65425")
    result = compute_mtu(link_mtu=None, client_base_mtu=base, client_mtu=mtu, ipv6_assigned=True)
    assert result.base_mtu == 1500
    assert result.tunnel_mtu == 1500 - 77 <= 1500
    with_dtls = compute_mtu(
        link_mtu=None, client_base_mtu=base, client_mtu=mtu, ipv6_assigned=True, dtls_overhead=GCM
    )
    assert with_dtls.tunnel_mtu == 1434


def test_raw_hostile_integers_are_rechecked() -> None:
    result = compute_mtu(
        link_mtu=None, client_base_mtu=65535, client_mtu=65425, ipv6_assigned=False
    )
    assert result.base_mtu == 1500


def test_config_link_caps_client() -> None:
    result = compute_mtu(link_mtu=1400, client_base_mtu=1500, client_mtu=None, ipv6_assigned=False)
    assert result.base_mtu == 1400


def test_ipv6_floor_ignores_small_base() -> None:
    v4 = compute_mtu(link_mtu=None, client_base_mtu=1000, client_mtu=None, ipv6_assigned=False)
    v6 = compute_mtu(link_mtu=None, client_base_mtu=1000, client_mtu=None, ipv6_assigned=True)
    assert v4.base_mtu == 1000
    assert v4.tunnel_mtu == 1000 - 77
    assert not v4.ipv6_ok
    assert v6.base_mtu == 1500
    assert v6.ipv6_ok


def test_old_client_without_base_mtu() -> None:
    result = compute_mtu(link_mtu=None, client_base_mtu=None, client_mtu=1290, ipv6_assigned=False)
    assert result.base_mtu == 1290 + CBC
    # The candidate must reach the minimum link MTU to count.
    low = compute_mtu(link_mtu=None, client_base_mtu=None, client_mtu=600, ipv6_assigned=True)
    assert low.base_mtu == 1500
    v4 = compute_mtu(link_mtu=None, client_base_mtu=None, client_mtu=706, ipv6_assigned=False)
    assert v4.base_mtu == 800


def test_out_of_range_base_falls_back_to_mtu() -> None:
    result = compute_mtu(link_mtu=None, client_base_mtu=70000, client_mtu=1290, ipv6_assigned=False)
    assert result.base_mtu == 1384


def test_tiny_configured_link_is_clamped() -> None:
    result = compute_mtu(link_mtu=100, client_base_mtu=None, client_mtu=None, ipv6_assigned=False)
    assert result.tunnel_mtu == 576
    huge = compute_mtu(link_mtu=10**9, client_base_mtu=None, client_mtu=None, ipv6_assigned=False)
    assert huge.base_mtu == 16384
    assert huge.tunnel_mtu == 16384 - 77


@pytest.mark.parametrize("bad", [-1, 257, 10**6])
def test_bad_overhead_raises(bad: int) -> None:
    with pytest.raises(LocalProtocolError):
        compute_mtu(
            link_mtu=None,
            client_base_mtu=None,
            client_mtu=None,
            ipv6_assigned=False,
            dtls_overhead=bad,
        )
    with pytest.raises(LocalProtocolError):
        compute_mtu(
            link_mtu=None,
            client_base_mtu=None,
            client_mtu=None,
            ipv6_assigned=False,
            tls_record_overhead=bad - 77 if bad < 0 else bad,
        )


hostile = st.one_of(st.none(), st.integers(-(2**64), 2**64), st.sampled_from([0, 1, 500, 65535]))


@given(
    link=hostile,
    base=hostile,
    mtu=hostile,
    ipv6=st.booleans(),
    overhead=st.one_of(st.none(), st.integers(0, 256)),
)
def test_fuzz_compute_is_bounded(
    link: int | None, base: int | None, mtu: int | None, ipv6: bool, overhead: int | None
) -> None:
    result = compute_mtu(
        link_mtu=link,
        client_base_mtu=base,
        client_mtu=mtu,
        ipv6_assigned=ipv6,
        dtls_overhead=overhead,
    )
    assert 576 <= result.base_mtu <= 16384
    assert 576 <= result.tunnel_mtu <= 16384
    assert result.ipv6_ok == (result.tunnel_mtu >= 1280)
    if link is None:
        assert result.base_mtu <= 1500
