"""Prometheus exposition: names, live values and the scrape endpoint on loopback."""

from __future__ import annotations

import asyncio

import pytest

from ocgate.metrics import (
    GatewayMetrics,
    LiveState,
    TunnelCounters,
    parse_listen_address,
    serve_metrics,
)


def _state() -> LiveState:
    return LiveState(
        tunnels=[
            TunnelCounters(
                transport="cstp", rx_bytes=100, tx_bytes=200, rx_packets=1, tx_packets=2
            ),
            TunnelCounters(transport="dtls", rx_bytes=10, tx_bytes=20, rx_packets=3, tx_packets=4),
        ],
        sessions_disconnected=5,
    )


def test_live_values_and_closed_totals() -> None:
    metrics = GatewayMetrics(_state)
    metrics.tunnel_closed(
        TunnelCounters(transport="cstp", rx_bytes=1000, tx_bytes=0, rx_packets=7, tx_packets=0),
        "client logout",
    )
    metrics.logins.labels(result="failure", reason="wrong_password").inc()
    text = metrics.render().decode()
    assert 'ocgate_sessions{state="connected",transport="cstp"} 1.0' in text
    assert 'ocgate_sessions{state="connected",transport="dtls"} 1.0' in text
    assert 'ocgate_sessions{state="disconnected",transport="none"} 5.0' in text
    assert 'ocgate_tunnel_bytes_total{direction="rx"} 1110.0' in text
    assert 'ocgate_tunnel_packets_total{direction="tx"} 6.0' in text
    assert 'ocgate_logins_total{reason="wrong_password",result="failure"} 1.0' in text
    assert "process_resident_memory_bytes" in text


def test_scrape_endpoint() -> None:
    async def scenario() -> bytes:
        metrics = GatewayMetrics(_state)
        server = await serve_metrics("127.0.0.1", 0, metrics.render)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()
        return data

    data = asyncio.run(scenario())
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"ocgate_sessions" in data


@pytest.mark.parametrize(
    ("value", "expected"), [("127.0.0.1:9099", ("127.0.0.1", 9099)), ("[::1]:80", ("::1", 80))]
)
def test_parse_listen_address(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(value) == expected


@pytest.mark.parametrize("value", ["9099", ":9099", "host:", "host:0", "host:70000"])
def test_bad_listen_address(value: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_listen_address(value)


def test_dropped_packets_by_reason_add_closed_and_live_tunnels() -> None:
    def state() -> LiveState:
        live = TunnelCounters("cstp", 0, 0, 0, 0, dropped=(2, 0, 1, 0, 4))
        return LiveState(
            tunnels=[live, TunnelCounters("dtls", 0, 0, 0, 0)], sessions_disconnected=0
        )

    metrics = GatewayMetrics(state)
    metrics.tunnel_closed(
        TunnelCounters("dtls", 0, 0, 0, 0, dropped=(5, 1, 0, 3, 0)), "idle timeout"
    )
    text = metrics.render().decode()
    for reason, value in [
        ("spoofed-source", 7), ("link-local", 1), ("malformed", 1), ("restricted-route", 3),
        ("restricted-port", 4),
    ]:  # fmt: skip
        assert f'ocgate_tunnel_dropped_packets_total{{reason="{reason}"}} {value}.0' in text


def test_discarded_packets_by_direction_and_cause_add_closed_and_live_tunnels() -> None:
    def state() -> LiveState:
        live = TunnelCounters(
            "dtls", 0, 0, 0, 0, rx_refused=1, rx_over_limit=2, tx_no_room=3, tx_oversize=4
        )
        return LiveState(tunnels=[live], sessions_disconnected=0)

    metrics = GatewayMetrics(state)
    closed = TunnelCounters("cstp", 0, 0, 0, 0, rx_refused=10, tx_over_limit=20, tx_no_room=30)
    metrics.tunnel_closed(closed, "user disconnected")
    text = metrics.render().decode()
    for direction, cause, value in [
        ("rx", "tun-refused", 11), ("rx", "rate-limit", 2), ("tx", "no-room", 33),
        ("tx", "oversize", 4), ("tx", "rate-limit", 20),
    ]:  # fmt: skip
        sample = f'ocgate_tunnel_discarded_packets_total{{cause="{cause}",direction="{direction}"}}'
        assert f"{sample} {value}.0" in text, text
